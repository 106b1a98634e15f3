"""When a benchmark number cannot be trusted.

Two things make a timing meaningless, and neither shows in a median alone:

* **Spread.** ``torch.utils.benchmark`` measures many runs; when their interquartile range
  is over ``SPREAD_LIMIT`` (10%, torch's own warning level) of the median, the median is
  one draw of a noisy process. A single run (fewer than ``MIN_RUNS``) has no spread to
  show, so it is marked too; the table shows each side's number of runs.
* **A common floor.** With more busy threads than free cores, every OpenMP parallel region
  waits for a scheduler time slice (milliseconds), so pyseg and torch both measure the
  slice: the same time on both sides, whatever the size of the case. A row is at a common
  floor when its two sides are within ``FLOOR_BAND`` (3%) of each other and at least
  ``FLOOR_ROWS`` (3) such rows on the same device share that time within the band; a
  genuine speed rarely repeats, across different cases, on both sides at once.

:func:`mark_unreliable` writes the reasons into each :class:`CaseResult`; the table, the JSON,
the plot and the summary line show them. :func:`competition` is the check before a run: does
other work compete for the cores the timing threads need?
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from pyseg.bench.harness import CaseResult

__all__ = ["FLOOR_BAND", "FLOOR_ROWS", "MIN_RUNS", "SPREAD_LIMIT", "competition",
           "load_average", "mark_unreliable", "runnable_now", "summary", "usable_cpus"]

SPREAD_LIMIT = 0.10
MIN_RUNS = 2
FLOOR_BAND = 0.03
FLOOR_ROWS = 3


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} us" if seconds >= 1e-5 else f"{seconds * 1e6:.2f} us"


def mark_unreliable(results: Sequence[CaseResult], *, spread: float = SPREAD_LIMIT,
                    min_runs: int = MIN_RUNS, band: float = FLOOR_BAND,
                    floor_rows: int = FLOOR_ROWS) -> int:
    """Set ``r.unreliable`` (a list of short reasons, empty when the numbers can be trusted)
    on every timed result, from its measurements alone: nothing is timed here.

    Args:
        results: the results of one run (the common floor is looked for among them, per
            device).
        spread: largest interquartile range over median allowed on either side.
        min_runs: fewest timed runs allowed on either side (one run shows no spread).
        band: how close (relative) two times must be to count as the same.
        floor_rows: how many rows must share a time on both sides to call it a floor.

    Returns:
        How many timed results are unreliable.

    Example: one side timed in a single run::

        >>> from pyseg.bench import CaseResult, Timing, mark_unreliable
        >>> r = CaseResult("add", "add", "4x4 float32 cpu", "4x4", False, "cpu", "float32",
        ...                "ok", ours=Timing(1e-6, 0.0, 1e-6, 1, 100, None),
        ...                reference=Timing(2e-6, 0.0, 2e-6, 10, 100, None))
        >>> mark_unreliable([r]), r.unreliable
        (1, ['pyseg 1 run'])
    """
    timed = [(r, r.ours, r.reference) for r in results
             if r.status == "ok" and r.ours is not None and r.reference is not None]
    for r, ours, ref in timed:
        reasons = []
        for side, t in (("pyseg", ours), ("reference", ref)):
            if not t.spread <= spread:
                reasons.append(f"{side} spread {t.spread:.0%}" if math.isfinite(t.spread)
                               else f"{side} median not positive")
            if t.runs < min_runs:
                reasons.append(f"{side} {t.runs} run{'s' if t.runs != 1 else ''}")
        r.unreliable = reasons

    # Rows whose two sides take the same time; then those that share it with other rows.
    tol = math.log1p(band)
    even = [(r, math.sqrt(ours.median * ref.median)) for r, ours, ref in timed
            if ours.median > 0 and ref.median > 0
            and abs(math.log(ours.median / ref.median)) <= tol]
    for r, level in even:
        same = sum(o.device == r.device and abs(math.log(o_level / level)) <= tol
                   for o, o_level in even)
        if same >= floor_rows:
            r.unreliable.append(f"both sides at ~{_us(level)} like {same - 1} other rows "
                                "(a common floor)")
    return sum(bool(r.unreliable) for r, _, _ in timed)


def summary(results: Sequence[CaseResult], *, spread: float = SPREAD_LIMIT,
            min_runs: int = MIN_RUNS) -> str:
    """One line: how many cases were timed, how many of them are unreliable (and what marks
    a row so), and how many were refused, skipped or failed. ``spread`` and ``min_runs`` are
    the limits :func:`mark_unreliable` used, named in the line; ``results`` are its results.

    Example::

        >>> from pyseg.bench import CaseResult, summary
        >>> summary([CaseResult("add", "add", "4x4", "4x4", False, "cuda", "float32",
        ...                     "skipped", reason="CUDA is not available")])
        '0 cases timed, 1 skipped'
    """
    timed = [r for r in results if r.status == "ok"]
    bad = sum(bool(r.unreliable) for r in timed)
    text = f"{len(timed)} case{'s' if len(timed) != 1 else ''} timed"
    if timed:
        runs = "a single run" if min_runs == 2 else f"fewer than {min_runs} runs"
        text += (f", {bad} unreliable (marked '?': spread over {spread:.0%} of the median, "
                 f"{runs}, or both sides at a common floor)" if bad else ", all reliable")
    for status in ("refused", "skipped", "error"):
        n = sum(r.status == status for r in results)
        if n:
            text += f", {n} {status if status != 'error' else 'errors' if n > 1 else 'error'}"
    return text


def load_average() -> tuple[float, float, float] | None:
    """The 1, 5 and 15 minute load averages, or None where the system has none (no
    arguments).

    Example::

        >>> from pyseg.bench.trust import load_average
        >>> load = load_average()
        >>> load is None or (len(load) == 3 and min(load) >= 0)
        True
    """
    try:
        one, five, fifteen = os.getloadavg()
    except (OSError, AttributeError):
        return None
    return one, five, fifteen


def runnable_now() -> int | None:
    """Threads runnable right now, this process included (Linux ``/proc/loadavg``), or None
    elsewhere (no arguments).

    Example::

        >>> from pyseg.bench.trust import runnable_now
        >>> n = runnable_now()
        >>> n is None or n >= 1
        True
    """
    try:
        with open("/proc/loadavg") as f:
            return int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the system has one; no
    arguments).

    Example::

        >>> import os
        >>> from pyseg.bench.trust import usable_cpus
        >>> 1 <= usable_cpus() <= os.cpu_count()
        True
    """
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def competition(load: float | None, cpus: int, threads: int) -> str | None:
    """A warning when other work competes for the cores ``threads`` timing threads need,
    else None.

    Args:
        load: the 1-minute load average before the run (None: unknown, no warning).
        cpus: CPUs this process may use.
        threads: intra-op threads the timing will use.

    Returns:
        The warning, naming the load, the CPUs, the threads and what to do; or None when
        ``threads`` fit in the CPUs the load leaves free (with half a CPU of slack).

    Raises:
        ValueError: ``threads`` or ``cpus`` below 1.

    Example::

        >>> from pyseg.bench.trust import competition
        >>> print(competition(0.3, cpus=2, threads=2))
        None
        >>> competition(None, cpus=2, threads=4)
        'pyseg bench: 4 threads on 2 CPUs: ... use --threads 2 or fewer'
    """
    if threads < 1 or cpus < 1:
        raise ValueError(f"threads and cpus must be at least 1, got {threads} and {cpus}")
    if threads > cpus:
        return (f"pyseg bench: {threads} threads on {cpus} CPUs: the threads take turns, so "
                "the times include waits for a time slice; use --threads "
                f"{min(cpus, max(1, round(cpus - (load or 0))))} or fewer")
    if load is None:
        return None
    free = cpus - load
    if threads <= free + 0.5:
        return None
    fit = max(1, math.floor(free + 0.5))
    advice = (f"--threads {fit} gives steadier numbers for small cases" if fit < threads
              else "numbers from a quiet machine are the ones to quote")
    return (f"pyseg bench: load average {load:.2f} on {cpus} CPUs: other work keeps about "
            f"{min(load, cpus):.1f} of them busy and the timing needs {threads} "
            f"(--threads {threads}); each parallel region may wait for a scheduler time slice, "
            f"and both sides would measure the wait. Stop the other work, or {advice}.")
