"""The harness through its Python API: checking before timing, skips, memory, report."""

from __future__ import annotations

import json

import pytest
import torch

from pyseg import bench
from pyseg.registry import BenchmarkCase

FAST = dict(min_run_time=0.01)


def _inputs(device, dtype):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(4, 8, generator=g).to(device=device, dtype=dtype),)


def _case(name="t", ours=None, reference=torch.relu, **kw) -> BenchmarkCase:
    return BenchmarkCase(name=name, label="relu", sub_label=f"(4,8) {name}",
                         make_inputs=kw.pop("make_inputs", _inputs),
                         ours=ours or (lambda x: x.clamp_min(0)), reference=reference, **kw)


class Counter:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *a, **k):
        self.calls += 1
        return self.fn(*a, **k)


def test_agreeing_case_is_timed():
    before = torch.get_num_threads()
    [r] = bench.run([_case()], memory=False, threads=1, **FAST)
    assert r.status == "ok", r.reason
    assert r.ours.measurement.task_spec.num_threads == 1
    assert torch.get_num_threads() == before
    assert r.ours.median > 0 and r.reference.median > 0
    assert r.ratio == pytest.approx(r.ours.median / r.reference.median)
    assert r.sub_label == "(4,8) t float32 cpu"
    assert r.ours.measurement.task_spec.description == "pyseg"
    assert r.reference.measurement.task_spec.description == "reference"
    assert r.ours.measurement.task_spec.label == "relu"


def test_wrong_kernel_is_refused_and_not_timed():
    ours = Counter(lambda x: x.clamp_min(0) * 1.01)
    [r] = bench.run([_case(ours=ours)], **FAST)
    assert r.status == "refused"
    assert "disagrees" in r.reason
    # Judged against float64 too: torch's float32 relu is exact, pyseg's is 1% off.
    assert "against float64, pyseg is off by" in r.reason
    assert r.ours is None and r.reference is None and r.ratio is None
    assert ours.calls == 2  # checked once in float32, once in float64; never timed


def test_wrong_shape_and_same_callable_are_refused():
    [r] = bench.run([_case(ours=lambda x: x[:2].relu())], **FAST)
    assert r.status == "refused" and "shape" in r.reason
    [r] = bench.run([_case(ours=torch.relu, reference=torch.relu)], **FAST)
    assert r.status == "refused"


def test_wrong_gradient_is_refused():
    # Same forward values as relu, gradient doubled.
    def ours(x):
        y = x.relu()
        return y.detach() + 2 * (y - y.detach())

    [fwd, bwd] = bench.run([_case(ours=ours), _case("b", ours=ours, backward=True)],
                           memory=False, **FAST)
    assert fwd.status == "ok"
    assert bwd.status == "refused" and "gradient:" in bwd.reason
    assert bwd.sub_label.endswith("fwd+bwd")


def test_backward_case_checks_the_forward_too():
    def ours(x):  # right gradient, wrong value
        return x.relu() + 1

    [r] = bench.run([_case(ours=ours, backward=True)], memory=False, **FAST)
    assert r.status == "refused" and "output:" in r.reason


def test_backward_case_agrees_and_is_timed():
    [r] = bench.run([_case(backward=True)], memory=False, **FAST)
    assert r.status == "ok", r.reason
    assert r.backward


def test_unavailable_op_is_skipped_not_compared():
    ours = Counter(bench.pyseg_op("no_such_op"))
    case = _case(ours=ours, requires=bench.requires_pyseg_op("no_such_op"))
    [r] = bench.run([case], **FAST)
    assert r.status == "skipped"
    assert r.reason == "unavailable (pyseg.ops.no_such_op missing)"
    assert ours.calls == 0
    assert bench.requires_pyseg_op("max_unpool2d")() is None


def test_reference_failure_skips_and_ours_failure_is_an_error():
    def boom(x):
        raise RuntimeError("not implemented for this dtype\nmore")

    [r] = bench.run([_case(reference=boom)], **FAST)
    assert r.status == "skipped" and r.reason == "reference failed: RuntimeError: not implemented for this dtype"
    [r] = bench.run([_case(ours=boom)], **FAST)
    assert r.status == "error" and "pyseg raised RuntimeError" in r.reason


