"""The agreement check before timing (harness.check_agreement): fed-in tensors with a known
truth, then a real network whose float32 twins differ beyond the tolerance."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from pyseg.bench import harness, models
from pyseg.bench.harness import Disagreement, check_agreement

RTOL = 1e-2


def _noisy(truth: torch.Tensor, rel: float, seed: int) -> torch.Tensor:
    """``truth`` in float32 plus noise of max magnitude ``rel`` times its scale."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(truth.shape, generator=g, dtype=torch.float64) * 2 - 1
    noise *= rel * truth.abs().max() / noise.abs().max()
    return (truth + noise).float()


def _truth(scale: float = 1.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(64, generator=g, dtype=torch.float64) * scale


class Exact:
    """Stands for the float64 run: returns the fed-in float64 results, counts calls."""

    def __init__(self, ours64, ref64):
        self.results, self.calls = (ours64, ref64), 0

    def __call__(self):
        self.calls += 1
        return self.results


def test_agreement_within_tolerance_never_runs_float64():
    truth = _truth()
    exact = Exact(truth, truth)
    worst, note = check_agreement(_noisy(truth, 1e-3, 1), _noisy(truth, 1e-3, 2), RTOL,
                                  exact=exact)
    assert 0 < worst <= 2e-3 and note == "" and exact.calls == 0


def test_pyseg_as_good_as_torch_against_float64_is_accepted():
    # Both float32 sides are ~3% off the truth in different directions: 6% apart, beyond
    # the 1% tolerance, but pyseg is no worse than torch.
    truth = _truth()
    ours, ref = _noisy(truth, 0.03, 1), _noisy(truth, 0.03, 2)
    with pytest.raises(Disagreement):  # the plain check refuses it
        check_agreement(ours, ref, RTOL)
    exact = Exact(truth, truth)
    worst, note = check_agreement(ours, ref, RTOL, "gradient", exact=exact)
    assert worst > RTOL and exact.calls == 1
    assert note.startswith("gradient: 1 tensor(s) beyond tolerance 0.01 of the float32 "
                           "reference, judged against float64 instead and accepted")
    assert "against float64, pyseg is off by" in note


def test_pyseg_worse_than_torch_against_float64_is_refused():
    truth = _truth()
    ours, ref = _noisy(truth, 0.05, 1), _noisy(truth, 0.01, 2)
    with pytest.raises(Disagreement) as info:
        check_agreement(ours, ref, RTOL, exact=Exact(truth, truth))
    message = str(info.value)
    err_p = (ours.double() - truth).abs().max().item()
    err_t = (ref.double() - truth).abs().max().item()
    # The message says both errors and the rule.
    assert f"pyseg is off by {err_p:.3g} and the reference by {err_t:.3g}" in message
    assert "more than 2 x the reference's error" in message
    # Just within 2x (plus the tiny floor) is accepted.
    check_agreement(_noisy(truth, 0.019, 1), ref, RTOL, exact=Exact(truth, truth))


def test_a_near_zero_gradient_is_judged_against_the_models_scale():
    # pets-encdec's case: one gradient of scale ~3e-8 (all but zero next to the model's
    # largest gradient, 1e-2), 1.1% off in pyseg's float32 while torch's is exact.
    big, tiny = _truth(1e-2, 1), _truth(3e-8, 2)
    ours = {"gradient": {"big": big.float(), "tiny": _noisy(tiny, 0.011, 3)}}
    ref = {"gradient": {"big": big.float(), "tiny": tiny.float()}}
    truth = {"gradient": {"big": big, "tiny": tiny}}
    worst, note = check_agreement(ours, ref, RTOL, exact=Exact(truth, truth))
    assert worst > RTOL and "output[gradient][tiny]" in note
    # Alone, with nothing larger beside it, the same tensor is judged by its own scale.
    lone = {"gradient": {"tiny": tiny}}
    with pytest.raises(Disagreement, match=r"^output: .*more than 2 x"):
        check_agreement({"gradient": {"tiny": ours["gradient"]["tiny"]}},
                        {"gradient": {"tiny": tiny.float()}}, RTOL, exact=Exact(lone, lone))
    # The floor is relative (1e-5 of the largest sibling for float32): a gradient off by
    # more than that is refused even beside a large one.
    off = {"gradient": {"big": big.float(), "tiny": (tiny + 1e-6).float()}}
    with pytest.raises(Disagreement, match="tiny"):
        check_agreement(off, ref, RTOL, exact=Exact(truth, truth))
    assert harness.floor_rtol(torch.float32) == 1e-5


def test_float64_sides_must_agree():
    # Float32 errors look alike, but pyseg's float64 result is wrong: a real bug that
    # float32 rounding hid.
    truth = _truth()
    ours, ref = _noisy(truth, 0.03, 1), _noisy(truth, 0.03, 2)
    with pytest.raises(Disagreement, match="in float64 pyseg and the reference differ"):
        check_agreement(ours, ref, RTOL, exact=Exact(truth * 1.001, truth))


def test_refusals_that_float64_cannot_rescue():
    truth = _truth()
    ours, ref = _noisy(truth, 0.03, 1), _noisy(truth, 0.03, 2)

    def fails():
        raise RuntimeError("float64 not supported")

    with pytest.raises(Disagreement, match="float64 run to judge it failed: RuntimeError"):
        check_agreement(ours, ref, RTOL, exact=fails)
    # Results already in float64 are the truth themselves.
    with pytest.raises(Disagreement, match="tolerance"):
        check_agreement(ours.double(), ref.double(), RTOL, exact=Exact(truth, truth))
    exact = Exact(truth, truth)
    for a, b, match in [(ours[:3], ref, "shape"), (ours.half(), ref, "dtype"),
                        ([ours], [ref, ref], "1 tensors, the reference 2"),
                        ([None], [ref], "one side is None")]:
        with pytest.raises(Disagreement, match=match):
            check_agreement(a, b, RTOL, exact=exact)
    nan = ref.clone()
    nan[0] = float("nan")
    with pytest.raises(Disagreement, match="NaNs"):
        check_agreement(ours, nan, RTOL, exact=exact)
    with pytest.raises(Disagreement, match="values differ"):
        check_agreement(torch.arange(3), torch.arange(1, 4), RTOL, exact=exact)
    assert exact.calls == 0


def test_equal_infinities_agree():
    x = torch.tensor([1.0, float("inf"), -float("inf")])
    assert check_agreement(x, x.clone(), RTOL) == (0.0, "")


def _deconvnet_train_case(width: float, size: int):
    setup = models.ModelSetup("deconvnet", "deconvnet", (2, 3, size, size), {"width": width})
    case = models.model_cases([setup])[1]
    assert case.name == "models/deconvnet/nchw/train"
    return case


@pytest.mark.slow
def test_deconvnet_training_step_is_accepted_against_float64():
    # DeconvNet at half width and a 64x64 input, 1 thread: the float32 twins' gradients differ
    # only because of the summation order (by ~3.5% of their scale on a Zen 5 with oneDNN's
    # AVX-512 kernels, by less on other CPUs). With a tolerance below their actual difference
    # the float32 comparison refuses, and the float64 run accepts: pyseg is no further from
    # float64 than torch is.
    case = _deconvnet_train_case(0.5, 64)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        inputs = case.make_inputs(torch.device("cpu"), torch.float32)
        ours, ref = case.ours(*inputs), case.reference(*inputs)
        difference, _ = check_agreement(ours, ref, 1.0)
        assert difference > 1e-6  # two summation orders, not one
        rtol = difference / 2
        with pytest.raises(Disagreement, match=r"output\[gradient\]\["):
            check_agreement(ours, ref, rtol)  # float32 torch as truth
        worst, note = check_agreement(
            ours, ref, rtol, exact=lambda: harness._run_float64(case, inputs, {}, [], None))
    finally:
        torch.set_num_threads(previous)
    assert worst == difference
    assert "judged against float64 instead and accepted" in note


def test_run_case_records_how_the_agreement_was_judged():
    # The same judgement through the harness, on a quarter-width DeconvNet at 32x32 whose
    # twins differ by ~1e-6: forced with a tolerance of 1e-7. The case is timed and says so.
    case = replace(_deconvnet_train_case(0.25, 32), rtol=1e-7)
    r = harness.run_case(case, threads=1, min_run_time=0.001, memory=False)
    assert r.status == "ok", r.reason
    assert r.max_rel_diff > 1e-7
    assert "judged against float64 instead and accepted" in r.agreement
    assert "output[gradient][" in r.agreement
    assert r.to_json()["agreement"] == r.agreement


def test_a_real_training_step_with_a_wrong_kernel_is_still_refused():
    # pyseg's side computes with one transposed-convolution weight 0.1% off: in float64,
    # where correct twins agree to ~1e-14, that shows.
    import pyseg.nn as pnn

    case = replace(_deconvnet_train_case(0.25, 32), rtol=1e-7)

    def make(device, dtype):
        ours, twin, x, target = case.make_inputs(device, dtype)
        layer = next(m for m in ours.modules() if isinstance(m, pnn.ConvTranspose2d))
        with torch.no_grad():
            layer.weight.mul_(1.001)
        return ours, twin, x, target

    r = harness.run_case(replace(case, make_inputs=make), threads=1, min_run_time=0.001,
                         memory=False)
    assert r.status == "refused", r.agreement
    assert "against float64, pyseg is off by" in r.reason
