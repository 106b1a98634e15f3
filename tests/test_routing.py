"""pyseg.kernels(): the TorchFunctionMode that sends torch's functional calls to pyseg.

References: the same torch / torchvision call outside the mode. In float64 the two agree to
1e-12 of the output's scale (the kernels sample the same points with the same weights, in a
different summation order); a routed call is proven by the pyseg operators that ran
(a TorchDispatchMode count) and a fallback by torch's result, bit for bit."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision

import pyseg
from pyseg import routing
from tests.nn.opcount import OpCount, tensors_close

RTOL64 = 1e-12


def _rand(*shape: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def _pool(x: torch.Tensor, k: int = 2, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    return F.max_pool2d(x.detach(), k, return_indices=True, **kw)


# (name, the call, its inputs, the pyseg op that must run)
def _routed_cases():
    x = _rand(2, 4, 7, 9)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    w = _rand(4, 3, 3, 3, seed=1)
    wg = _rand(4, 3, 3, 2, seed=2)  # 2 groups of 3 outputs: 6 channels
    b = _rand(6, seed=3)
    pooled, idx = _pool(x)
    pooled6, idx6 = _pool(x[..., :6, :8])  # the default output size is 6 x 8
    pooled3, idx3 = _pool(x[0, :, :6, :8])
    pooled_s, idx_s = _pool(x, 3, stride=2, padding=1)
    # 3 x 3 taps, stride 2, padding 1, dilation (1, 2) on 7 x 9: a 4 x 4 output
    off = _rand(2, 2 * 2 * 9, 4, 4, seed=4)
    mask = _rand(2, 2 * 9, 4, 4, seed=5).sigmoid()
    wd = _rand(6, 2, 3, 3, seed=6)
    bd = _rand(6, seed=7)
    up = "pyseg::upsample2d"
    return [
        ("nearest scale 2", lambda x: F.interpolate(x, scale_factor=2), (x,), up),
        ("nearest size", lambda x: F.interpolate(x, size=(11, 4)), (x,), up),
        ("bilinear", lambda x: F.interpolate(x, size=(13, 20), mode="bilinear"), (x,), up),
        ("bilinear align_corners", lambda x: F.interpolate(
            x, scale_factor=(1.7, 2.3), mode="bilinear", align_corners=True), (x,), up),
        ("bicubic recompute", lambda x: F.interpolate(
            x, scale_factor=1.5, mode="bicubic", recompute_scale_factor=True), (x,), up),
        ("bilinear channels_last", lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"),
         (x_cl,), up),
        ("F.upsample_bilinear", lambda x: F.upsample_bilinear(x, scale_factor=2), (x,), up),
        ("F.upsample_nearest", lambda x: F.upsample_nearest(x, size=5), (x,), up),
        ("nn.Upsample", torch.nn.Upsample(scale_factor=3, mode="bicubic"), (x,), up),
        ("conv_transpose2d", lambda x, w: F.conv_transpose2d(x, w), (x, w),
         "pyseg::conv_transpose2d"),
        ("conv_transpose2d all args", lambda x, w, b: torch.conv_transpose2d(
            x, w, b, stride=(2, 3), padding=1, output_padding=(1, 0), groups=2, dilation=2),
         (x, wg, b), "pyseg::conv_transpose2d"),
        ("conv_transpose2d unbatched", lambda x, w: F.conv_transpose2d(x[0], w, stride=2),
         (x, w), "pyseg::conv_transpose2d"),
        ("nn.ConvTranspose2d output_size", _conv_transpose_module(), (x,),
         "pyseg::conv_transpose2d"),
        ("max_unpool2d", lambda p: F.max_unpool2d(p, idx6, 2), (pooled6,), "pyseg::max_unpool2d"),
        ("max_unpool2d output_size", lambda p: F.max_unpool2d(p, idx, 2, output_size=(7, 9)),
         (pooled,), "pyseg::max_unpool2d"),
        ("max_unpool2d unbatched", lambda p: F.max_unpool2d(p, idx3, 2), (pooled3,),
         "pyseg::max_unpool2d"),
        ("nn.MaxUnpool2d stride padding", lambda p: torch.nn.MaxUnpool2d(3, 2, 1)(
            p, idx_s, output_size=x.shape), (pooled_s,), "pyseg::max_unpool2d"),
        ("deform_conv2d v1", lambda x, o, w: torchvision.ops.deform_conv2d(
            x, o, w, padding=1, stride=2, dilation=(1, 2)), (x, off, wd),
         "pyseg::deform_conv2d"),
        ("deform_conv2d v2", lambda x, o, w, b, m: torchvision.ops.deform_conv2d(
            x, o, w, b, padding=1, stride=2, dilation=(1, 2), mask=m), (x, off, wd, bd, mask),
         "pyseg::deform_conv2d"),
    ]


def _conv_transpose_module() -> torch.nn.Module:
    torch.manual_seed(0)
    m = torch.nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1).double()
    return lambda x: m(x, output_size=(14, 18))  # the output_padding comes from output_size


def _module(cls, *args, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return cls(*args, **kwargs).double()


def _interpolate_nd_cases():
    """Every mode on every rank torch has it for, antialias included (pyseg::upsample)."""
    x3, x4, x5 = _rand(2, 3, 11), _rand(2, 4, 7, 9), _rand(2, 3, 4, 5, 6)
    x4_cl = x4.contiguous(memory_format=torch.channels_last)
    x5_cl = x5.contiguous(memory_format=torch.channels_last_3d)
    calls = [
        ("linear", x3, dict(scale_factor=2.5, mode="linear")),
        ("linear align_corners", x3, dict(size=17, mode="linear", align_corners=True)),
        ("nearest 3-D", x3, dict(scale_factor=2)),
        ("nearest-exact 3-D", x3, dict(size=7, mode="nearest-exact")),
        ("area 3-D", x3, dict(size=4, mode="area")),
        ("nearest-exact 4-D", x4, dict(scale_factor=1.7, mode="nearest-exact")),
        ("area 4-D", x4, dict(size=(3, 4), mode="area")),
        ("area 4-D scale", x4_cl, dict(scale_factor=0.5, mode="area")),
        ("bilinear antialias", x4, dict(size=(3, 4), mode="bilinear", antialias=True)),
        ("bilinear antialias channels_last", x4_cl,
         dict(scale_factor=0.4, mode="bilinear", antialias=True)),
        ("bicubic antialias", x4, dict(scale_factor=0.6, mode="bicubic", antialias=True)),
        ("bicubic antialias up", x4, dict(scale_factor=1.5, mode="bicubic", antialias=True)),
        ("bicubic antialias align_corners", x4,
         dict(size=(4, 5), mode="bicubic", antialias=True, align_corners=True)),
        ("trilinear", x5, dict(scale_factor=2, mode="trilinear")),
        ("trilinear align_corners", x5,
         dict(size=(3, 7, 5), mode="trilinear", align_corners=True)),
        ("trilinear channels_last_3d", x5_cl, dict(scale_factor=(1.5, 2, 0.5), mode="trilinear")),
        ("nearest 5-D", x5, dict(size=(6, 7, 8))),
        ("nearest-exact 5-D", x5, dict(scale_factor=1.5, mode="nearest-exact")),
        ("area 5-D", x5, dict(size=(2, 3, 4), mode="area")),
    ]
    cases = [(name, lambda x, kw=kw: F.interpolate(x, **kw), (x,), "pyseg::upsample")
             for name, x, kw in calls]
    cases += [
        ("nn.Upsample trilinear", _module(torch.nn.Upsample, scale_factor=2, mode="trilinear"),
         (x5,), "pyseg::upsample"),
        ("nn.Upsample linear", _module(torch.nn.Upsample, size=5, mode="linear"), (x3,),
         "pyseg::upsample"),
        ("nn.Upsample area", _module(torch.nn.Upsample, size=(3, 3), mode="area"), (x4,),
         "pyseg::upsample"),
    ]
    return cases


def _nd_cases():
    """conv_transpose1d / 3d, max_unpool1d / 3d, grid_sample."""
    x3, x5, x4 = _rand(2, 3, 11), _rand(2, 3, 4, 5, 6), _rand(2, 4, 7, 9)
    x5_cl = x5.contiguous(memory_format=torch.channels_last_3d)
    w1, w1g = _rand(3, 2, 3, seed=1), _rand(3, 1, 3, seed=2)  # groups 3: 3 outputs
    w3, w3g = _rand(3, 2, 2, 3, 2, seed=3), _rand(3, 1, 3, 3, 3, seed=4)
    b3 = _rand(3, seed=5)
    ct1, ct2, ct3 = "pyseg::conv_transpose2d", "pyseg::conv_transpose2d", "pyseg::conv_transpose3d"
    del ct2
    up1 = _module(torch.nn.ConvTranspose1d, 3, 2, 3, stride=2, padding=1)
    up3 = _module(torch.nn.ConvTranspose3d, 3, 2, 3, stride=2, padding=1)
    p1, i1 = F.max_pool1d(x3[..., :10], 2, return_indices=True)
    p1o, i1o = F.max_pool1d(x3, 2, return_indices=True)  # 5 outputs of 11 inputs
    p1s, i1s = F.max_pool1d(x3, 3, 2, 1, return_indices=True)
    p3, i3 = F.max_pool3d(x5, 2, return_indices=True)
    p3s, i3s = F.max_pool3d(x5, 3, 2, 1, return_indices=True)
    grid2 = _rand(2, 5, 6, 2, seed=6) * 0.7  # some points outside [-1, 1]
    grid3 = _rand(2, 3, 4, 2, 3, seed=7) * 0.7
    x4_cl = x4.contiguous(memory_format=torch.channels_last)
    gs = "pyseg::grid_sample"
    return [
        ("conv_transpose1d", lambda x, w: F.conv_transpose1d(x, w), (x3, w1), ct1),
        ("conv_transpose1d all args", lambda x, w, b: torch.conv_transpose1d(
            x, w, b, stride=2, padding=1, output_padding=1, groups=3, dilation=2),
         (x3, w1g, b3), ct1),
        ("conv_transpose1d unbatched", lambda x, w: F.conv_transpose1d(x[0], w, stride=3),
         (x3, w1), ct1),
        ("nn.ConvTranspose1d output_size", lambda x: up1(x, output_size=(22,)), (x3,), ct1),
        ("conv_transpose3d", lambda x, w: F.conv_transpose3d(x, w), (x5, w3), ct3),
        ("conv_transpose3d all args", lambda x, w, b: torch.conv_transpose3d(
            x, w, b, stride=(2, 1, 2), padding=1, output_padding=(1, 0, 1), groups=3,
            dilation=(1, 2, 1)), (x5, w3g, b3), ct3),
        ("conv_transpose3d unbatched", lambda x, w: F.conv_transpose3d(x[0], w, stride=2),
         (x5, w3), ct3),
        ("conv_transpose3d channels_last_3d", lambda x, w: F.conv_transpose3d(x, w, stride=2),
         (x5_cl, w3), ct3),
        ("nn.ConvTranspose3d output_size", lambda x: up3(x, output_size=(8, 10, 12)), (x5,),
         ct3),
        ("max_unpool1d", lambda p: F.max_unpool1d(p, i1, 2), (p1,), "pyseg::max_unpool2d"),
        ("max_unpool1d output_size", lambda p: F.max_unpool1d(p, i1o, 2, output_size=(11,)),
         (p1o,), "pyseg::max_unpool2d"),
        ("max_unpool1d unbatched", lambda p: F.max_unpool1d(p[0], i1[0], 2), (p1,),
         "pyseg::max_unpool2d"),
        ("nn.MaxUnpool1d stride padding", lambda p: torch.nn.MaxUnpool1d(3, 2, 1)(
            p, i1s, output_size=x3.shape), (p1s,), "pyseg::max_unpool2d"),
        ("max_unpool3d", lambda p: F.max_unpool3d(p, i3, 2, output_size=x5.shape[-3:]), (p3,),
         "pyseg::max_unpool3d"),
        ("max_unpool3d unbatched", lambda p: F.max_unpool3d(
            p[1], i3[1], 2, output_size=x5.shape[-3:]), (p3,),
         "pyseg::max_unpool3d"),
        ("nn.MaxUnpool3d stride padding", lambda p: torch.nn.MaxUnpool3d(3, 2, 1)(
            p, i3s, output_size=x5.shape), (p3s,), "pyseg::max_unpool3d"),
        ("grid_sample", lambda x, g: F.grid_sample(x, g, align_corners=False), (x4, grid2), gs),
        ("grid_sample nearest border", lambda x, g: F.grid_sample(
            x, g, mode="nearest", padding_mode="border", align_corners=True), (x4, grid2), gs),
        ("grid_sample bicubic reflection", lambda x, g: F.grid_sample(
            x, g, mode="bicubic", padding_mode="reflection", align_corners=False),
         (x4, grid2), gs),
        ("grid_sample bicubic align_corners", lambda x, g: F.grid_sample(
            x, g, mode="bicubic", align_corners=True), (x4, grid2), gs),
        ("grid_sample channels_last", lambda x, g: F.grid_sample(
            x, g, padding_mode="reflection", align_corners=True), (x4_cl, grid2), gs),
        ("grid_sample 5-D", lambda x, g: F.grid_sample(x, g, align_corners=False),
         (x5, grid3), gs),
        ("grid_sample 5-D nearest reflection", lambda x, g: F.grid_sample(
            x, g, mode="nearest", padding_mode="reflection", align_corners=False),
         (x5, grid3), gs),
        ("grid_sample 5-D border align_corners", lambda x, g: F.grid_sample(
            x, g, padding_mode="border", align_corners=True), (x5, grid3), gs),
    ]


ROUTED = _routed_cases() + _interpolate_nd_cases() + _nd_cases()
# Where torch returns a contiguous tensor and pyseg keeps the input's layout (same values).
KEEPS_LAYOUT = {"grid_sample channels_last": torch.channels_last,
                "conv_transpose3d channels_last_3d": torch.channels_last_3d}


def _with_grad(inputs: tuple) -> tuple:
    return tuple(t.detach().clone().requires_grad_(True) for t in inputs)


@pytest.mark.parametrize("name,fn,inputs,kernel", ROUTED, ids=[c[0] for c in ROUTED])
def test_routed_calls_match_torch(name, fn, inputs, kernel):
    ref_in, our_in = _with_grad(inputs), _with_grad(inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # F.upsample_* are deprecated
        ref = fn(*ref_in)
        with OpCount() as count, pyseg.kernels() as mode:
            ours = fn(*our_in)
            grad = _rand(*ref.shape, seed=9).contiguous(memory_format=torch.contiguous_format)
            our_grads = torch.autograd.grad(ours, our_in, grad)
    ref_grads = torch.autograd.grad(ref, ref_in, grad)
    tensors_close(ours, ref, RTOL64)
    if name in KEEPS_LAYOUT:  # pyseg's documented choice: the input's layout
        assert ours.is_contiguous(memory_format=KEEPS_LAYOUT[name])
    else:
        for layout in (torch.channels_last, torch.channels_last_3d):
            assert ours.is_contiguous(memory_format=layout) == \
                ref.is_contiguous(memory_format=layout)
    for a, b in zip(our_grads, ref_grads):
        tensors_close(a, b, RTOL64)
    assert count.counts[kernel] == 1, count.counts
    assert count.counts[kernel.replace("::", "::_") + "_backward"] + \
        count.counts[kernel + "_backward"] == 1, count.counts
    assert not _torch_kernels(count), _torch_kernels(count)
    assert sum(mode.stats.to_pyseg.values()) == 1 and not mode.stats.to_torch


def _torch_kernels(count: OpCount) -> dict[str, int]:
    """The calls of torch's kernels for the ops pyseg stands in for."""
    names = ("aten::upsample_", "aten::_upsample_", "aten::convolution", "aten::max_unpool",
             "aten::grid_sampler", "aten::_adaptive_avg_pool", "aten::adaptive_avg_pool",
             "aten::slow_conv_transpose", "torchvision::")
    return {k: v for k, v in count.counts.items() if k.startswith(names)}


