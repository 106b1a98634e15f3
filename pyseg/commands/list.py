"""``pyseg list``: what the plugins provide, who provided it, and which plugins failed."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Any

HELP = "list architectures, interpreters, datasets and benchmarks, with their plugins"

# (section, list_* and get_* function names in pyseg.registry)
_SECTIONS = (
    ("architectures", "list_architectures", "get_architecture"),
    ("interpreters", "list_interpreters", "get_interpreter"),
    ("datasets", "list_datasets", "get_dataset"),
    ("benchmarks", "list_benchmarks", "get_benchmark"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``pyseg list`` to ``parser`` (the CLI calls this)."""
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def _plugin_dict(info: Any) -> dict[str, Any] | None:
    if info is None:
        return None
    return {
        "name": info.name,
        "module": info.module,
        "source": info.source,
        "distribution": info.distribution,
        "version": info.version,
    }


def _row(kind: str, spec: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"name": spec.name, "summary": spec.summary}
    if kind == "benchmarks":
        row["label"] = spec.label
        row["sub_label"] = spec.sub_label
    else:
        row["tasks"] = sorted(spec.tasks)
    if kind == "architectures":
        row["input_size"] = spec.input_size
    elif kind == "interpreters":
        row["takes_layer"] = spec.takes_layer
    elif kind == "datasets":
        row["class_names"] = list(spec.class_names)
        row["options"] = list(spec.options)
    row["plugin"] = _plugin_dict(spec.plugin)
    return row


def collect() -> dict[str, Any]:
    """Everything ``pyseg list`` shows, as JSON-ready data."""
    from pyseg import registry  # imports torch: only when the command runs

    data: dict[str, Any] = {}
    for key, list_names, get_spec in _SECTIONS:
        get = getattr(registry, get_spec)
        data[key] = [_row(key, get(name)) for name in getattr(registry, list_names)()]
    data["plugins"] = [_plugin_dict(p) for p in registry.plugins()]
    data["failed_plugins"] = [
        {
            "plugin": f.plugin,
            "source": f.source,
            "distribution": f.distribution,
            "version": f.version,
            "error": f.error,
        }
        for f in registry.plugin_failures()
    ]
    return data


def _provider(plugin: dict[str, Any] | None) -> str:
    if plugin is None:
        return "?"
    if plugin["distribution"]:
        return f"{plugin['distribution']} {plugin['version'] or '?'} ({plugin['module']})"
    return f"{plugin['module']} (module)"


def _print_text(data: dict[str, Any]) -> None:
    for key, _list, _get in _SECTIONS:
        rows = data[key]
        print(f"{key.capitalize()} ({len(rows)})")
        if not rows:
            print("  (none)")
        else:
            width = max(len(r["name"]) for r in rows)
            for r in rows:
                extra = f"[{', '.join(r['tasks'])}] " if "tasks" in r else ""
                print(f"  {r['name']:<{width}}  {extra}{r['summary']}")
                print(f"  {'':<{width}}  from {_provider(r['plugin'])}")
        print()
    failed = data["failed_plugins"]
    print(f"Failed plugins ({len(failed)})")
    if not failed:
        print("  (none)")
    for f in failed:
        where = f"{f['source']}"
        if f["distribution"]:
            where += f", {f['distribution']} {f['version'] or '?'}"
        print(f"  {f['plugin']} ({where}): {f['error']}")


def run(args: argparse.Namespace) -> int:
    """Carry out ``pyseg list`` with the parsed ``args``; returns the exit status."""
    from pyseg.registry import PluginError, PluginWarning  # imports torch: only here

    try:
        with warnings.catch_warnings():
            # The failures are part of the listing; no need to warn about them as well.
            warnings.simplefilter("ignore", PluginWarning)
            data = collect()
    except PluginError as e:  # PYSEG_STRICT_PLUGINS=1
        print(f"pyseg list: error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        _print_text(data)
    return 0
