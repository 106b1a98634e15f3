"""pyseg.ops.interpolate / pyseg.nn.Upsample against torch.nn.functional.interpolate."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import pyseg
from pyseg.ops import interpolate

MODES = ["nearest", "bilinear", "bicubic"]

# (input H, W, kwargs) -- upsampling, downsampling without antialias, non-integer and mixed
# scales, 1x1 inputs, output size 1, output size equal to the input size, recompute.
CASES = [
    ((5, 7), dict(scale_factor=2)),
    ((6, 9), dict(scale_factor=0.6)),
    ((5, 7), dict(scale_factor=1.7)),
    ((5, 7), dict(scale_factor=(2.5, 0.75))),
    ((5, 7), dict(scale_factor=1.7, recompute_scale_factor=True)),
    ((5, 7), dict(scale_factor=1.2)),  # output 6x8 in one axis, and 5*1.2=6
    ((4, 5), dict(scale_factor=1.1)),  # out == in on both axes with a scale != 1
    ((5, 7), dict(size=(11, 3))),
    ((5, 7), dict(size=(5, 7))),
    ((5, 7), dict(size=(1, 1))),
    ((5, 7), dict(size=(1, 9))),
    ((1, 1), dict(size=(4, 3))),
    ((1, 1), dict(scale_factor=3)),
    ((9, 12), dict(size=(4, 5))),
    # Integer scales wide enough for the CPU's periodic-tap fast path (interior columns).
    ((9, 13), dict(scale_factor=4)),
    ((6, 17), dict(scale_factor=(2, 4))),
    ((11, 16), dict(scale_factor=(4, 2))),
    ((17, 23), dict(scale_factor=3)),
]


def _align_options(mode):
    return [None] if mode == "nearest" else [False, True]


def _input(shape, dtype=torch.float32, channels_last=False, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _tol(dtype):
    return dict(float32=dict(rtol=1e-5, atol=1e-5), float64=dict(rtol=1e-12, atol=1e-12))[
        str(dtype).split(".")[-1]
    ]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}")
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_forward_matches_torch(backend, mode, case, channels_last):
    (h, w), kwargs = case
    for align_corners in _align_options(mode):
        for dtype in (torch.float32, torch.float64):
            x = _input((2, 3, h, w), dtype, channels_last, backend.device)
            ref = F.interpolate(x, mode=mode, align_corners=align_corners, **kwargs)
            out = interpolate(x, mode=mode, align_corners=align_corners, **kwargs)
            assert out.shape == ref.shape
            assert out.dtype == dtype
            if mode == "nearest":
                torch.testing.assert_close(out, ref, rtol=0, atol=0)
            else:
                torch.testing.assert_close(out, ref, **_tol(dtype))
            assert out.stride() == ref.stride()  # same memory format as torch chose


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_backward_matches_torch(backend, mode, case):
    (h, w), kwargs = case
    for align_corners in _align_options(mode):
        for channels_last in (False, True):
            x = _input((2, 3, h, w), torch.float64, channels_last, backend.device)
            x.requires_grad_(True)
            ref = F.interpolate(x, mode=mode, align_corners=align_corners, **kwargs)
            out = interpolate(x, mode=mode, align_corners=align_corners, **kwargs)
            g = _input(ref.shape, torch.float64, channels_last, backend.device, seed=1)
            (gr,) = torch.autograd.grad(ref, x, g)
            (go,) = torch.autograd.grad(out, x, g)
            # The forward is linear, so its gradient is its adjoint: <F(x), g> == <x, grad>,
            # with torch's forward (independent of either backward).
            torch.testing.assert_close((ref * g).sum(), (x * go).sum(), rtol=1e-12, atol=1e-12)
            if mode == "bicubic" and h == ref.shape[2] and w == ref.shape[3] and "scale_factor" in kwargs:
                # torch's bicubic CPU backward copies the gradient when the output size equals
                # the input size, although its forward then interpolates with 1/scale_factor;
                # pyseg returns the true gradient (checked by the adjoint identity above).
                continue
            torch.testing.assert_close(go, gr, rtol=1e-12, atol=1e-12)
            # Same layout as the input (torch's bicubic backward returns channels_last for
            # some NCHW inputs; pyseg keeps the input's format).
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            if ref.shape[2] * ref.shape[3] > 1:  # a 1x1 grad_output has no layout to follow
                assert go.is_contiguous(memory_format=fmt)


def test_nearest_float32_bit_exact(backend):
    # Nearest copies values, so any index that differs from ATen's (float scale, floor, the
    # scale-2 shortcut) shows up as a mismatch; the linear modes sum in a different order
    # than ATen (rows first) and are compared with tolerances above.
    x = _input((2, 3, 9, 11), device=backend.device)
    for sf in (2, 1.7, 0.45, 3.3, (2.0, 0.3)):
        assert torch.equal(interpolate(x, scale_factor=sf), F.interpolate(x, scale_factor=sf))
    for size in ((18, 22), (13, 7), (9, 11), (1, 1)):
        assert torch.equal(interpolate(x, size=size), F.interpolate(x, size=size))


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_scale_factor_is_used_as_given(backend, mode):
    # align_corners=False with scale_factor: the source scale is 1/scale_factor, not in/out.
    # For in=5, scale_factor=1.7 the output has 8 rows and 1/1.7 != 5/8, so the two differ.
    x = _input((1, 2, 5, 5), torch.float64, device=backend.device)
    by_scale = interpolate(x, scale_factor=1.7, mode=mode)
    by_size = interpolate(x, size=(8, 8), mode=mode)
    recomputed = interpolate(x, scale_factor=1.7, mode=mode, recompute_scale_factor=True)
    assert by_scale.shape == by_size.shape == (1, 2, 8, 8)
    assert not torch.allclose(by_scale, by_size)
    torch.testing.assert_close(recomputed, by_size, rtol=0, atol=0)
    torch.testing.assert_close(by_scale, F.interpolate(x, scale_factor=1.7, mode=mode))
    # align_corners=True ignores the scale factor: (in-1)/(out-1).
    torch.testing.assert_close(
        interpolate(x, scale_factor=1.7, mode=mode, align_corners=True),
        interpolate(x, size=(8, 8), mode=mode, align_corners=True),
        rtol=0,
        atol=0,
    )


def test_align_corners_output_one_reads_first_pixel(backend):
    # align_corners=True with out == 1 uses scale 0: the single output is the top-left input.
    x = _input((1, 2, 4, 6), torch.float64, device=backend.device)
    for mode in ("bilinear", "bicubic"):
        out = interpolate(x, size=(1, 1), mode=mode, align_corners=True)
        torch.testing.assert_close(out[..., 0, 0], x[..., 0, 0], rtol=0, atol=0)


def test_linear_clamps_negative_coordinate_bicubic_does_not(backend):
    # Upsampling with align_corners=False: output 0 maps to source -0.25. Bilinear clamps it
    # to 0, so the corner is copied exactly; bicubic keeps -0.25 (A = -0.75 weights with the
    # neighbours clamped to the border), which is not the corner value.
    x = _input((1, 1, 4, 4), torch.float64, device=backend.device)
    bil = interpolate(x, scale_factor=2, mode="bilinear")
    assert bil[0, 0, 0, 0] == x[0, 0, 0, 0]
    bic = interpolate(x, scale_factor=2, mode="bicubic")
    assert bic[0, 0, 0, 0] != x[0, 0, 0, 0]
    # Independent check of the first bicubic row weights (Keys, A = -0.75, t = 0.75 for the
    # source coordinate -0.25 = -1 + 0.75, taps at -2, -1, 0, 1 clamped to 0, 0, 0, 1).
    a, t = -0.75, 0.75
    w0 = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a
    w1 = ((a + 2) * t - (a + 3)) * t * t + 1
    w2 = ((a + 2) * (1 - t) - (a + 3)) * (1 - t) ** 2 + 1
    w3 = ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a
    taps = torch.tensor([w0, w1, w2, w3], dtype=torch.float64)
    idx = [0, 0, 0, 1]
    col = x[0, 0][:, idx] @ taps  # horizontal pass at ow = 0 for every input row
    expected = col[idx] @ taps
    torch.testing.assert_close(bic[0, 0, 0, 0], expected, rtol=1e-13, atol=1e-13)


def test_identity_size(backend):
    x = _input((2, 3, 5, 6), torch.float64, device=backend.device)
    for mode in MODES:
        for ac in _align_options(mode):
            torch.testing.assert_close(
                interpolate(x, size=(5, 6), mode=mode, align_corners=ac), x, rtol=0, atol=0
            )


@pytest.mark.parametrize("mode", MODES)
def test_gradcheck(backend, mode):
    for ac in _align_options(mode):
        x = _input((1, 2, 3, 4), torch.float64, device=backend.device).requires_grad_(True)
        assert torch.autograd.gradcheck(
            lambda t: interpolate(t, scale_factor=(1.5, 0.8), mode=mode, align_corners=ac), (x,)
        )
        if not backend.emulated:
            assert torch.autograd.gradgradcheck(
                lambda t: interpolate(t, size=(5, 3), mode=mode, align_corners=ac), (x,)
            )


@pytest.mark.parametrize("mode", MODES)
def test_backward_deterministic(backend, mode):
    x = _input((2, 3, 6, 5), torch.float32, device=backend.device).requires_grad_(True)
    y = interpolate(x, scale_factor=2.3, mode=mode)
    g = _input(y.shape, device=backend.device, seed=2)
    (a,) = torch.autograd.grad(y, x, g, retain_graph=True)
    (b,) = torch.autograd.grad(y, x, g)
    assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", MODES)
def test_reduced_precision(backend, dtype, mode):
    x = _input((2, 3, 5, 7), torch.float32, device=backend.device).to(dtype)
    ac = None if mode == "nearest" else False
    out = interpolate(x, scale_factor=1.7, mode=mode, align_corners=ac)
    ref = F.interpolate(x.float(), scale_factor=1.7, mode=mode, align_corners=ac)
    assert out.dtype == dtype
    tol = 1e-2 if dtype == torch.float16 else 4e-2
    torch.testing.assert_close(out.float(), ref, rtol=tol, atol=tol)
    xg = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(interpolate(xg, scale_factor=1.7, mode=mode, align_corners=ac).sum(), xg)
    xr = x.float().requires_grad_(True)
    (gr,) = torch.autograd.grad(F.interpolate(xr, scale_factor=1.7, mode=mode, align_corners=ac).sum(), xr)
    assert g.dtype == dtype
    torch.testing.assert_close(g.float(), gr, rtol=tol, atol=tol)


def test_non_contiguous_and_batch_one(backend):
    base = _input((3, 2, 9, 8), torch.float64, device=backend.device)
    for x in (base[:, :, ::2, 1:], base.transpose(2, 3), base[1:2]):
        for mode in MODES:
            ac = None if mode == "nearest" else False
            torch.testing.assert_close(
                interpolate(x, scale_factor=1.5, mode=mode, align_corners=ac),
                F.interpolate(x, scale_factor=1.5, mode=mode, align_corners=ac),
                rtol=1e-12,
                atol=1e-12,
            )


def test_empty_batch(backend):
    x = torch.zeros(0, 3, 4, 5, device=backend.device, requires_grad=True)
    for mode in MODES:
        y = interpolate(x, scale_factor=2, mode=mode)
        assert y.shape == (0, 3, 8, 10)
        (g,) = torch.autograd.grad(y.sum(), x)
        assert g.shape == x.shape


def _both_raise(exc, match, *args, **kwargs):
    with pytest.raises(exc, match=match):
        F.interpolate(*args, **kwargs)
    with pytest.raises(exc, match=match):
        interpolate(*args, **kwargs)


def test_bad_arguments_raise_like_torch():
    x = torch.randn(1, 2, 4, 4)
    _both_raise(ValueError, "align_corners option", x, scale_factor=2, mode="nearest", align_corners=False)
    _both_raise(ValueError, "only one of size or scale_factor", x, size=4, scale_factor=2)
    _both_raise(ValueError, "either size or scale_factor", x)
    _both_raise(ValueError, "same number of spatial dimensions", x, size=(4, 4, 4))
    _both_raise(ValueError, "same number of spatial dimensions", x, scale_factor=(2.0,))
    _both_raise(TypeError, "expected size to be one of int", x, size=(4.0, 4))
    _both_raise(ValueError, "recompute_scale_factor is not meaningful", x, size=4, recompute_scale_factor=True)
    _both_raise(ValueError, "Anti-alias option", x, scale_factor=2, mode="nearest", antialias=True)
    _both_raise(NotImplementedError, "Got 3D input, but bilinear", x[0], scale_factor=2, mode="bilinear")
    _both_raise(NotImplementedError, "Got 4D input, but linear", x, scale_factor=2, mode="linear")
    _both_raise(NotImplementedError, "modes: nearest", x, scale_factor=2, mode="cubic")
    _both_raise(RuntimeError, "Input and output sizes should be greater than 0", x, scale_factor=0.1, mode="bilinear")
    _both_raise(RuntimeError, "Input and output sizes should be greater than 0", x, size=(0, 3))


def test_input_must_be_a_tensor():
    # Every other mode and rank is implemented (tests/ops/test_interpolate_modes.py).
    with pytest.raises(TypeError, match="input must be a Tensor"):
        interpolate([1.0], scale_factor=2)


def test_kernel_checks_name_arguments(backend):
    up = pyseg.ops._library.op("upsample2d")
    x = torch.randn(1, 2, 4, 4, device=backend.device)
    with pytest.raises(RuntimeError, match="mode must be one of"):
        up(x, [8, 8], "area", False, None, None)
    with pytest.raises(RuntimeError, match="input must be a 4-D"):
        up(x[0], [8, 8], "bilinear", False, None, None)
    with pytest.raises(RuntimeError, match="floating point"):
        up(x.long(), [8, 8], "bilinear", False, None, None)
    back = pyseg.ops._library.op("upsample2d_backward")
    with pytest.raises(RuntimeError, match="input_size"):
        back(x, [1, 3, 2, 2], "bilinear", False, None, None)


def test_opcheck():
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    for mode in MODES:
        for args in (([9, 7], mode, False, 1.9, 1.8), ([3, 3], mode, True, None, None)):
            torch.library.opcheck(torch.ops.pyseg.upsample2d, (x, *args))
            torch.library.opcheck(torch.ops.pyseg.upsample2d, (x.contiguous(memory_format=torch.channels_last), *args))
            g = torch.randn(2, 3, *args[0], dtype=torch.float64)
            torch.library.opcheck(torch.ops.pyseg.upsample2d_backward, (g, list(x.shape), *args[1:]))


def test_opcheck_emulated(emu):
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64)
    torch.library.opcheck(torch.ops.pyseg_emu.upsample2d, (x, [5, 6], "bicubic", False, 1.7, 1.5))


def test_torch_compile_fullgraph():
    torch._dynamo.reset()

    def f(x):
        return interpolate(x, scale_factor=2, mode="bilinear") + interpolate(x, size=(10, 12), mode="bicubic")

    x = torch.randn(2, 3, 5, 6, requires_grad=True)
    compiled = torch.compile(f, fullgraph=True)
    out = compiled(x)
    torch.testing.assert_close(out, f(x))
    (g,) = torch.autograd.grad(out.sum(), x)
    (gr,) = torch.autograd.grad(f(x).sum(), x)
    torch.testing.assert_close(g, gr)


def test_upsample_module_matches_torch():
    x = torch.randn(2, 3, 5, 6)
    configs = [
        dict(scale_factor=2),
        dict(scale_factor=(1.5, 2.0), mode="bilinear"),
        dict(size=(7, 3), mode="bicubic", align_corners=True),
        dict(scale_factor=1.7, mode="bilinear", recompute_scale_factor=True),
    ]
    for kwargs in configs:
        ours, ref = pyseg.nn.Upsample(**kwargs), torch.nn.Upsample(**kwargs)
        assert repr(ours) == repr(ref)
        assert ours.state_dict().keys() == ref.state_dict().keys()
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)
