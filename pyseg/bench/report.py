"""Present benchmark results: the Compare table plus ratios, JSON, and a plot."""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import sys
from collections.abc import Sequence
from typing import Any

import torch

from pyseg.bench.harness import CaseResult, Timing

__all__ = ["compare_table", "competition_warning", "cpu_model", "header", "machine_facts",
           "markdown", "plot", "ratio_table", "render", "results_from_json", "to_json",
           "write_json"]

SCHEMA = "pyseg-bench/1"


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one; else what ``platform``
    says). No arguments; never raises.

    Example::

        >>> from pyseg.bench.report import cpu_model
        >>> isinstance(cpu_model(), str)
        True
    """
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_facts(threads: int | None = None, *,
                  start: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the numbers depend on: the machine (host name, architecture, CPU model, CPUs
    usable), the CPU capability torch and pyseg dispatch to, the timing threads, versions,
    GPU, and the load average (with the threads runnable at that moment, this process
    included) and UTC time.

    Called before a run, it records the load other work puts on the machine. Called after
    with ``start=`` the facts from before, it returns those facts plus ``load_average_end``,
    ``runnable_end`` and ``finished_utc``. ``threads`` is the number of timing threads
    (None: torch's current number).

    Example::

        >>> import pyseg.bench
        >>> before = pyseg.bench.machine_facts(threads=1)
        >>> before["threads"], before["pyseg"] == pyseg.__version__
        (1, True)
        >>> after = pyseg.bench.machine_facts(start=before)
        >>> sorted(set(after) - set(before))
        ['finished_utc', 'load_average_end', 'runnable_end']
    """
    import pyseg
    from pyseg.bench import trust

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = trust.load_average()
    load_list = [round(x, 2) for x in load] if load else None
    if start is not None:
        return {**start, "load_average_end": load_list, "runnable_end": trust.runnable_now(),
                "finished_utc": now}
    facts: dict[str, Any] = {
        "hostname": platform.node(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": trust.usable_cpus(),
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
    facts["load_average"] = load_list
    facts["runnable"] = trust.runnable_now()
    facts["started_utc"] = now
    return facts


def competition_warning(facts: dict[str, Any]) -> str | None:
    """:func:`pyseg.bench.trust.competition` from :func:`machine_facts` taken before a run:
    a warning when other work competes for the cores the timing threads need, else None.
    ``facts`` needs ``threads`` (``KeyError`` otherwise) and reads ``load_average`` and
    ``usable_cpus`` when present.

    Example::

        >>> from pyseg.bench import competition_warning
        >>> print(competition_warning({"threads": 2, "usable_cpus": 4, "load_average": [0.5]}))
        None
        >>> competition_warning({"threads": 2, "usable_cpus": 2, "load_average": [2.0]})
        'pyseg bench: load average 2.00 on 2 CPUs: ...'
    """
    from pyseg.bench import trust

    load = facts.get("load_average")
    cpus = facts.get("usable_cpus") or facts.get("cpu_count") or 1
    return trust.competition(load[0] if load else None, cpus, facts["threads"])


def _pyseg_cpu_capability() -> str:
    """The CPU kernel variant pyseg runs, when its build reports one (``pyseg info``)."""
    from pyseg.info import info

    return str(info().get("cpu_capability") or "not dispatched (one baseline build)")


def _load_text(facts: dict[str, Any]) -> str:
    load, end = facts.get("load_average"), facts.get("load_average_end")
    text = f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}" if load else ""
    if load and end:
        text += f" at the start, {end[0]:.2f} {end[1]:.2f} {end[2]:.2f} at the end"
    return text


def header(facts: dict[str, Any]) -> str:
    """One comment line with what the numbers depend on, from :func:`machine_facts` output
    ``facts`` (``KeyError`` for one without its keys).

    Example::

        >>> from pyseg.bench import header, machine_facts
        >>> header(machine_facts(threads=1)).startswith("# ")
        True
    """
    cpus = facts.get("usable_cpus") or facts.get("cpu_count")
    text = (f"# {facts['cpu']}{f' ({cpus} CPUs)' if cpus else ''}, capability torch "
            f"{facts['torch_cpu_capability']} / pyseg {facts['pyseg_cpu_capability']}, "
            f"{facts['threads']} threads, torch {facts['torch']}, pyseg {facts['pyseg']}")
    if facts.get("cuda_device"):
        text += f", {facts['cuda_device']}"
    if facts.get("load_average"):
        text += f", {_load_text(facts)}"
    return text


def compare_table(results: Sequence[CaseResult]) -> str:
    """The ``torch.utils.benchmark.Compare`` table of every timed case of ``results`` (``""``
    when none has its measurements: results rebuilt from JSON have none).

    Example::

        >>> from pyseg.bench import CaseResult, Timing
        >>> def timing(seconds):
        ...     return Timing(seconds, seconds / 100, seconds, 10, 100, 4096)
        >>> results = [CaseResult("add-4", "add", "4x4 float32 cpu", "4x4", False, "cpu",
        ...                       "float32", "ok", ours=timing(1e-6), reference=timing(2e-6))]
        >>> pyseg.bench.compare_table(results)      # hand-made: no Measurement objects
        ''
    """
    measurements = []
    for r in results:
        # Results rebuilt from JSON have no Measurement objects.
        if r.status == "ok" and r.ours and r.reference and r.ours.measurement \
                and r.reference.measurement:
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


def _spread(t: Timing | None) -> str:
    if t is None:
        return "-"
    return f"{t.spread:.0%} ({t.runs})" if math.isfinite(t.spread) else f"- ({t.runs})"


def _ratio(r: CaseResult) -> str:
    """The ratio, with ``?`` when the row is unreliable."""
    return f"{r.ratio:.2f}{'?' if r.unreliable else ''}" if r.ratio is not None else "-"


def _legend(results: Sequence[CaseResult]) -> str:
    timed = [r for r in results if r.status == "ok"]
    text = ("ratio = pyseg time / reference time (lower is better)"
            + ("; median of per-pair ratios, the two sides' runs interleaved"
               if any(r.interleaved for r in timed) else "")
            + "; spread = interquartile range / median (runs); mem = peak extra memory of one "
              "call; ? = unreliable, see note")
    return text


ROW_HEADER = ("case", "pyseg (us)", "reference (us)", "ratio", "spread pyseg", "spread ref",
              "pyseg mem", "reference mem", "note")


def _row(r: CaseResult, case: str) -> tuple[str, ...]:
    assert r.ours is not None and r.reference is not None
    return (case, _us(r.ours.median), _us(r.reference.median), _ratio(r), _spread(r.ours),
            _spread(r.reference), _bytes(r.ours.peak_bytes), _bytes(r.reference.peak_bytes),
            "; ".join(r.unreliable))


def ratio_table(results: Sequence[CaseResult]) -> str:
    """Per case: median times, ours / reference (lower is better), spread and runs of each
    side, peak extra memory, and why the row is unreliable (marked ``?``) if it is; one row
    per timed result of ``results`` (``""`` when none was timed).

    Example::

        >>> from pyseg.bench import CaseResult, Timing
        >>> def timing(seconds):
        ...     return Timing(seconds, seconds / 100, seconds, 10, 100, 4096)
        >>> results = [CaseResult("add-4", "add", "4x4 float32 cpu", "4x4", False, "cpu",
        ...                       "float32", "ok", ours=timing(1e-6), reference=timing(2e-6))]
        >>> print(pyseg.bench.ratio_table(results).splitlines()[-1])
        add: 4x4 float32 cpu 1.0 2.0 0.50 1% (10) 1% (10) 4.0 KiB 4.0 KiB
    """
    rows = [_row(r, f"{r.label}: {r.sub_label}") for r in results if r.status == "ok"]
    if not rows:
        return ""
    header = ROW_HEADER
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    fmt = lambda row: "  ".join(
        c.ljust(w) if i in (0, len(row) - 1) else c.rjust(w)
        for i, (c, w) in enumerate(zip(row, widths))).rstrip()
    lines = [_legend(results), fmt(header), "  ".join("-" * w for w in widths)]
    lines += [fmt(row) for row in rows]
    return "\n".join(lines)


def render(results: Sequence[CaseResult]) -> str:
    """Everything a terminal shows: Compare table, ratio table, how the agreement check was
    passed where it needed float64, cases not timed, and the summary line, for ``results``.

    Example::

        >>> from pyseg.bench import CaseResult, Timing
        >>> def timing(seconds):
        ...     return Timing(seconds, seconds / 100, seconds, 10, 100, 4096)
        >>> results = [CaseResult("add-4", "add", "4x4 float32 cpu", "4x4", False, "cpu",
        ...                       "float32", "ok", ours=timing(1e-6), reference=timing(2e-6))]
        >>> print(pyseg.bench.render(results).splitlines()[-1])
        1 case timed, all reliable
    """
    from pyseg.bench.trust import summary

    parts = [compare_table(results), ratio_table(results)]
    notes = [r for r in results if r.status == "ok" and r.agreement]
    if notes:
        parts.append("\n".join(f"checked  {r.label}: {r.sub_label}: {r.agreement}"
                               for r in notes))
    untimed = [r for r in results if r.status != "ok"]
    if untimed:
        parts.append("\n".join(
            f"{r.status:<8} {r.label}: {r.sub_label}: {r.reason}" for r in untimed))
    parts.append(summary(results))
    return "\n\n".join(p for p in parts if p)


def to_json(results: Sequence[CaseResult], *, command: Sequence[str] | None = None,
            threads: int | None = None, settings: dict | None = None,
            machine: dict[str, Any] | None = None) -> dict[str, Any]:
    """Results as a JSON-ready dict: ``schema``, ``machine`` (``machine`` as given, e.g.
    :func:`machine_facts` before and after the run, else the facts now), ``command``,
    ``settings`` (e.g. min_run_time), ``summary`` (the summary line), ``results``.
    ``command`` is the command line that ran (None: not recorded); ``threads`` goes to
    :func:`machine_facts` when ``machine`` is None.

    Example::

        >>> from pyseg.bench import CaseResult, Timing
        >>> def timing(seconds):
        ...     return Timing(seconds, seconds / 100, seconds, 10, 100, 4096)
        >>> results = [CaseResult("add-4", "add", "4x4 float32 cpu", "4x4", False, "cpu",
        ...                       "float32", "ok", ours=timing(1e-6), reference=timing(2e-6))]
        >>> data = pyseg.bench.to_json(results, command=["pyseg", "bench"], machine={})
        >>> data["schema"], data["summary"], data["results"][0]["ratio"]
        ('pyseg-bench/1', '1 case timed, all reliable', 0.5)
    """
    from pyseg.bench.trust import summary

    return {
        "schema": SCHEMA,
        "machine": dict(machine) if machine is not None else machine_facts(threads),
        "command": list(command) if command is not None else None,
        "settings": dict(settings or {}),
        "summary": summary(results),
        "results": [r.to_json() for r in results],
    }


def write_json(path: str | os.PathLike, results: Sequence[CaseResult], **kwargs: Any) -> None:
    """Write :func:`to_json` of ``results`` (with its keyword arguments ``kwargs``) to
    ``path``, indented.

    Example::

        >>> import json, os, tempfile
        >>> from pyseg.bench import CaseResult, Timing
        >>> def timing(seconds):
        ...     return Timing(seconds, seconds / 100, seconds, 10, 100, 4096)
        >>> results = [CaseResult("add-4", "add", "4x4 float32 cpu", "4x4", False, "cpu",
        ...                       "float32", "ok", ours=timing(1e-6), reference=timing(2e-6))]
        >>> path = os.path.join(tempfile.mkdtemp(), "bench.json")
        >>> pyseg.bench.write_json(path, results, machine={})
        >>> json.load(open(path))["results"][0]["name"]
        'add-4'
    """
    with open(path, "w") as f:
        json.dump(to_json(results, **kwargs), f, indent=2)
        f.write("\n")


def plot(path: str | os.PathLike, results: Sequence[CaseResult]) -> bool:
    """Bar plot of the ratios (one bar per timed case, grouped by op) and, when some cases
    form size sweeps, time against size for ours and the reference. Returns False when
    nothing was timed (no file is written), True when the PNG was written to ``path``.

    Example::

        >>> import os, tempfile
        >>> from pyseg.bench import CaseResult, Timing
        >>> def timing(seconds):
        ...     return Timing(seconds, seconds / 100, seconds, 10, 100, 4096)
        >>> results = [CaseResult("add-4", "add", "4x4 float32 cpu", "4x4", False, "cpu",
        ...                       "float32", "ok", ours=timing(1e-6), reference=timing(2e-6))]
        >>> path = os.path.join(tempfile.mkdtemp(), "bench.png")
        >>> pyseg.bench.plot(path, results), os.path.exists(path)
        (True, True)
        >>> pyseg.bench.plot(path + ".none.png", [])
        False
    """
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
    for bar, r in zip(bars, timed):
        if r.unreliable:  # hatched and faded: a number not to be trusted
            bar.set_alpha(0.35)
            bar.set_hatch("///")
    ax.bar_label(bars, labels=[_ratio(r) for r in timed], fontsize=6, padding=2)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[op]) for op in ops]
    names = list(ops)
    if any(r.unreliable for r in timed):
        handles.append(plt.Rectangle((0, 0), 1, 1, facecolor="white", edgecolor="black",
                                     hatch="///"))
        names.append("unreliable (?)")
    ax.legend(handles=handles, labels=names, fontsize=7, loc="lower right")
    ax.set_yticks(y, labels, fontsize=7)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("pyseg time / reference time (lower is better)")
    n_bad = sum(bool(r.unreliable) for r in timed)
    ax.set_title("pyseg vs reference" + (f" ({n_bad} of {len(timed)} unreliable)" if n_bad
                                         else ""))

    if sweeps:
        ax2 = axes[0][1]
        marked = False
        for i, ((name, device, dtype, backward), rs) in enumerate(sorted(sweeps.items())):
            rs = sorted(rs, key=lambda r: r.size)
            color = plt.cm.tab10(i % 10)
            tag = f"{name} {dtype} {device}{' fwd+bwd' if backward else ''}"
            sizes = [r.size for r in rs]
            ax2.plot(sizes, [r.ours.median * 1e3 for r in rs], "o-", color=color,
                     label=f"{tag} pyseg")
            ax2.plot(sizes, [r.reference.median * 1e3 for r in rs], "s--", color=color,
                     label=f"{tag} reference")
            bad = [r for r in rs if r.unreliable]
            if bad:  # circled in red: unreliable points
                ax2.scatter([r.size for r in bad] * 2,
                            [r.ours.median * 1e3 for r in bad]
                            + [r.reference.median * 1e3 for r in bad],
                            s=90, facecolors="none", edgecolors="red", linewidths=1,
                            label=None if marked else "unreliable", zorder=3)
                marked = True
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
    e.g. to plot or tabulate a saved run. A file from before the reliability marks gets
    them computed from its measurements. ``data`` is the dict (e.g. ``json.load`` of a
    file); a ``KeyError`` names a missing field.

    Example::

        >>> from pyseg.bench import CaseResult, Timing
        >>> def timing(seconds):
        ...     return Timing(seconds, seconds / 100, seconds, 10, 100, 4096)
        >>> results = [CaseResult("add-4", "add", "4x4 float32 cpu", "4x4", False, "cpu",
        ...                       "float32", "ok", ours=timing(1e-6), reference=timing(2e-6))]
        >>> again = pyseg.bench.results_from_json(pyseg.bench.to_json(results, machine={}))
        >>> again[0].ratio, again[0].ours.peak_bytes
        (0.5, 4096)
    """
    from pyseg.bench.trust import mark_unreliable

    def timing(t: dict | None) -> Timing | None:
        if t is None:
            return None
        return Timing(median=t["median_s"], iqr=t["iqr_s"], mean=t["mean_s"], runs=t["runs"],
                      number_per_run=t["number_per_run"], peak_bytes=t["peak_bytes"])

    results = [
        CaseResult(
            name=r["name"], label=r["label"], sub_label=r["sub_label"],
            case_sub_label=r["case_sub_label"], backward=r["mode"] == "fwd+bwd",
            device=r["device"], dtype=r["dtype"], status=r["status"], reason=r["reason"],
            ours=timing(r["ours"]), reference=timing(r["reference"]),
            max_rel_diff=r.get("max_rel_diff"), sweep=r.get("sweep", ""),
            size=r.get("size", 0), summary=r.get("summary", ""), plugin=r.get("plugin", ""),
            agreement=r.get("agreement", ""), interleaved=r.get("interleaved", False),
            pair_ratio=r["ratio"] if r.get("ratio_of") == "median of per-pair ratios"
            else None, unreliable=list(r.get("unreliable") or []),
        )
        for r in data["results"]
    ]
    if not all("unreliable" in r for r in data["results"]):
        mark_unreliable(results)
    return results


def markdown(data: dict) -> str:
    """A Markdown section for ``benchmarks/RESULTS.md`` from :func:`to_json` output: the
    machine (host, CPU, capability, threads, load average at the start and the end, date),
    the command, one table per op (median times, ratio, spread and runs, peak extra memory,
    why a row is unreliable), the agreement notes, the cases that were not timed and the
    summary line. ``data`` needs the machine facts of :func:`machine_facts`.

    Example::

        >>> from pyseg.bench import CaseResult, Timing
        >>> def timing(seconds):
        ...     return Timing(seconds, seconds / 100, seconds, 10, 100, 4096)
        >>> results = [CaseResult("add-4", "add", "4x4 float32 cpu", "4x4", False, "cpu",
        ...                       "float32", "ok", ours=timing(1e-6), reference=timing(2e-6))]
        >>> data = pyseg.bench.to_json(results, machine=pyseg.bench.machine_facts(threads=1))
        >>> text = pyseg.bench.markdown(data)
        >>> text.startswith("- Machine: "), "#### add" in text
        (True, True)
    """
    from pyseg.bench.trust import summary

    m = data["machine"]
    cpus = m.get("usable_cpus") or m.get("cpu_count")
    machine = f"- Machine: {m['cpu']} ({cpus} CPUs)"
    if m.get("hostname"):
        machine += f" `{m['hostname']}`"
    if m.get("torch_cpu_capability"):
        machine += (f", capability torch {m['torch_cpu_capability']} / pyseg "
                    f"{m.get('pyseg_cpu_capability')}")
    machine += f", {m['threads']} threads"
    machine += f", GPU {m['cuda_device']}" if m.get("cuda_device") else ", no GPU"
    lines = [machine]
    when = ", ".join(x for x in (m.get("started_utc") and f"started {m['started_utc']}",
                                 m.get("finished_utc") and f"finished {m['finished_utc']}") if x)
    if m.get("load_average") or when:
        lines.append("- " + "; ".join(x for x in (_load_text(m).capitalize(), when) if x))
    lines.append(f"- torch {m['torch']}, torchvision {m.get('torchvision')}, pyseg {m['pyseg']}, "
                 f"Python {m['python']}")
    if data.get("command"):
        lines.append(f"- Command: `{' '.join(data['command'])}`")
    lines.append("")
    results = results_from_json(data)
    for label in dict.fromkeys(r.label for r in results):
        rows = [_row(r, r.sub_label) for r in results if r.label == label and r.status == "ok"]
        if not rows:
            continue
        lines += [f"#### {label}", "", "| " + " | ".join(ROW_HEADER) + " |",
                  "|---|" + "---:|" * (len(ROW_HEADER) - 2) + "---|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
    notes = [r for r in results if r.status == "ok" and r.agreement]
    if notes:
        lines += ["Agreement checked against float64:", ""]
        lines += [f"- {r.label} {r.sub_label}: {r.agreement}" for r in notes]
        lines.append("")
    untimed = [r for r in results if r.status != "ok"]
    if untimed:
        lines += ["Not timed:", ""]
        lines += [f"- {r.status}: {r.label} {r.sub_label}: {r.reason}" for r in untimed]
        lines.append("")
    lines += [summary(results) + ".", "", _legend(results) + "; mem includes the outputs."]
    return "\n".join(lines)
