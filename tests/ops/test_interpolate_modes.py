"""pyseg.ops.interpolate in every mode of torch.nn.functional.interpolate, on 3-D, 4-D and
5-D inputs (nearest, nearest-exact, linear, bilinear, bicubic, trilinear, area, antialias),
against torch itself, float64 gradients and torch.library.opcheck.

The 4-D nearest / bilinear / bicubic cases without antialias are tested in test_upsample.py
(they run the upsample2d operator); here they also run through the N-d operator directly.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import pyseg
from pyseg.ops import interpolate

# Modes per spatial rank that reach the N-d operator from interpolate ("bilinear-aa" and
# "bicubic-aa" are antialias=True).
MODES = {
    1: ["nearest", "nearest-exact", "linear", "area"],
    2: ["nearest-exact", "area", "bilinear-aa", "bicubic-aa"],
    3: ["nearest", "nearest-exact", "trilinear", "area"],
}
SPATIAL = {1: (7,), 2: (6, 7), 3: (4, 5, 6)}

# kwargs per rank: upsampling, downsampling, non-integer and per-axis scales, recompute,
# explicit sizes (up, down, 1, equal to the input).
def _cases(rank):
    per_axis = {1: (1.7,), 2: (2.5, 0.45), 3: (1.5, 0.6, 2.0)}[rank]
    down = {1: (3,), 2: (3, 2), 3: (2, 3, 2)}[rank]
    up = {1: (11,), 2: (9, 13), 3: (5, 7, 9)}[rank]
    return [
        dict(scale_factor=2),
        dict(scale_factor=0.6),
        dict(scale_factor=1.7),
        dict(scale_factor=0.3),
        dict(scale_factor=per_axis),
        dict(scale_factor=1.7, recompute_scale_factor=True),
        dict(scale_factor=1.1),  # out == in on the short axes with a scale != 1
        dict(size=down),
        dict(size=up),
        dict(size=(1,) * rank),
        dict(size=SPATIAL[rank]),
    ]


CASES = [(rank, mode, kw) for rank in (1, 2, 3) for mode in MODES[rank] for kw in _cases(rank)]


def _ids(case):
    rank, mode, kw = case
    return f"{rank + 2}d-{mode}-" + ",".join(f"{k}={v}" for k, v in kw.items())


def _split(mode):
    return (mode[:-3], True) if mode.endswith("-aa") else (mode, False)


def _align_options(mode):
    return [None] if mode in ("nearest", "nearest-exact", "area") else [False, True]


def _input(shape, dtype=torch.float64, memory_format=None, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype).to(device)
    if memory_format is not None:
        x = x.contiguous(memory_format=memory_format)
    return x


def _formats(rank):
    return [None, {2: torch.channels_last, 3: torch.channels_last_3d}.get(rank)] if rank > 1 else [None]


def _tol(dtype):
    return dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_forward_matches_torch(sweep_backend, case):
    rank, mode, kw = case
    mode, aa = _split(mode)
    for ac in _align_options(mode):
        for fmt in _formats(rank):
            for dtype in (torch.float64, torch.float32):
                x = _input((2, 3, *SPATIAL[rank]), dtype, fmt, sweep_backend.device)
                try:
                    ref = F.interpolate(x, mode=mode, align_corners=ac, antialias=aa, **kw)
                except RuntimeError as e:  # e.g. an output size of 0: pyseg must raise alike
                    with pytest.raises(RuntimeError, match=str(e).split(",")[0][:40]):
                        interpolate(x, mode=mode, align_corners=ac, antialias=aa, **kw)
                    continue
                out = interpolate(x, mode=mode, align_corners=ac, antialias=aa, **kw)
                assert out.shape == ref.shape and out.dtype == dtype
                if mode in ("nearest", "nearest-exact"):
                    assert torch.equal(out, ref)  # any index differing from ATen's shows
                else:
                    torch.testing.assert_close(out, ref, **_tol(dtype))
                if ref.numel() > 2 * 3:  # layouts only differ when there are pixels
                    assert out.stride() == ref.stride()


def _torch_backward_is_not_its_adjoint(rank, mode, aa, kw, in_size, out_size):
    # When an axis keeps its size under a scale_factor != 1, torch's forward and backward
    # disagree: upsample_nearest1d / 3d sample with 1 / scale_factor forward but copy
    # backward; the antialiased kernels copy forward but resample backward. pyseg returns
    # the gradient of torch's forward, which the adjoint identity checks.
    if "scale_factor" not in kw or kw.get("recompute_scale_factor"):
        return False
    same = any(i == o for i, o in zip(in_size, out_size, strict=True))
    return same and (aa or (mode == "nearest" and rank != 2))


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_backward_matches_torch(sweep_backend, case):
    rank, mode, kw = case
    mode, aa = _split(mode)
    for ac in _align_options(mode):
        for fmt in _formats(rank):
            x = _input((2, 3, *SPATIAL[rank]), torch.float64, fmt, sweep_backend.device)
            x.requires_grad_(True)
            try:
                ref = F.interpolate(x, mode=mode, align_corners=ac, antialias=aa, **kw)
            except RuntimeError:
                continue  # covered by the forward test
            out = interpolate(x, mode=mode, align_corners=ac, antialias=aa, **kw)
            g = _input(ref.shape, torch.float64, None, sweep_backend.device, seed=1)
            (gr,) = torch.autograd.grad(ref, x, g)
            (go,) = torch.autograd.grad(out, x, g)
            # Linear in x: the gradient is the adjoint of torch's forward, <F(x), g> == <x, grad>.
            torch.testing.assert_close((ref * g).sum(), (x * go).sum(), rtol=1e-12, atol=1e-12)
            if _torch_backward_is_not_its_adjoint(rank, mode, aa, kw, x.shape[2:], ref.shape[2:]):
                continue
            torch.testing.assert_close(go, gr, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_gradcheck(sweep_backend, rank):
    shape = {1: (1, 2, 5), 2: (1, 2, 4, 5), 3: (1, 1, 3, 4, 3)}[rank]
    sizes = {1: (7,), 2: (3, 7), 3: (2, 5, 4)}[rank]
    for m in MODES[rank] + (["bilinear", "bicubic"] if rank == 2 else []):
        mode, aa = _split(m)
        for ac in _align_options(mode):
            x = _input(shape, device=sweep_backend.device).requires_grad_(True)

            def f(t):
                return interpolate(t, size=sizes, mode=mode, align_corners=ac, antialias=aa)

            assert torch.autograd.gradcheck(f, (x,))
            if not sweep_backend.emulated:
                assert torch.autograd.gradgradcheck(f, (x,))


def test_nd_operator_matches_upsample2d(backend):
    # The N-d operator on 4-D input in the modes interpolate sends to upsample2d.
    up = pyseg.ops._library.op("upsample")
    up2 = pyseg.ops._library.op("upsample2d")
    for fmt in (None, torch.channels_last):
        x = _input((2, 3, 5, 7), torch.float32, fmt, backend.device)
        for mode in ("nearest", "bilinear", "bicubic"):
            for size, scales, ac in (([9, 13], [1.9, 1.9], False), ([3, 4], None, True)):
                ac = False if mode == "nearest" else ac
                a = up(x, size, mode, ac, False, scales)
                b = up2(x, size, mode, ac, *(scales or [None, None]))
                assert torch.equal(a, b)
                assert a.stride() == b.stride()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision(backend, dtype):
    tol = 1e-2 if dtype == torch.float16 else 4e-2
    for rank in (1, 2, 3):
        for m in MODES[rank]:
            mode, aa = _split(m)
            x = _input((2, 3, *SPATIAL[rank]), torch.float32, None, backend.device).to(dtype)
            ac = None if mode in ("nearest", "nearest-exact", "area") else False
            kw = dict(scale_factor=0.6 if aa or mode == "area" else 1.7, mode=mode,
                      align_corners=ac, antialias=aa)
            xg = x.detach().requires_grad_(True)
            out = interpolate(xg, **kw)
            xr = x.float().requires_grad_(True)
            ref = F.interpolate(xr, **kw)
            assert out.dtype == dtype
            torch.testing.assert_close(out.float(), ref, rtol=tol, atol=tol)
            (g,) = torch.autograd.grad(out.sum(), xg)
            (gr,) = torch.autograd.grad(ref.sum(), xr)
            assert g.dtype == dtype
            torch.testing.assert_close(g.float(), gr, rtol=tol, atol=tol)


def test_non_contiguous(backend):
    base = _input((3, 2, 9, 8, 7), device=backend.device)
    inputs = {
        1: [base[:, :, 0, 0, ::2], base[:, :, 0].transpose(1, 2)[:, :, 1]],
        2: [base[:, :, 0, ::2, 1:], base[:, :, 1].transpose(2, 3)],
        3: [base[:, :, ::2, :, 1:], base.transpose(2, 4), base[1:2]],
    }
    for rank, xs in inputs.items():
        for x in xs:
            for m in MODES[rank]:
                mode, aa = _split(m)
                ac = None if mode in ("nearest", "nearest-exact", "area") else False
                kw = dict(scale_factor=1.5, mode=mode, align_corners=ac, antialias=aa)
                torch.testing.assert_close(interpolate(x, **kw), F.interpolate(x, **kw),
                                           rtol=1e-12, atol=1e-12)


def test_backward_deterministic(backend):
    for rank in (1, 2, 3):
        for m in MODES[rank]:
            mode, aa = _split(m)
            x = _input((2, 3, *SPATIAL[rank]), torch.float32, None, backend.device)
            x.requires_grad_(True)
            y = interpolate(x, scale_factor=0.7, mode=mode, antialias=aa)
            g = _input(y.shape, torch.float32, None, backend.device, seed=2)
            (a,) = torch.autograd.grad(y, x, g, retain_graph=True)
            (b,) = torch.autograd.grad(y, x, g)
            assert torch.equal(a, b)


def test_empty(backend):
    dev = backend.device
    for rank in (1, 2, 3):
        for m in MODES[rank]:
            mode, aa = _split(m)
            x = torch.zeros(0, 3, *SPATIAL[rank], device=dev, dtype=torch.float64,
                            requires_grad=True)
            y = interpolate(x, scale_factor=2, mode=mode, antialias=aa)
            assert y.shape == F.interpolate(x, scale_factor=2, mode=mode, antialias=aa).shape
            (g,) = torch.autograd.grad(y.sum(), x)
            assert g.shape == x.shape
    # area accepts an output size of 0 and no channels (adaptive_avg_pool*d); its gradient
    # is then zero.
    for shape, size in (((1, 3, 4), (0,)), ((1, 3, 4, 4), (0, 2)), ((1, 3, 2, 4, 4), (1, 0, 2)),
                        ((1, 0, 4, 4), (2, 2))):
        x = torch.randn(shape, dtype=torch.float64, device=dev, requires_grad=True)
        y = interpolate(x, size=size, mode="area")
        assert y.shape == F.interpolate(x, size=size, mode="area").shape
        (g,) = torch.autograd.grad(y.sum(), x)
        assert torch.equal(g, torch.zeros_like(x))


def _both_raise(exc, *args, **kwargs):
    with pytest.raises(exc) as torch_error:
        F.interpolate(*args, **kwargs)
    with pytest.raises(exc) as ours:
        interpolate(*args, **kwargs)
    assert str(ours.value) == str(torch_error.value)


def test_bad_arguments_raise_like_torch():
    x3, x4, x5 = torch.randn(1, 2, 4), torch.randn(1, 2, 4, 4), torch.randn(1, 2, 3, 4, 4)
    for mode in ("nearest-exact", "area"):
        _both_raise(ValueError, x4, scale_factor=2, mode=mode, align_corners=True)
    _both_raise(ValueError, x5, scale_factor=2, mode="trilinear", antialias=True)
    _both_raise(ValueError, x3, scale_factor=2, mode="linear", antialias=True)
    _both_raise(ValueError, x4, scale_factor=2, mode="area", antialias=True)
    _both_raise(NotImplementedError, x3, scale_factor=2, mode="trilinear")
    _both_raise(NotImplementedError, x5, scale_factor=2, mode="linear")
    _both_raise(NotImplementedError, x5, scale_factor=2, mode="bilinear")
    _both_raise(NotImplementedError, x5, scale_factor=2, mode="bicubic")
    _both_raise(NotImplementedError, x3, scale_factor=2, mode="bicubic")
    _both_raise(NotImplementedError, torch.randn(1, 2, 3, 4, 4, 4), scale_factor=2)
    _both_raise(ValueError, x4, scale_factor=2, mode="lanczos")
    # torch has an antialiased lanczos mode; pyseg does not implement it and says so.
    with pytest.raises(NotImplementedError, match="mode='lanczos'"):
        interpolate(x4, scale_factor=2, mode="lanczos", antialias=True)
    _both_raise(ValueError, x5, size=(4, 4))
    _both_raise(ValueError, x3, scale_factor=(2.0, 2.0))
    _both_raise(RuntimeError, x3, scale_factor=0.1, mode="linear")
    _both_raise(RuntimeError, x3, size=0, mode="nearest-exact")
    _both_raise(RuntimeError, x5, size=(0, 2, 2), mode="trilinear")
    _both_raise(RuntimeError, x4, size=(0, 2), mode="bilinear", antialias=True)
    _both_raise(RuntimeError, torch.randn(1, 0, 4), size=2, mode="linear")
    _both_raise(RuntimeError, torch.randn(1, 0, 3, 4, 4), size=2, mode="nearest")
    for shape in ((1, 2, 0), (1, 2, 0, 4), (1, 2, 3, 0, 4)):
        _both_raise(RuntimeError, torch.randn(shape), size=(2,) * (len(shape) - 2), mode="area")


def test_kernel_checks_name_arguments(backend):
    up = pyseg.ops._library.op("upsample")
    x = torch.randn(1, 2, 4, 4, device=backend.device)
    with pytest.raises(RuntimeError, match="mode must be one of"):
        up(x, [8, 8], "cubic", False, False, None)
    with pytest.raises(RuntimeError, match="antialias=True needs mode"):
        up(x, [8, 8], "area", False, True, None)
    with pytest.raises(RuntimeError, match="antialias=True needs a 4-D"):
        up(x[0], [8], "bilinear", False, True, None)
    with pytest.raises(RuntimeError, match="output_size must have 2"):
        up(x, [8], "nearest", False, False, None)
    with pytest.raises(RuntimeError, match="scales must have 2"):
        up(x, [8, 8], "nearest", False, False, [2.0])
    with pytest.raises(RuntimeError, match="input must be a 3-D, 4-D or 5-D"):
        up(x[0, 0], [8, 8], "nearest", False, False, None)
    with pytest.raises(RuntimeError, match="floating point"):
        up(x.long(), [8, 8], "bilinear", False, False, None)
    back = pyseg.ops._library.op("upsample_backward")
    with pytest.raises(RuntimeError, match="input_size"):
        back(x, [1, 3, 2, 2], "bilinear", False, False, None)
    with pytest.raises(RuntimeError, match="input_size must have 4"):
        back(x, [1, 2, 2], "bilinear", False, False, None)


_OPCHECK_ARGS = [
    ((2, 3, 5), [9], "linear", True, False, None),
    ((2, 3, 5), [3], "nearest-exact", False, False, [0.7]),
    ((2, 3, 5), [2], "area", False, False, None),
    ((2, 3, 5, 4), [3, 9], "bilinear", False, True, [0.7, 2.4]),
    ((2, 3, 5, 4), [2, 3], "bicubic", True, True, None),
    ((2, 3, 5, 4), [3, 2], "area", False, False, None),
    ((1, 2, 3, 5, 4), [5, 3, 7], "trilinear", False, False, [1.9, 0.7, 1.8]),
    ((1, 2, 3, 5, 4), [2, 7, 3], "nearest", False, False, None),
]


@pytest.mark.parametrize("args", _OPCHECK_ARGS, ids=lambda a: f"{len(a[0])}d-{a[2]}-aa{a[4]}")
@pytest.mark.parametrize("ns", ["pyseg", pytest.param("pyseg_emu", marks=pytest.mark.emu)])
def test_opcheck(ns, args):
    if ns not in pyseg.ops._library.NAMESPACES:
        pytest.skip("pyseg._emu is not built")
    ops = getattr(torch.ops, ns)
    shape, *rest = args
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(ops.upsample, (x, *rest))
    if len(shape) > 3:
        fmt = torch.channels_last if len(shape) == 4 else torch.channels_last_3d
        torch.library.opcheck(ops.upsample, (x.detach().contiguous(memory_format=fmt), *rest))
    g = torch.randn(*shape[:2], *rest[0], dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(ops.upsample_backward, (g, list(shape), *rest[1:]))


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_torch_compile_fullgraph(rank):
    torch._dynamo.reset()
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[rank]

    def f(x):
        a = interpolate(x, scale_factor=2, mode=mode, antialias=rank == 2)
        b = interpolate(x, scale_factor=0.5, mode="area")
        return a.sum() + b.sum() * 2 + interpolate(x, scale_factor=1.5, mode="nearest-exact").sum()

    x = torch.randn(2, 3, *SPATIAL[rank], requires_grad=True)
    compiled = torch.compile(f, fullgraph=True)
    out = compiled(x)
    torch.testing.assert_close(out, f(x))
    (g,) = torch.autograd.grad(out, x)
    (gr,) = torch.autograd.grad(f(x), x)
    torch.testing.assert_close(g, gr)


def test_upsample_module_every_mode():
    for rank in (1, 2, 3):
        x = torch.randn(2, 3, *SPATIAL[rank])
        modes = {1: "linear", 2: "bicubic", 3: "trilinear"}
        for kwargs in (dict(scale_factor=2, mode="nearest-exact"), dict(size=(3,) * rank, mode="area"),
                       dict(scale_factor=1.5, mode=modes[rank], align_corners=True)):
            ours, ref = pyseg.nn.Upsample(**kwargs), torch.nn.Upsample(**kwargs)
            assert repr(ours) == repr(ref)
            torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


def test_autocast_follows_torch():
    # torch: CUDA runs every upsample_* in float32 and leaves adaptive_avg_pool alone; CPU
    # autocast touches only adaptive_avg_pool3d (float32). pyseg_emu gets the CUDA rules.
    cases = [((1, 2, 4, 4, 4), dict(size=2, mode="area")), ((1, 2, 4), dict(size=2, mode="area")),
             ((1, 2, 4, 4, 4), dict(size=3, mode="trilinear")), ((1, 2, 5), dict(size=3, mode="linear"))]
    for shape, kw in cases:
        for dtype in (torch.float32, torch.bfloat16):
            x = torch.randn(shape).to(dtype)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                assert interpolate(x, **kw).dtype == F.interpolate(x, **kw).dtype
    if "pyseg_emu" in pyseg.ops._library.NAMESPACES:
        x = torch.randn(1, 2, 4, 4, 4, dtype=torch.float16)
        with pyseg.ops.emulated(), torch.autocast("cpu", dtype=torch.float16):
            assert interpolate(x, size=2, mode="trilinear").dtype == torch.float32
            assert interpolate(x, size=2, mode="area").dtype == torch.float16


# ---- CPU capability variants (upsample_cpu_kernel.cpp) ----------------------------------

# Channel counts below, at and past a vector width, in both layouts; an integer scale (the
# periodic NCHW form, the paired channels_last rows), a non-integer one, a downsampling and
# antialias, 3-D to 5-D.
VARIANT_CASES = [
    ((2, 3, 9, 11), "bilinear", dict(scale_factor=2)),
    ((1, 19, 6, 5), "bicubic", dict(scale_factor=1.7)),
    ((2, 33, 8, 8), "bilinear", dict(size=(3, 5))),
    ((1, 17, 13, 12), "bicubic", dict(scale_factor=0.3, antialias=True)),
    ((2, 5, 7, 6), "nearest", dict(scale_factor=4)),
    ((1, 18, 9), "linear", dict(scale_factor=2.5)),
    ((1, 9, 3, 4, 5), "trilinear", dict(scale_factor=2)),
]


@pytest.mark.parametrize("shape,mode,kw", VARIANT_CASES)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_capability_variants_bitwise_equal_default(cpu_capability, shape, mode, kw,
                                                   channels_last, dtype):
    # Every variant computes the same roundings in the same order (no FMA contraction), so
    # outputs and gradients are bitwise the default variant's; and close to torch's.
    from tests.ops.conftest import using_capability

    g = torch.Generator().manual_seed(3)
    x = torch.randn(shape, generator=g).to(dtype)
    if channels_last and x.dim() > 3:
        fmt = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
        x = x.to(memory_format=fmt)

    def run():
        xi = x.detach().requires_grad_()
        out = interpolate(xi, mode=mode, **kw)
        go = torch.randn(out.shape, generator=torch.Generator().manual_seed(4)).to(dtype)
        (grad,) = torch.autograd.grad(out, xi, go)
        return out, grad, go

    out, grad, go = run()
    with using_capability("default"):
        base_out, base_grad, _ = run()
    assert torch.equal(out, base_out) and torch.equal(grad, base_grad), cpu_capability
    xr = x.double().requires_grad_()
    ref = F.interpolate(xr, mode=mode, **kw)
    (ref_grad,) = torch.autograd.grad(ref, xr, go.double())
    tol = {torch.float32: 1e-5, torch.float64: 1e-12, torch.bfloat16: 3e-2}[dtype]
    torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=tol, atol=tol * 4)