def test_float32_matches_torch_to_round_off():
    x = _rand(2, 3, 16, 16, dtype=torch.float32)
    w = _rand(3, 5, 4, 4, dtype=torch.float32, seed=1)
    grid = _rand(2, 5, 5, 2, dtype=torch.float32, seed=2).tanh()
    for fn in (lambda x: F.interpolate(x, scale_factor=2.5, mode="bicubic"),
               lambda x: F.interpolate(x, scale_factor=0.4, mode="bicubic", antialias=True),
               lambda x: F.interpolate(x[:, None], scale_factor=2, mode="trilinear"),
               lambda x: F.grid_sample(x, grid, mode="bicubic", align_corners=False),
               lambda x: F.conv_transpose2d(x, w, stride=2, padding=1),
               lambda x: F.conv_transpose3d(x[:, None], w[:1, :, None], stride=2)):
        with pyseg.kernels():
            ours = fn(x)
        # float32 rounding of sums of at most 3 * 4 * 4 products of values of order 1
        tensors_close(ours, fn(x), 1e-5)


# Calls pyseg does not take: torch computes them, bit for bit, and the reason is counted.
FALLBACKS = [
    ("lanczos", lambda: F.interpolate(_rand(1, 2, 8, 8), size=3, mode="lanczos",
                                      antialias=True), "mode='lanczos' on 4-D input"),
    ("uint8 nearest", lambda: F.interpolate(torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4),
                                            scale_factor=2), "dtype uint8"),
    ("uint8 nearest 5-D", lambda: F.interpolate(
        torch.arange(8, dtype=torch.uint8).view(1, 1, 2, 2, 2), scale_factor=2), "dtype uint8"),
    ("meta conv_transpose2d", lambda: F.conv_transpose2d(
        torch.empty(1, 2, 3, 3, device="meta"), torch.empty(2, 2, 3, 3, device="meta")),
     "no pyseg kernel on meta"),
    ("meta conv_transpose1d", lambda: F.conv_transpose1d(
        torch.empty(1, 2, 3, device="meta"), torch.empty(2, 2, 3, device="meta")),
     "no pyseg kernel on meta"),
    ("meta conv_transpose3d", lambda: F.conv_transpose3d(
        torch.empty(1, 2, 3, 3, 3, device="meta"), torch.empty(2, 2, 3, 3, 3, device="meta")),
     "no pyseg kernel on meta"),
    ("meta max_unpool3d", lambda: F.max_unpool3d(
        torch.empty(1, 2, 2, 2, 2, device="meta"),
        torch.zeros(1, 2, 2, 2, 2, dtype=torch.int64, device="meta"), 2),
     "no pyseg kernel on meta"),
    ("meta grid_sample", lambda: F.grid_sample(
        torch.empty(1, 2, 3, 3, device="meta"), torch.empty(1, 2, 2, 2, device="meta"),
        align_corners=False), "no pyseg kernel on meta"),
]


