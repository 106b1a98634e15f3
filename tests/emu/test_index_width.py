"""The 32-bit and 64-bit index kernels of upsample2d / bed_of_nails and max_unpool2d.

The launch code picks int32 index arithmetic when every offset fits (always at test sizes)
and int64 otherwise; ``_emu.set_force_int64(True)`` makes it pick int64 here, so both
instantiations run against the same float64 references (torch's CPU ops in float64), under
the forward, reverse and interleaved thread orders. The emulator's launch counters name the
kernel that ran, which shows the choice itself.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.emu

ops = torch.ops.pyseg_emu


@pytest.fixture(params=[False, True], ids=["int32", "int64"])
def wide(request, emu):
    emu.set_force_int64(request.param)
    yield request.param
    emu.set_force_int64(False)


@pytest.fixture(params=["forward", "reverse", "interleaved"])
def order(request, emu):
    previous = emu.thread_order()
    emu.set_thread_order(request.param, 11)
    yield
    emu.set_thread_order(previous)


def _kernels_run(emu, fn):
    """Names of the kernels `fn` launches (counters on for the call)."""
    before = emu.checks()
    emu.reset_stats()
    emu.set_checks(before["memcheck"], before["racecheck"], True)
    try:
        fn()
    finally:
        emu.set_checks(before["memcheck"], before["racecheck"], before["counters"])
    names = [c["kernel"] for c in emu.launch_counters()]
    emu.reset_stats()
    return names


@pytest.mark.parametrize("mode,align", [("nearest", None), ("bilinear", False),
                                        ("bilinear", True), ("bicubic", False), ("bicubic", True)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_upsample_both_widths_match_float64(emu, wide, order, mode, align, channels_last):
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    size = [9, 4]
    ref = F.interpolate(x, size=size, mode=mode, align_corners=align)
    ours = ops.upsample2d(x.float(), size, mode, bool(align), None, None)
    torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-5)
    # Backward against autograd of torch's float64 interpolate.
    g = torch.randn(2, 3, *size, dtype=torch.float64)
    xr = x.clone().requires_grad_()
    F.interpolate(xr, size=size, mode=mode, align_corners=align).backward(g)
    grad = ops.upsample2d_backward(g.float(), [2, 3, 5, 7], mode, bool(align), None, None)
    torch.testing.assert_close(grad.double(), xr.grad, rtol=1e-5, atol=1e-5)


def test_bed_of_nails_both_widths(emu, wide, order):
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    ref = torch.zeros(2, 3, 8, 15, dtype=torch.float64)
    ref[:, :, ::2, ::3] = x  # the definition: each value at the top-left of its cell
    torch.testing.assert_close(ops.bed_of_nails(x, [2, 3]), ref, rtol=0, atol=0)
    torch.testing.assert_close(ops.bed_of_nails_backward(ref, [2, 3]), x, rtol=0, atol=0)


@pytest.mark.parametrize("channels_last", [False, True])
def test_max_unpool_both_widths(emu, wide, order, channels_last):
    x = torch.randn(2, 3, 9, 7, dtype=torch.float64)
    y, idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)  # overlapping: duplicates
    if channels_last:
        y = y.contiguous(memory_format=torch.channels_last)
        idx = idx.contiguous(memory_format=torch.channels_last)
    ours = ops.max_unpool2d(y, idx, [9, 7])
    torch.testing.assert_close(ours, F.max_unpool2d(y, idx, 3, 2, 1, output_size=[9, 7]),
                               rtol=0, atol=0)
    g = torch.randn(2, 3, 9, 7, dtype=torch.float64)
    torch.testing.assert_close(ops.max_unpool2d_backward(g, idx),
                               g.flatten(2).gather(2, idx.flatten(2)).view_as(y), rtol=0, atol=0)


def test_the_launch_picks_the_width(emu, wide):
    x = torch.randn(1, 2, 4, 4)
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    names = _kernels_run(emu, lambda: ops.upsample2d(x, [8, 8], "bilinear", False, None, None))
    names += _kernels_run(emu, lambda: ops.max_unpool2d(y, idx, [4, 4]))
    resample = [n for n in names if "resample_kernel<" in n]
    claim = [n for n in names if "claim_kernel<" in n]
    assert resample and claim, names
    index_type = "long" if wide else "int"
    assert all(n.split("(")[0].rstrip(">").endswith(f", {index_type}") for n in resample + claim), names
