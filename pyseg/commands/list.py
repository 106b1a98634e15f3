"""``pyseg list``: what the plugins provide, who provided it, and which plugins failed."""

from __future__ import annotations

import argparse
import json
import sys
import warnings

HELP = "list architectures, interpreters, datasets and benchmarks, with their plugins"

_SECTIONS = (
    ("architectures", "list_architectures"),
    ("interpreters", "list_interpreters"),
    ("datasets", "list_datasets"),
    ("benchmarks", "list_benchmarks"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def _plugin_dict(info) -> dict | None:
    if info is None:
        return None
    return {
        "name": info.name,
        "module": info.module,
        "source": info.source,
        "distribution": info.distribution,
        "version": info.version,
    }


def _row(kind: str, spec) -> dict:
    row = {"name": spec.name, "summary": spec.summary}
    if kind in ("architectures", "datasets"):
        row["task"] = spec.task
    elif kind == "interpreters":
        row["tasks"] = list(spec.tasks)
    elif kind == "benchmarks":
        row["label"] = spec.label
        row["sub_label"] = spec.sub_label
    row["plugin"] = _plugin_dict(spec.plugin)
    return row


def collect() -> dict:
    """Everything ``pyseg list`` shows, as JSON-ready data."""
    from pyseg import registry

    data: dict = {}
    for key, fn in _SECTIONS:
        data[key] = [_row(key, spec) for spec in getattr(registry, fn)()]
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


def _provider(plugin: dict | None) -> str:
    if plugin is None:
        return "?"
    if plugin["distribution"]:
        return f"{plugin['distribution']} {plugin['version'] or '?'} ({plugin['module']})"
    return f"{plugin['module']} (module)"


def _print_text(data: dict) -> None:
    for key, _fn in _SECTIONS:
        rows = data[key]
        print(f"{key.capitalize()} ({len(rows)})")
        if not rows:
            print("  (none)")
        else:
            width = max(len(r["name"]) for r in rows)
            for r in rows:
                extra = ""
                if "task" in r:
                    extra = f"[{r['task']}] "
                elif "tasks" in r:
                    extra = f"[{', '.join(r['tasks'])}] "
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
    from pyseg.registry import PluginError, PluginWarning

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
