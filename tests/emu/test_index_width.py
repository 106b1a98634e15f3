"""The 32-bit and 64-bit index kernels of upsample2d / bed_of_nails, max_unpool2d,
conv_transpose3d (col2vol / vol2col), grid_sample's backward (finalize) and deform_conv2d
(im2col, col2im, coordinate gradient).

The launch code picks int32 index arithmetic when every offset fits (always at test sizes)
and int64 otherwise; ``_emu.set_force_int64(True)`` makes it pick int64 here, so both
instantiations run against the same float64 references (torch's CPU ops in float64,
torchvision's deform_conv2d), under the forward, reverse and interleaved thread orders. The emulator's launch counters name the
kernel that ran, which shows the choice itself.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision

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


def _autograd(fn, inputs, grad):
    """Gradients of sum(fn(*inputs) * grad) with respect to every input, in float64."""
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    fn(*leaves).backward(grad)
    return [t.grad for t in leaves]


# (stride, padding, output_padding, groups, dilation): strided with a remainder, and grouped
# and dilated with overlapping taps.
CT3D = [((1, 2, 2), (1, 0, 1), (0, 1, 0), 1, (1, 1, 1)),
        ((2, 1, 2), (0, 1, 1), (1, 0, 0), 2, (1, 2, 1))]


@pytest.mark.parametrize("stride,padding,output_padding,groups,dilation", CT3D)
def test_conv_transpose3d_both_widths_match_float64(emu, wide, order, stride, padding,
                                                    output_padding, groups, dilation):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 3, 4, 5, generator=g, dtype=torch.float64)
    w = torch.randn(4, 3, 2, 3, 2, generator=g, dtype=torch.float64)
    b = torch.randn(3 * groups, generator=g, dtype=torch.float64)
    args = (stride, padding, output_padding, groups, dilation)
    ref = F.conv_transpose3d(x, w, b, stride, padding, output_padding, groups, dilation)
    torch.testing.assert_close(ops.conv_transpose3d(x, w, b, *args), ref, rtol=1e-10, atol=1e-10)
    gy = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    expected = _autograd(lambda x, w, b: F.conv_transpose3d(x, w, b, *args), (x, w, b), gy)
    actual = ops.conv_transpose3d_backward(gy, x, w, *args, [True, True, True])
    for name, a, e in zip(("input", "weight", "bias"), actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("channels_last", [False, True])
def test_grid_sample_input_gradient_both_widths(emu, wide, order, dims, channels_last):
    # finalize_kernel writes grad_input through its strides (NC(D)HW or channels_last).
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, *([4] * dims), generator=g, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last if dims == 2
                         else torch.channels_last_3d)
    grid = 1.2 * torch.rand(2, *([3] * dims), dims, generator=g, dtype=torch.float64) - 0.6
    gy = torch.randn(2, 3, *([3] * dims), generator=g, dtype=torch.float64)
    expected = _autograd(lambda x, grid: F.grid_sample(x, grid, "bilinear", "zeros", False),
                         (x, grid), gy)
    actual = ops.grid_sample_backward(gy, x, grid, 0, 0, False, [True, True])
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("deterministic", [False, True], ids=["atomic", "plane"])
def test_deform_conv2d_both_widths_match_torchvision(emu, wide, order, deterministic):
    # Offsets of +-2 pixels put samples outside the image and across corners.
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 4, 5, 6, generator=g, dtype=torch.float64)
    w = torch.randn(6, 2, 3, 3, generator=g, dtype=torch.float64)  # groups 2
    b = torch.randn(6, generator=g, dtype=torch.float64)
    off = 2 * torch.randn(2, 2 * 2 * 9, 5, 6, generator=g, dtype=torch.float64)  # offset groups 2
    mask = torch.rand(2, 2 * 9, 5, 6, generator=g, dtype=torch.float64)
    args = (1, 1, 1, 1, 1, 1, 2, 2, True)

    def reference(x, w, off, mask, b):
        return torchvision.ops.deform_conv2d(x, off, w, b, padding=1, mask=mask)

    ref = reference(x, w, off, mask, b)
    torch.testing.assert_close(ops.deform_conv2d(x, w, off, mask, b, *args), ref,
                               rtol=1e-10, atol=1e-10)
    gy = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    expected = _autograd(reference, (x, w, off, mask, b), gy)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic)
    try:
        actual = ops._deform_conv2d_backward(gy, x, w, off, mask, b, *args)
    finally:
        torch.use_deterministic_algorithms(previous)
    for name, a, e in zip(("input", "weight", "offset", "mask", "bias"), actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-9, msg=lambda m, n=name: f"{n}: {m}")


def test_the_launch_picks_the_width(emu, wide):
    x = torch.randn(1, 2, 4, 4)
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    names = _kernels_run(emu, lambda: ops.upsample2d(x, [8, 8], "bilinear", False, None, None))
    names += _kernels_run(emu, lambda: ops.max_unpool2d(y, idx, [4, 4]))
    x3, w3 = torch.randn(1, 2, 2, 3, 3), torch.randn(2, 2, 2, 2, 2)
    ct3d = ((1, 2, 2), (0, 0, 0), (0, 0, 0), 1, (1, 1, 1))
    names += _kernels_run(emu, lambda: ops.conv_transpose3d_backward(
        torch.randn(1, 2, 3, 6, 6), x3, w3, *ct3d, [True, True, False]))
    names += _kernels_run(emu, lambda: ops.conv_transpose3d(x3, w3, None, *ct3d))
    names += _kernels_run(emu, lambda: ops.grid_sample_backward(
        torch.randn(1, 2, 3, 3), x, torch.rand(1, 3, 3, 2) - 0.5, 0, 0, False, [True, False]))
    names += _kernels_run(emu, lambda: ops._deform_conv2d_backward(
        torch.randn(1, 2, 4, 4), x, torch.randn(2, 2, 3, 3), torch.randn(1, 18, 4, 4),
        torch.rand(1, 9, 4, 4), torch.zeros(2), 1, 1, 1, 1, 1, 1, 1, 1, True))
    chosen = ["resample_kernel<", "claim_kernel<", "col2vol_kernel<", "vol2col_kernel<",
              "finalize_kernel<", "im2col_kernel<", "col2im_atomic_kernel<", "coord_grad_kernel<"]
    picked = [n for n in names if any(k in n for k in chosen)]
    for k in chosen:
        assert any(k in n for n in picked), (k, names)
    index_type = "long" if wide else "int"
    assert all(n.split("(")[0].rstrip(">").endswith(f", {index_type}") for n in picked), picked
