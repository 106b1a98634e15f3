"""When a number cannot be trusted: rows marked from fed-in measurements (nothing is timed),
the interleaved ratio under a drifting clock, the load check before a run, the machine facts."""

from __future__ import annotations

import json
import math

import pytest

from pyseg import bench
from pyseg.bench import harness, trust
from pyseg.bench.harness import CaseResult, Timing


def _timing(median_us: float, spread: float = 0.01, runs: int = 20) -> Timing:
    median = median_us * 1e-6
    return Timing(median=median, iqr=spread * median, mean=median, runs=runs,
                  number_per_run=1, peak_bytes=None)


def _row(name: str, ours: Timing, reference: Timing, device: str = "cpu",
         status: str = "ok") -> CaseResult:
    return CaseResult(name=name, label="interpolate", sub_label=f"{name} float32 {device}",
                      case_sub_label=name, backward=False, device=device, dtype="float32",
                      status=status, ours=ours, reference=reference)


def _clean() -> list[CaseResult]:
    # A size sweep as a quiet machine measures it: times grow with the size, pyseg faster.
    return [_row(f"bilinear {n}", _timing(t / 4), _timing(t)) for n, t in
            ((32, 200.0), (64, 800.0), (128, 3300.0))]


def test_a_clean_run_is_reliable():
    rows = _clean()
    assert trust.mark_unreliable(rows) == 0
    assert all(r.unreliable == [] for r in rows)
    assert trust.summary(rows) == "3 cases timed, all reliable"


def test_a_large_spread_or_too_few_runs_is_unreliable():
    rows = _clean()
    rows[1].reference = _timing(800.0, spread=0.25)
    rows[2].ours = _timing(825.0, runs=1)
    assert trust.mark_unreliable(rows) == 2
    assert rows[0].unreliable == []
    assert rows[1].unreliable == ["reference spread 25%"]
    assert rows[2].unreliable == ["pyseg 1 run"]  # one run shows no spread
    # Just under the limit is fine; the limit is torch.utils.benchmark's own 10%.
    rows[1].reference = _timing(800.0, spread=0.099)
    assert trust.mark_unreliable(rows) == 1
    assert trust.SPREAD_LIMIT == 0.10


def test_a_common_floor_on_both_sides_is_unreliable():
    # The busy machine: every batch-1 case 7,990-8,000 us on both sides, whatever
    # its size, with a small spread (each run waits for the same time slice).
    floor = [_row(f"{mode} {n}", _timing(t), _timing(t + 4))
             for mode, n, t in (("bicubic", 32, 7990), ("bicubic", 64, 7995),
                                ("bilinear", 32, 7992), ("bilinear", 128, 8000))]
    rows = floor + _clean()
    assert trust.mark_unreliable(rows) == 4
    for r in floor:
        assert len(r.unreliable) == 1
        assert r.unreliable[0].startswith(("both sides at ~7,99", "both sides at ~8,00"))
        assert "common floor" in r.unreliable[0]
        assert "like 3 other rows" in r.unreliable[0]
    assert all(r.unreliable == [] for r in rows[4:])
    line = trust.summary(rows)
    assert line.startswith("7 cases timed, 4 unreliable (marked '?'")


def test_a_floor_needs_several_rows_on_one_device():
    # One or two rows with equal times on both sides are a plausible genuine tie...
    tie = [_row("a", _timing(500), _timing(500)), _row("b", _timing(501), _timing(502))]
    assert trust.mark_unreliable(tie + _clean()) == 0
    # ... and rows on different devices do not share a floor.
    spread_out = [_row("a", _timing(500), _timing(500), "cpu"),
                  _row("b", _timing(500), _timing(500), "cuda"),
                  _row("c", _timing(500), _timing(500), "cpu")]
    assert trust.mark_unreliable(spread_out) == 0
    # Three rows at one time but one side clearly faster in each: not a floor.
    fast = [_row(n, _timing(400), _timing(500)) for n in "abc"]
    assert trust.mark_unreliable(fast) == 0


