"""Present benchmark results: the Compare table plus ratios, JSON, and a plot."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Sequence
from typing import Any

import torch

from pyseg.bench.harness import CaseResult

__all__ = ["compare_table", "cpu_model", "header", "machine_facts", "markdown", "plot",
           "ratio_table", "render", "results_from_json", "to_json", "write_json"]

SCHEMA = "pyseg-bench/1"


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_facts(threads: int | None = None) -> dict[str, Any]:
    """What the numbers depend on: CPU model, threads, versions, GPU."""
    import pyseg

    facts: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": threads or torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pyseg": pyseg.__version__,
        "platform": platform.platform(),
    }
    try:
        import torchvision

        facts["torchvision"] = torchvision.__version__
    except ImportError:
        facts["torchvision"] = None
    facts["cuda_device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    facts["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    facts["pyseg_cpu_capability"] = _pyseg_cpu_capability()
    try:
        facts["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        facts["load_average"] = None
    return facts


def _pyseg_cpu_capability() -> str:
    """The CPU kernel variant pyseg runs, when its build reports one (``pyseg info``)."""
    from pyseg.info import info

    return str(info().get("cpu_capability") or "not dispatched (one baseline build)")


def header(facts: dict[str, Any]) -> str:
    """One comment line with what the numbers depend on."""
    load = facts.get("load_average")
    text = (f"# {facts['cpu']}, capability torch {facts['torch_cpu_capability']} / pyseg "
            f"{facts['pyseg_cpu_capability']}, {facts['threads']} threads, torch "
            f"{facts['torch']}, pyseg {facts['pyseg']}")
    if facts.get("cuda_device"):
        text += f", {facts['cuda_device']}"
    if load:
        text += f", load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    return text


def compare_table(results: Sequence[CaseResult]) -> str:
    """The ``torch.utils.benchmark.Compare`` table of every timed case."""
    measurements = []
    for r in results:
        if r.status == "ok":
            measurements += [r.ours.measurement, r.reference.measurement]
    if not measurements:
        return ""
    from torch.utils import benchmark as tbench

    # Untrimmed: on a noisy machine trim_significant_figures rounds to one digit.
    return str(tbench.Compare(measurements))


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f}"


def ratio_table(results: Sequence[CaseResult]) -> str:
    """Per case: median times, ours / reference (lower is better), peak extra memory."""
    header = ("case", "pyseg (us)", "reference (us)", "ratio", "pyseg mem", "reference mem")
    rows = []
    for r in results:
        if r.status != "ok":
            continue
        rows.append((
            f"{r.label}: {r.sub_label}", _us(r.ours.median), _us(r.reference.median),
            f"{r.ratio:.2f}", _bytes(r.ours.peak_bytes), _bytes(r.reference.peak_bytes),
        ))
    if not rows:
        return ""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [("ratio = pyseg time / reference time (lower is better); mem = peak extra memory "
              "of one call")]
    fmt = lambda row: "  ".join(
        c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
    lines.append(fmt(header))
    lines.append("  ".join("-" * w for w in widths))
    lines += [fmt(row) for row in rows]
    return "\n".join(lines)


def render(results: Sequence[CaseResult]) -> str:
    """Everything a terminal shows: Compare table, ratio table, cases not timed."""
    parts = [compare_table(results), ratio_table(results)]
    untimed = [r for r in results if r.status != "ok"]
    if untimed:
        parts.append("\n".join(
            f"{r.status:<8} {r.label}: {r.sub_label}: {r.reason}" for r in untimed))
    return "\n\n".join(p for p in parts if p)


def to_json(results: Sequence[CaseResult], *, command: Sequence[str] | None = None,
            threads: int | None = None, settings: dict | None = None) -> dict[str, Any]:
    """Results as a JSON-ready dict: ``schema``, ``machine``, ``command``, ``settings``
    (e.g. min_run_time), ``results``."""
    return {
        "schema": SCHEMA,
        "machine": machine_facts(threads),
        "command": list(command) if command is not None else None,
        "settings": dict(settings or {}),
        "results": [r.to_json() for r in results],
    }


def write_json(path: str | os.PathLike, results: Sequence[CaseResult], **kwargs: Any) -> None:
    """Write :func:`to_json` to ``path``."""
    with open(path, "w") as f:
        json.dump(to_json(results, **kwargs), f, indent=2)
        f.write("\n")


def plot(path: str | os.PathLike, results: Sequence[CaseResult]) -> bool:
    """Bar plot of the ratios (one bar per timed case, grouped by op) and, when some cases
    form size sweeps, time against size for ours and the reference. Returns False when
    nothing was timed (no file is written)."""
    timed = [r for r in results if r.status == "ok"]
    if not timed:
        return False
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    sweeps: dict[tuple, list[CaseResult]] = {}
    for r in timed:
        if r.sweep and r.size > 0:
            sweeps.setdefault((r.sweep, r.device, r.dtype, r.backward), []).append(r)
    sweeps = {k: v for k, v in sweeps.items() if len(v) > 1}

    ncols = 2 if sweeps else 1
    height = max(3.0, 0.28 * len(timed) + 1.5)
    fig, axes = plt.subplots(1, ncols, figsize=(8 * ncols, height), squeeze=False)
    ax = axes[0][0]
    labels = [f"{r.label}: {r.sub_label}" for r in timed]
    ratios = [r.ratio for r in timed]
    ops = sorted({r.label for r in timed})
    colors = {op: plt.cm.tab10(i % 10) for i, op in enumerate(ops)}
    y = list(range(len(timed)))[::-1]
    bars = ax.barh(y, ratios, color=[colors[r.label] for r in timed])
    ax.bar_label(bars, labels=[f"{v:.2f}" for v in ratios], fontsize=6, padding=2)
    ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=colors[op]) for op in ops],
              labels=ops, fontsize=7, loc="lower right")
    ax.set_yticks(y, labels, fontsize=7)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("pyseg time / reference time (lower is better)")
    ax.set_title("pyseg vs reference")

    if sweeps:
        ax2 = axes[0][1]
        for i, ((name, device, dtype, backward), rs) in enumerate(sorted(sweeps.items())):
            rs = sorted(rs, key=lambda r: r.size)
            color = plt.cm.tab10(i % 10)
            tag = f"{name} {dtype} {device}{' fwd+bwd' if backward else ''}"
            sizes = [r.size for r in rs]
            ax2.plot(sizes, [r.ours.median * 1e3 for r in rs], "o-", color=color,
                     label=f"{tag} pyseg")
            ax2.plot(sizes, [r.reference.median * 1e3 for r in rs], "s--", color=color,
                     label=f"{tag} reference")
        ax2.set_xscale("log")
        ax2.set_yscale("log")
        ax2.set_xlabel("size (output elements)")
        ax2.set_ylabel("median time per call (ms)")
        ax2.set_title("size sweeps")
        ax2.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return True


def results_from_json(data: dict) -> list[CaseResult]:
    """Rebuild results from :func:`to_json` output (without the torch Measurement objects),
    e.g. to plot or tabulate a saved run."""
    from pyseg.bench.harness import Timing

    def timing(t: dict | None) -> Timing | None:
        if t is None:
            return None
        return Timing(median=t["median_s"], iqr=t["iqr_s"], mean=t["mean_s"], runs=t["runs"],
                      number_per_run=t["number_per_run"], peak_bytes=t["peak_bytes"])

    return [
        CaseResult(
            name=r["name"], label=r["label"], sub_label=r["sub_label"],
            case_sub_label=r["case_sub_label"], backward=r["mode"] == "fwd+bwd",
            device=r["device"], dtype=r["dtype"], status=r["status"], reason=r["reason"],
            ours=timing(r["ours"]), reference=timing(r["reference"]),
            max_rel_diff=r.get("max_rel_diff"), sweep=r.get("sweep", ""),
            size=r.get("size", 0), summary=r.get("summary", ""), plugin=r.get("plugin", ""),
        )
        for r in data["results"]
    ]


def markdown(data: dict) -> str:
    """A Markdown section for ``benchmarks/RESULTS.md`` from :func:`to_json` output: the
    machine, the command, one table per op (median times, ratio, peak extra memory) and
    the cases that were not timed."""
    m = data["machine"]
    lines = [
        f"- Machine: {m['cpu']} ({m['cpu_count']} CPUs), {m['threads']} threads"
        + (f", GPU {m['cuda_device']}" if m.get("cuda_device") else ", no GPU"),
        (f"- torch {m['torch']}, torchvision {m.get('torchvision')}, pyseg {m['pyseg']}, "
        f"Python {m['python']}"),
    ]
    if data.get("command"):
        lines.append(f"- Command: `{' '.join(data['command'])}`")
    lines.append("")
    results = results_from_json(data)
    for label in dict.fromkeys(r.label for r in results):
        rows = [r for r in results if r.label == label and r.status == "ok"]
        if not rows:
            continue
        lines += [f"#### {label}", "",
                  "| case | pyseg (us) | reference (us) | ratio | pyseg mem | reference mem |",
                  "|---|---:|---:|---:|---:|---:|"]
        lines += [
            f"| {r.sub_label} | {_us(r.ours.median)} | {_us(r.reference.median)} | "
            f"{r.ratio:.2f} | {_bytes(r.ours.peak_bytes)} | {_bytes(r.reference.peak_bytes)} |"
            for r in rows
        ]
        lines.append("")
    untimed = [r for r in results if r.status != "ok"]
    if untimed:
        lines += ["Not timed:", ""]
        lines += [f"- {r.status}: {r.label} {r.sub_label}: {r.reason}" for r in untimed]
        lines.append("")
    lines.append("ratio = pyseg median time / reference median time (lower is better); "
                 "mem = peak extra memory of one call (outputs included).")
    return "\n".join(lines)
