"""Checks of pyseg.nn.convert + pyseg.kernels() on networks written elsewhere:
torchvision's FCN, DeepLabV3 and LR-ASPP (test_convert_torchvision.py),
segmentation_models_pytorch's Unet and FPN (test_convert_smp.py), random weights.

Reference: the same network, unconverted, run by torch with the same seed (dropout masks
alike). Evidence that pyseg ran: a dispatch count, in which each of torch's upsampling calls
of the reference run is a pyseg call in the converted run, and no torch upsampling is left.

Tolerances (float32): the outputs agree to 1e-5 of their scale (measured: below 4e-7) and
every gradient to 1e-4 of its own scale plus 1e-6 of the largest gradient (measured: below
4e-6 of its scale). The differences are float32 round-off, not a wrong sample: pyseg adds
the bilinear taps in another order than ATen (a few ulps per value), which the backbone's
backward then carries; in float64 the same comparison holds to 1e-10 (check_float64). The
absolute term is for the biases that a following batch norm cancels: their gradient is 0 in
exact arithmetic and ~1e-9 of rounding noise on both sides.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

import pyseg
from tests.nn.opcount import OpCount, tensors_close


def _build(factory: Callable[[], nn.Module], dtype: torch.dtype = torch.float32,
           ) -> tuple[nn.Module, nn.Module, object]:
    torch.manual_seed(0)
    reference = factory().to(dtype)
    converted, report = pyseg.nn.convert(copy.deepcopy(reference), report=True)
    return reference, converted, report


def _output(out: object) -> torch.Tensor:
    return out["out"] if isinstance(out, dict) else out  # torchvision returns a dict


def _run(model: nn.Module, x: torch.Tensor, train: bool) -> tuple[torch.Tensor, tuple]:
    model.train(train)
    torch.manual_seed(1)  # the same dropout masks on both sides
    out = _output(model(x))
    # A loss whose gradient reaches every output value with a different weight.
    loss = (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum()
    return out.detach(), torch.autograd.grad(loss, [x, *model.parameters()])


def _compare(reference: nn.Module, converted: nn.Module, x: torch.Tensor, train: bool,
             rtol: float, grad_rtol: float, grad_atol: float) -> tuple[OpCount, OpCount, dict]:
    x = x.requires_grad_(True)
    with OpCount() as ref_count:
        ref, ref_grads = _run(reference, x, train)
    with OpCount() as count, pyseg.kernels() as mode:
        ours, our_grads = _run(converted, x, train)
    tensors_close(ours, ref, rtol)
    largest = max(g.abs().max().item() for g in ref_grads)
    for a, b in zip(our_grads, ref_grads, strict=True):
        tensors_close(a, b, grad_rtol, atol=grad_atol * largest)
    return ref_count, count, mode.stats.to_pyseg


def check_network(factory: Callable[[], nn.Module], converted_modules: list[str]) -> None:
    """Eval (1 x 3 x 64 x 64) and train (2 x 3 x 32 x 32) outputs and gradients of the
    network against torch's, the dispatch count, and the names of the converted modules."""
    reference, converted, report = _build(factory)
    assert list(converted.state_dict()) == list(reference.state_dict())
    assert [e.name for e in report.converted] == converted_modules
    g = torch.Generator().manual_seed(2)
    # Batch norm trains on more than one value per channel: batch 2 (at 32 x 32 for time).
    for train, shape in ((False, (1, 3, 64, 64)), (True, (2, 3, 32, 32))):
        x = torch.rand(shape, generator=g)
        ref_count, count, routed = _compare(reference, converted, x, train, 1e-5, 1e-4, 1e-6)
        upsampling = ref_count.upsampling()  # torch's upsampling calls, forward and backward
        assert upsampling >= 2, ref_count.counts
        assert count.upsampling() == 0, count.counts
        pyseg_calls = count.pyseg()
        assert pyseg_calls["pyseg::upsample2d"] + pyseg_calls["pyseg::upsample2d_backward"] \
            == upsampling
        assert pyseg_calls["pyseg::upsample2d"] == pyseg_calls["pyseg::upsample2d_backward"]
        # Module calls are counted too (FPN's head: converted, and counted by the mode).
        assert routed == {"interpolate": pyseg_calls["pyseg::upsample2d"]}


def check_float64(factory: Callable[[], nn.Module], size: int) -> None:
    """The float32 differences are round-off: in float64 they shrink by ~8 orders."""
    reference, converted, _ = _build(factory, torch.float64)
    x = torch.rand(1, 3, size, size, dtype=torch.float64,
                   generator=torch.Generator().manual_seed(3))
    _compare(reference, converted, x, False, 1e-10, 1e-10, 1e-12)
