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


ROUTED = _routed_cases()


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
    assert ours.is_contiguous(memory_format=torch.channels_last) == \
        ref.is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(our_grads, ref_grads):
        tensors_close(a, b, RTOL64)
    assert count.counts[kernel] == 1, count.counts
    assert count.counts[kernel.replace("::", "::_") + "_backward"] + \
        count.counts[kernel + "_backward"] == 1, count.counts
    assert count.upsampling() == 0 and count.counts["aten::convolution"] == 0
    assert sum(mode.stats.to_pyseg.values()) == 1 and not mode.stats.to_torch


def test_float32_matches_torch_to_round_off():
    x = _rand(2, 3, 16, 16, dtype=torch.float32)
    w = _rand(3, 5, 4, 4, dtype=torch.float32, seed=1)
    for fn in (lambda x: F.interpolate(x, scale_factor=2.5, mode="bicubic"),
               lambda x: F.conv_transpose2d(x, w, stride=2, padding=1)):
        with pyseg.kernels():
            ours = fn(x)
        # float32 rounding of sums of at most 3 * 4 * 4 products of values of order 1
        tensors_close(ours, fn(x), 1e-5)


# Calls pyseg does not take: torch computes them, bit for bit, and the reason is counted.
FALLBACKS = [
    ("3-D linear", lambda: F.interpolate(_rand(1, 2, 5), scale_factor=2, mode="linear"),
     "3-D input"),
    ("3-D nearest", lambda: F.interpolate(_rand(1, 2, 5), scale_factor=2), "3-D input"),
    ("5-D trilinear", lambda: F.interpolate(_rand(1, 1, 3, 4, 5), scale_factor=2,
                                            mode="trilinear"), "5-D input"),
    ("area", lambda: F.interpolate(_rand(1, 2, 8, 8), size=3, mode="area"), "mode='area'"),
    ("nearest-exact", lambda: F.interpolate(_rand(1, 2, 5, 5), scale_factor=2,
                                            mode="nearest-exact"), "mode='nearest-exact'"),
    ("antialias", lambda: F.interpolate(_rand(1, 2, 8, 8), size=3, mode="bilinear",
                                        antialias=True), "antialias=True"),
    ("uint8 nearest", lambda: F.interpolate(torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4),
                                            scale_factor=2), "dtype uint8"),
    ("meta conv_transpose2d", lambda: F.conv_transpose2d(
        torch.empty(1, 2, 3, 3, device="meta"), torch.empty(2, 2, 3, 3, device="meta")),
     "no pyseg kernel on meta"),
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


def test_grid_sample_and_others_pass_through():
    x, grid = _rand(1, 2, 4, 4), _rand(1, 3, 3, 2).tanh()
    with OpCount() as count, pyseg.kernels() as mode:
        ours = F.grid_sample(x, grid, align_corners=False)
        conv = F.conv2d(x, _rand(3, 2, 3, 3))
    assert torch.equal(ours, F.grid_sample(x, grid, align_corners=False))
    assert torch.equal(conv, F.conv2d(x, _rand(3, 2, 3, 3)))
    assert not count.pyseg() and not mode.stats.to_pyseg and not mode.stats.to_torch


def test_errors_are_torchs():
    x = _rand(1, 1, 4, 4)
    for call in (lambda: F.interpolate(x, size=2, scale_factor=2),
                 lambda: F.interpolate(x, scale_factor=2, mode="nearest", align_corners=True),
                 lambda: F.interpolate(x)):
        with pytest.raises(ValueError) as ref:
            call()
        with pyseg.kernels(), pytest.raises(ValueError) as ours:
            call()
        assert str(ours.value) == str(ref.value)


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
    assert routing.why_not("interpolate", _rand(1, 1, 4), scale_factor=2) == \
        "3-D input (pyseg: 4-D only)"
    assert routing.why_not("interpolate", _rand(1, 1, 4, 4), scale_factor=2) is None
    assert routing.why_not("conv_transpose2d", _rand(1, 1, 4, 4).float(), _rand(1, 1, 2, 2)) \
        == "mixed dtypes"


def test_stats_text():
    with pyseg.kernels() as mode:
        F.interpolate(_rand(1, 1, 4, 4), scale_factor=2)
        F.interpolate(_rand(1, 1, 4), scale_factor=2)
    assert str(mode.stats).splitlines() == [
        "interpolate: 1 call(s) to pyseg",
        "interpolate: 1 call(s) to torch (3-D input (pyseg: 4-D only))"]
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