def test_marks_reach_the_table_json_markdown_and_plot(tmp_path, monkeypatch):
    rows = _clean()
    rows[1].reference = _timing(800.0, spread=0.25)
    skipped = _row("nearest", None, None, status="skipped")  # type: ignore[arg-type]
    skipped.reason = "unavailable"
    rows.append(skipped)
    trust.mark_unreliable(rows)

    table = bench.ratio_table(rows)
    line = next(x for x in table.splitlines() if "bilinear 64" in x)
    assert " 0.25?" in line and "25% (20)" in line and line.endswith("reference spread 25%")
    clean_line = next(x for x in table.splitlines() if "bilinear 32" in x)
    assert " 0.25 " in clean_line and "?" not in clean_line
    text = bench.render(rows)
    assert text.splitlines()[-1].startswith("3 cases timed, 1 unreliable")
    assert text.splitlines()[-1].endswith(", 1 skipped")

    data = bench.to_json(rows, command=["pyseg", "bench"], machine={"cpu": "x"})
    data = json.loads(json.dumps(data))
    assert data["summary"].startswith("3 cases timed, 1 unreliable")
    by_name = {r["name"]: r for r in data["results"]}
    assert by_name["bilinear 64"]["unreliable"] == ["reference spread 25%"]
    assert by_name["bilinear 32"]["unreliable"] == []
    assert by_name["bilinear 64"]["reference"]["spread"] == pytest.approx(0.25)
    assert by_name["bilinear 64"]["reference"]["runs"] == 20
    assert by_name["bilinear 64"]["interleaved"] is False
    assert by_name["bilinear 64"]["ratio_of"] == "medians"

    # A saved run keeps its marks; one saved before the marks existed gets them computed.
    again = bench.results_from_json(data)
    assert [r.unreliable for r in again] == [r.unreliable for r in rows]
    for r in data["results"]:
        del r["unreliable"]
    assert [r.unreliable for r in bench.results_from_json(data)] == \
        [r.unreliable for r in rows]

    data["machine"] = {"cpu": "AMD EPYC", "cpu_count": 2, "usable_cpus": 2, "threads": 1,
                       "hostname": "box", "torch": "2.14.1", "pyseg": "0.1.0",
                       "python": "3.11", "torchvision": "0.29.1", "cuda_device": None,
                       "torch_cpu_capability": "AVX512", "pyseg_cpu_capability": "avx512",
                       "load_average": [1.02, 0.9, 0.5], "load_average_end": [1.5, 1.0, 0.6],
                       "started_utc": "2026-12-02 01:00 UTC",
                       "finished_utc": "2026-12-02 01:05 UTC"}
    md = bench.markdown(data)
    assert "- Machine: AMD EPYC (2 CPUs) `box`, capability torch AVX512 / pyseg avx512, " \
        "1 threads, no GPU" in md
    assert "Load average 1.02 0.90 0.50 at the start, 1.50 1.00 0.60 at the end; started " \
        "2026-12-02 01:00 UTC, finished 2026-12-02 01:05 UTC" in md
    assert "| bilinear 64 float32 cpu | 200.0 | 800.0 | 0.25? |" in md
    assert "reference spread 25% |" in md
    assert "3 cases timed, 1 unreliable" in md

    # The plot: the unreliable bar is hatched and faded, the title counts it.
    import matplotlib.figure

    saved = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda fig, *a, **k: saved.append(fig))
    assert bench.plot(tmp_path / "p.png", rows)
    ax = saved[0].axes[0]
    assert ax.get_title() == "pyseg vs reference (1 of 3 unreliable)"
    bars = ax.patches[:3]  # one per timed row, in the order of the rows
    assert [b.get_hatch() for b in bars] == [None, "///", None]
    assert bars[1].get_alpha() < 1 and bars[0].get_alpha() is None
    labels = [t.get_text() for t in ax.texts]
    assert "0.25?" in labels