@pytest.mark.parametrize("name,fn,reason", FALLBACKS, ids=[c[0] for c in FALLBACKS])
def test_unsupported_calls_run_torch(name, fn, reason):
    ref = fn()
    with OpCount() as count, pyseg.kernels() as mode:
        ours = fn()
    if ref.device.type != "meta":
        assert torch.equal(ours, ref)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    assert not count.pyseg()
    assert not mode.stats.to_pyseg
    ((_op, why), n), = mode.stats.to_torch.items()
    assert n == 1 and reason in why, why


def test_affine_grid_and_others_pass_through():
    """affine_grid stays torch's (pyseg's is the same composite of torch ops), uncounted."""
    x, theta = _rand(1, 2, 4, 4), _rand(1, 2, 3)
    with OpCount() as count, pyseg.kernels() as mode:
        grid = F.affine_grid(theta, [1, 2, 4, 4], align_corners=False)
        conv = F.conv2d(x, _rand(3, 2, 3, 3))
    assert torch.equal(grid, F.affine_grid(theta, [1, 2, 4, 4], align_corners=False))
    assert torch.equal(conv, F.conv2d(x, _rand(3, 2, 3, 3)))
    assert not count.pyseg() and not mode.stats.to_pyseg and not mode.stats.to_torch


def test_grid_sample_align_corners_none_warns_as_torch():
    x, grid = _rand(1, 2, 4, 4), _rand(1, 3, 3, 2).tanh()
    with pytest.warns(UserWarning, match="align_corners=False since 1.3.0") as ref_warnings:
        ref = F.grid_sample(x, grid)
    with pyseg.kernels() as mode, pytest.warns(UserWarning) as our_warnings:
        ours = F.grid_sample(x, grid)
    assert [str(w.message) for w in our_warnings] == [str(w.message) for w in ref_warnings]
    tensors_close(ours, ref, RTOL64)
    assert mode.stats.to_pyseg == {"grid_sample": 1}