def test_devices_and_dtypes():
    results = bench.run([_case()], devices=["cpu", "cuda"], dtypes=[torch.float64, torch.bfloat16],
                        memory=False, **FAST)
    assert [(r.device, r.dtype) for r in results] == [
        ("cpu", "float64"), ("cpu", "bfloat16"), ("cuda", "float64"), ("cuda", "bfloat16")]
    assert all(r.status == "ok" for r in results[:2])
    if not torch.cuda.is_available():
        assert all(r.status == "skipped" and "CUDA" in r.reason for r in results[2:])


def test_peak_memory_counts_what_a_call_allocates():
    nbytes = 1 << 22
    peak = bench.peak_memory(lambda: torch.empty(nbytes, dtype=torch.uint8), torch.device("cpu"))
    if peak is None:
        pytest.skip("the profiler cannot record CPU memory in this torch")
    assert nbytes <= peak < 2 * nbytes

    def two_live():  # both buffers alive at once: the peak is their sum
        a = torch.empty(nbytes, dtype=torch.uint8)
        b = torch.empty(nbytes, dtype=torch.uint8)
        return a, b

    assert 2 * nbytes <= bench.peak_memory(two_live, torch.device("cpu")) < 3 * nbytes


def test_select():
    cases = [_case("a"), _case("b", backward=True), _case("q", quick=True)]
    assert [c.name for c in bench.select(cases)] == ["a"]
    assert [c.name for c in bench.select(cases, backward=True)] == ["a", "b"]
    assert [c.name for c in bench.select(cases, quick=True)] == ["q"]
    assert [c.name for c in bench.select(cases, ["b"], backward=True)] == ["b"]
    assert [c.name for c in bench.select(cases, ["b", "q"])] == ["b", "q"]
    # Sweeps after fixed shapes, by size (not by name).
    sweep = [_case(f"s{n}", sweep="s", size=n) for n in (128, 16, 32)]
    assert [c.name for c in bench.select([*sweep, _case("z")])] == ["z", "s16", "s32", "s128"]
    with pytest.raises(KeyError, match="nope"):
        bench.select(cases, ["nope"])


def test_report_json_and_plot(tmp_path):
    sweep = [_case(f"s{n}", make_inputs=lambda d, t, n=n: (torch.randn(n, device=d, dtype=t),),
                   sweep="relu", size=n) for n in (64, 4096)]
    bad = _case("bad", ours=lambda x: -x)
    results = bench.run([*sweep, bad], **FAST)
    text = bench.render(results)
    assert "relu" in text and "ratio" in text and "refused" in text
    bench.write_json(tmp_path / "r.json", results, command=["pyseg", "bench"])
    data = json.loads((tmp_path / "r.json").read_text())
    assert [r["status"] for r in data["results"]] == ["ok", "ok", "refused"]
    assert bench.plot(tmp_path / "r.png", results)
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert not bench.plot(tmp_path / "none.png", results[2:])
    # A saved run re-plots and renders as the Markdown of RESULTS.md.
    again = bench.results_from_json(data)
    assert [r.ratio for r in again] == [r.ratio for r in results]
    assert bench.plot(tmp_path / "again.png", again)
    md = bench.markdown(data)
    assert "Command: `pyseg bench`" in md and "#### relu" in md
    assert f"| {results[0].ratio:.2f}" in md and "refused: relu" in md  # "?" if unreliable


def test_builtin_cases():
    from pyseg_plugins.benchmarks import pyseg_benchmarks

    cases = pyseg_benchmarks()
    names = [c.name for c in cases]
    assert len(names) == len(set(names))
    for op in ("max_unpool2d", "conv_transpose2d", "interpolate", "deform_conv2d"):
        mine = [c for c in cases if c.label == op]
        for quick in (False, True):
            assert {c.backward for c in mine if c.quick == quick} == {False, True}, op
        sizes = {c.size for c in mine if c.sweep and not c.backward}
        assert len(sizes) >= 3, op
        assert all(c.requires is not None for c in mine)


def test_third_party_case_through_the_api():
    import thirdparty_bench_plugin as plugin

    [r] = bench.run(plugin.pyseg_benchmarks(), memory=False, **FAST)
    assert r.name == plugin.CASE_NAME and r.status == "ok", r.reason
    assert plugin.CASE_NAME not in bench.render([]) and "scatter" in bench.render([r])