def test_interleaved_ratio_holds_while_the_machine_slows_down():
    # A fake clock: a call of ours costs 2 units, of the reference 1 unit, and every call
    # makes the machine 2% slower (say, another job ramping up).
    import torch

    state = {"now": 0.0, "speed": 1.0}

    def cost(units: float):
        def call():
            state["now"] += units * state["speed"]
            state["speed"] *= 1.02
        return call

    m_ours, m_ref, pair_ratio = harness._time_interleaved(
        cost(2.0), cost(1.0), label="l", sub_label="s", threads=1, min_run_time=40.0,
        device=torch.device("cpu"), clock=lambda: state["now"])
    assert len(m_ours.times) == len(m_ref.times) >= harness.MIN_PAIRS
    assert m_ours.task_spec.description == "pyseg" and m_ref.task_spec.num_threads == 1
    assert sum(m_ref.raw_times) >= 40.0 and sum(m_ours.raw_times) >= 40.0
    # Each pair sees nearly the same speed: only the drift within one pair is left.
    assert pair_ratio == pytest.approx(2.0, rel=0.06)

    # The same machine timed one side after the other (as blocked_autorange does):
    # the reference runs later, on a slower machine, and the ratio of medians is far off.
    state.update(now=0.0, speed=1.0)
    blocks = len(m_ours.times)
    seq = []
    for fn in (cost(2.0), cost(1.0)):
        times = []
        for _ in range(blocks):
            start = state["now"]
            fn()
            times.append(state["now"] - start)
        seq.append(sorted(times)[blocks // 2])
    assert abs(math.log(seq[0] / seq[1] / 2)) > 5 * abs(math.log(pair_ratio / 2))


def test_interleave_through_run_case():
    import torch

    from pyseg.registry import BenchmarkCase

    case = BenchmarkCase(name="t", label="relu", sub_label="(64,)",
                         make_inputs=lambda d, t: (torch.randn(64, device=d, dtype=t),),
                         ours=lambda x: x.clamp_min(0), reference=torch.relu)
    r = harness.run_case(case, threads=1, min_run_time=0.01, memory=False, interleave=True)
    assert r.status == "ok", r.reason
    assert r.interleaved and r.pair_ratio is not None and r.ratio == r.pair_ratio
    assert r.ours.runs == r.reference.runs >= harness.MIN_PAIRS
    assert r.to_json()["ratio_of"] == "median of per-pair ratios"


@pytest.mark.parametrize("load, cpus, threads, expected", [
    (0.05, 2, 2, None),             # idle machine
    (1.0, 2, 1, None),              # one core busy, one timing thread: fits
    (1.0, 2, 2, "--threads 1"),     # the case: a compiler on one of two cores
    (1.9, 2, 1, "quiet machine"),   # both cores busy: even 1 thread competes
    (None, 2, 2, None),             # no load average on this system
    (0.0, 2, 3, "3 threads on 2 CPUs"),
])
def test_competition(load, cpus, threads, expected):
    warning = trust.competition(load, cpus, threads)
    if expected is None:
        assert warning is None
    else:
        assert expected in warning
        if load is not None and threads <= cpus:
            assert f"load average {load:.2f} on {cpus} CPUs" in warning
    with pytest.raises(ValueError, match="threads"):
        trust.competition(load, cpus, 0)


def test_machine_facts_before_and_after_a_run():
    before = bench.machine_facts(3)
    for key in ("hostname", "machine", "cpu", "usable_cpus", "threads", "torch_cpu_capability",
                "pyseg_cpu_capability", "load_average", "runnable", "started_utc"):
        assert key in before, key
    assert before["threads"] == 3
    after = bench.machine_facts(3, start=before)
    assert {k: after[k] for k in before} == before
    assert "load_average_end" in after and after["finished_utc"].endswith("UTC")
    head = bench.header(after)
    assert "3 threads" in head and "capability torch" in head
    if before["load_average"]:
        assert "at the start" in head and "at the end" in head
    warning = bench.competition_warning({**before, "load_average": [5.0, 5.0, 5.0],
                                         "usable_cpus": 2, "threads": 2})
    assert warning and "load average 5.00 on 2 CPUs" in warning


def test_cli_interleave_warning_and_json(tmp_path, capsys, monkeypatch):
    from pyseg.cli import main

    # A machine as busy as the issue's: the warning comes before any timing.
    monkeypatch.setattr(trust, "load_average", lambda: (7.5, 6.0, 5.0))
    monkeypatch.setattr(trust, "usable_cpus", lambda: 2)
    out = tmp_path / "b.json"
    assert main(["bench", "--quick", "interpolate/bilinear-2x8x32x32", "--threads", "2",
                 "--interleave", "--no-memory", "--min-run-time", "0.005",
                 "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("pyseg bench: load average 7.50 on 2 CPUs")
    assert "--threads 1" in captured.err.splitlines()[0]
    assert "load average 7.50 6.00 5.00 at the start, 7.50 6.00 5.00 at the end" in \
        captured.out.splitlines()[0]
    assert captured.out.rstrip().splitlines()[-1].startswith("1 case timed")
    data = json.loads(out.read_text())
    assert data["settings"]["interleave"] is True
    assert data["machine"]["load_average"] == [7.5, 6.0, 5.0]
    assert data["machine"]["load_average_end"] == [7.5, 6.0, 5.0]
    assert data["machine"]["threads"] == 2 and data["machine"]["usable_cpus"] == 2
    [r] = data["results"]
    assert r["interleaved"] is True and r["ratio_of"] == "median of per-pair ratios"
    assert r["ours"]["runs"] == r["reference"]["runs"] >= harness.MIN_PAIRS
    assert data["summary"].startswith("1 case timed")