# Bad calls: pyseg (routed) or torch (left to it) raises torch's exception and message.
BAD_CALLS = [
    (ValueError, lambda: F.interpolate(_rand(1, 1, 4, 4), size=2, scale_factor=2)),
    (ValueError, lambda: F.interpolate(_rand(1, 1, 4, 4), scale_factor=2, align_corners=True)),
    (ValueError, lambda: F.interpolate(_rand(1, 1, 4, 4))),
    (ValueError, lambda: F.interpolate(_rand(1, 1, 4, 4, 4), size=2, mode="trilinear",
                                       antialias=True)),
    (NotImplementedError, lambda: F.interpolate(_rand(1, 1, 4), size=2, mode="bilinear")),
    (NotImplementedError, lambda: F.interpolate(_rand(1, 1, 4, 4), size=2, mode="trilinear")),
    (ValueError, lambda: F.interpolate(_rand(1, 1, 4, 4, 4), size=(2, 2), mode="trilinear")),
    (ValueError, lambda: F.grid_sample(_rand(1, 1, 4, 4), _rand(1, 2, 2, 2), mode="linear",
                                       align_corners=False)),
    (ValueError, lambda: F.grid_sample(_rand(1, 1, 4, 4), _rand(1, 2, 2, 2),
                                       padding_mode="wrap", align_corners=False)),
    (RuntimeError, lambda: F.grid_sample(_rand(1, 1, 2, 4, 4), _rand(1, 1, 2, 2, 3),
                                         mode="bicubic", align_corners=False)),
    (RuntimeError, lambda: F.grid_sample(_rand(1, 1, 4, 4), _rand(1, 1, 2, 2, 3),
                                         align_corners=False)),
    (RuntimeError, lambda: F.conv_transpose3d(_rand(1, 2, 3, 3), _rand(2, 2, 3, 3, 3))),
    (RuntimeError, lambda: F.max_unpool3d(_rand(1, 1, 2, 2, 2),
                                          torch.full((1, 1, 2, 2, 2), 99), 2)),
]


@pytest.mark.parametrize("error,call", BAD_CALLS, ids=[str(i) for i in range(len(BAD_CALLS))])
def test_errors_are_torchs(error, call):
    with pytest.raises(error) as ref:
        call()
    with pyseg.kernels(), pytest.raises(error) as ours:
        call()
    # pyseg may add detail (e.g. where an invalid index is) after torch's message
    assert str(ours.value).startswith(str(ref.value).split("\n")[0]), (ours.value, ref.value)


def test_ops_selects_what_is_routed():
    x = _rand(1, 2, 4, 4)
    w = _rand(2, 2, 3, 3)
    with OpCount() as count, pyseg.kernels(ops=["conv_transpose2d"]) as mode:
        F.interpolate(F.conv_transpose2d(x, w), scale_factor=2, mode="bilinear")
    assert count.pyseg() == {"pyseg::conv_transpose2d": 1}
    assert count.upsampling() == 1
    assert dict(mode.stats.to_pyseg) == {"conv_transpose2d": 1}
    with pytest.raises(ValueError, match="ops: unknown op 'upsample'"):
        pyseg.kernels(ops=["upsample"])
    assert pyseg.kernels("interpolate").ops == ("interpolate",)


def test_why_not():
    assert routing.why_not("interpolate", _rand(1, 1, 4), scale_factor=2, mode="linear") is None
    assert routing.why_not("interpolate", _rand(1, 1, 4, 4), size=2, mode="lanczos",
                           antialias=True) == \
        "mode='lanczos' on 4-D input (pyseg: nearest, nearest-exact, bilinear, bicubic, area)"
    assert routing.why_not("interpolate", _rand(1, 1, 4, 4, 4), size=2, mode="trilinear",
                           antialias=True) == "antialias=True with mode='trilinear' on 5-D input"
    assert routing.why_not("interpolate", _rand(1, 1), size=2) == \
        "2-D input (pyseg: 3-D, 4-D or 5-D)"
    assert routing.why_not("conv_transpose2d", _rand(1, 1, 4, 4).float(), _rand(1, 1, 2, 2)) \
        == "mixed dtypes"
    assert routing.why_not("conv_transpose3d", _rand(1, 4, 4), _rand(1, 1, 2, 2, 2)) == \
        "3-D input, 5-D weight (pyseg: 4-D or 5-D, 5-D)"
    assert routing.why_not("max_unpool1d", _rand(1, 1, 4), torch.zeros(1, 1, 4), 2) == \
        "indices not int64 on the input's device"
    assert routing.why_not("grid_sample", _rand(1, 1, 4, 4, 4), _rand(1, 1, 2, 2, 3),
                           mode="bicubic") == "mode='bicubic' on 5-D input"
    assert routing.why_not("grid_sample", _rand(1, 1, 4, 4), _rand(1, 1, 2, 2).float()) == \
        "mixed dtypes or devices"
    with pytest.raises(ValueError, match="unknown op 'affine_grid'"):
        routing.why_not("affine_grid", _rand(1, 2, 3), [1, 1, 2, 2])


def test_stats_text():
    with pyseg.kernels() as mode:
        F.interpolate(_rand(1, 1, 4, 4), scale_factor=2)
        F.interpolate(torch.ones(1, 1, 4, dtype=torch.uint8), scale_factor=2)
    assert str(mode.stats).splitlines() == [
        "interpolate: 1 call(s) to pyseg",
        "interpolate: 1 call(s) to torch (dtype uint8)"]
    mode.stats.clear()
    assert str(mode.stats) == "no call of a routable op"


class _Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = torch.nn.ConvTranspose2d(3, 4, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.up(x).relu()
        return F.interpolate(y, size=(20, 20), mode="bilinear", align_corners=False).sum(1)


@pytest.mark.parametrize("mode_inside", [False, True], ids=["mode outside", "mode inside"])
def test_torch_compile(mode_inside):
    """The mode is traced by dynamo: the graph holds pyseg's ops (and no aten upsampling),
    and the compiled function gives torch's values and gradients."""
    torch.manual_seed(0)
    model = _Tiny()
    graphs: list[torch.fx.GraphModule] = []

    def backend(gm: torch.fx.GraphModule, example_inputs: list) -> object:
        graphs.append(gm)
        return gm.forward  # run the captured graph eagerly: no compiler time in the suite

    def step(x: torch.Tensor) -> torch.Tensor:
        if mode_inside:
            with pyseg.kernels():
                return model(x)
        return model(x)

    compiled = torch.compile(step, backend=backend, fullgraph=True)
    x = _rand(2, 3, 6, 6, dtype=torch.float32).requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    torch._dynamo.reset()
    if mode_inside:
        out = compiled(x)
    else:
        with pyseg.kernels():
            out = compiled(x)
    ref = model(x_ref)
    tensors_close(out, ref, 1e-5)
    with OpCount() as count:
        out.sum().backward()
    ref.sum().backward()
    tensors_close(x.grad, x_ref.grad, 1e-5)
    targets = [str(n.target) for g in graphs for n in g.graph.nodes if n.op == "call_function"]
    assert {"pyseg.upsample2d", "pyseg.conv_transpose2d"} <= set(targets), targets
    assert not any("interpolate" in t or "upsample_bilinear" in t
                   or ("conv_transpose2d" in t and not t.startswith("pyseg.")) for t in targets)
    assert count.counts["pyseg::upsample2d_backward"] == 1
    assert count.counts["pyseg::conv_transpose2d_backward"] == 1


def test_torch_compile_nd_ops():
    """The new routes trace too: grid_sample, trilinear / antialiased interpolation and
    conv_transpose1d become pyseg's ops in the captured graph, with torch's values."""
    w = _rand(2, 3, 4, dtype=torch.float32, seed=1)

    def fn(x5: torch.Tensor, x4: torch.Tensor, grid: torch.Tensor, x3: torch.Tensor):
        return (F.interpolate(x5, scale_factor=2, mode="trilinear"),
                F.interpolate(x4, size=(3, 5), mode="bicubic", antialias=True),
                F.grid_sample(x4, grid, align_corners=False),
                F.conv_transpose1d(x3, w, stride=2))

    graphs: list[torch.fx.GraphModule] = []

    def backend(gm: torch.fx.GraphModule, example_inputs: list) -> object:
        graphs.append(gm)
        return gm.forward

    inputs = (_rand(1, 2, 3, 4, 5, dtype=torch.float32), _rand(1, 2, 7, 9, dtype=torch.float32),
              _rand(1, 4, 4, 2, dtype=torch.float32, seed=2).tanh(),
              _rand(1, 2, 6, dtype=torch.float32, seed=3))
    torch._dynamo.reset()
    with pyseg.kernels():
        ours = torch.compile(fn, backend=backend, fullgraph=True)(*inputs)
    for a, b in zip(ours, fn(*inputs)):
        tensors_close(a, b, 1e-5)
    targets = {str(n.target) for g in graphs for n in g.graph.nodes if n.op == "call_function"}
    assert {"pyseg.upsample", "pyseg.grid_sample", "pyseg.conv_transpose2d"} <= targets, targets
