"""conv_transpose2d's CUDA path on the common GEMM core (implicit im2col operands, tensor
cores) under the emulator: every pass against torch's F.conv_transpose2d in float64 on the
same rounded inputs, the kernel choice (tensor cores for half / bfloat16, TF32 only when
torch allows it, the int64 fallback when the sizes ask for it or the emulator forces it),
in the forward, reverse and interleaved thread orders."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pyseg.ops import _library, conv_transpose2d

pytestmark = pytest.mark.emu

# (N, C_in, C_out, H, W, kernel, stride, padding, output_padding, groups, dilation)
SHAPES = [
    (2, 4, 6, 5, 6, 3, 2, 1, 1, 2, 1),          # two groups, four phases
    (2, 5, 3, 7, 5, 3, 1, 1, 0, 1, 1),          # stride 1: the weight read as stored
    (1, 4, 4, 5, 5, 3, 3, 2, 1, 1, 2),          # dilation with stride: tap steps
    (2, 2, 2, 3, 3, 1, 2, 0, 1, 1, 1),          # phases with no tap: bias only
    (1, 6, 3, 6, 5, (2, 3), (2, 1), (0, 1), (1, 0), 3, (1, 2)),
    (1, 3, 130, 9, 10, 4, 2, 1, 0, 1, 1),       # M = 130: two m tiles; N = 90: two n tiles
    (3, 9, 5, 12, 11, 3, 2, 1, 1, 1, 1),        # grad_weight K = 396: split-K
]


def _ids(s):
    return "x".join(str(v) for v in s[:5]) + f"-k{s[5]}-s{s[6]}-g{s[9]}"


def _make(shape, seed=0):
    n, ci, co, h, w, k, s, p, op, g, d = shape
    gen = torch.Generator().manual_seed(seed)
    k = (k, k) if isinstance(k, int) else k
    x = torch.randn(n, ci, h, w, generator=gen, dtype=torch.float64)
    wt = torch.randn(ci, co // g, *k, generator=gen, dtype=torch.float64)
    b = torch.randn(co, generator=gen, dtype=torch.float64)
    return (x, wt, b), dict(stride=s, padding=p, output_padding=op, groups=g, dilation=d)


def _check(shape, dtype, atol, rtol, seed=0):
    """Forward and the three gradients of the emulated op in `dtype` against float64 on the
    same rounded inputs; returns the largest forward error."""
    tensors, kw = _make(shape, seed)
    low = [t.to(dtype).requires_grad_() for t in tensors]
    ref = [t.detach().double().requires_grad_() for t in low]
    expected = F.conv_transpose2d(*ref, **kw)
    actual = conv_transpose2d(*low, **kw)
    assert actual.dtype == dtype
    torch.testing.assert_close(actual.double(), expected, atol=atol, rtol=rtol)
    grad = torch.randn(expected.shape, generator=torch.Generator().manual_seed(seed + 1),
                       dtype=torch.float64).to(dtype)
    expected.backward(grad.double())
    actual.backward(grad)
    # The gradients sum over more terms (grad_weight over every pixel of the batch).
    terms = max(shape[0] * shape[3] * shape[4], 1)
    for name, a, e in zip(("input", "weight", "bias"), low, ref):
        scale = 4 if name == "input" else max(4, terms ** 0.5)
        torch.testing.assert_close(a.grad.double(), e.grad, atol=atol * scale, rtol=rtol,
                                   msg=lambda m, name=name: f"grad of {name}: {m}")
    return (actual.double() - expected).abs().max().item()


@pytest.fixture(params=[False, True], ids=["int32", "int64"])
def wide(request, emu):
    emu.set_force_int64(request.param)
    yield request.param
    emu.set_force_int64(False)


@pytest.fixture
def tf32(request):
    previous = torch.backends.cuda.matmul.allow_tf32
    yield lambda on: setattr(torch.backends.cuda.matmul, "allow_tf32", on)
    torch.backends.cuda.matmul.allow_tf32 = previous


def _kernels(emu, fn):
    """Names of the kernels that `fn()` launches."""
    previous = emu.checks()
    emu.set_checks(previous["memcheck"], previous["racecheck"], True)
    emu.reset_stats()
    try:
        fn()
        return [c["kernel"] for c in emu.launch_counters()]
    finally:
        emu.set_checks(previous["memcheck"], previous["racecheck"], previous["counters"])
        emu.reset_stats()


@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
def test_float32_exact_both_widths(emu_backend, wide, shape):
    # TF32 off (torch's default): exact float32 on both index widths.
    assert not torch.backends.cuda.matmul.allow_tf32
    assert _check(shape, torch.float32, atol=2e-5, rtol=1e-5) < 2e-5


@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
def test_float64(emu_backend, shape):
    _check(shape, torch.float64, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
def test_tensor_cores_half_bfloat16(emu_backend, dtype, shape):
    # Float accumulation, one rounding of each output: error of a few eps of the dtype.
    eps = torch.finfo(dtype).eps
    _check(shape, dtype, atol=40 * eps, rtol=8 * eps)


@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
def test_tf32_when_allowed(emu_backend, tf32, shape):
    # TF32 rounds the inputs of the products to 10-bit mantissas: bounded like half, and
    # measurably above float32's error (shapes with enough terms per output).
    tf32(True)
    tf32_eps = 2.0 ** -10
    error = _check(shape, torch.float32, atol=40 * tf32_eps, rtol=8 * tf32_eps)
    if shape[1] * 4 >= 16:
        assert error > 1e-4


CHOICE = [
    # dtype, cc, tf32, force_int64 -> GEMM kernel expected in every pass
    (torch.float16, 80, False, False, "gemm_tc_conv_kernel"),
    (torch.bfloat16, 90, False, False, "gemm_tc_conv_kernel"),
    (torch.float16, 75, False, False, "gemm_conv_kernel"),
    (torch.float32, 80, False, False, "gemm_conv_kernel"),  # exact float32 by default
    (torch.float32, 80, True, False, "gemm_tc_conv_kernel"),
    (torch.float32, 75, True, False, "gemm_conv_kernel"),   # TF32 needs sm_80
    (torch.float64, 80, True, False, "gemm_conv_kernel"),   # TF32 is for float32 only
    (torch.float16, 80, False, True, "implicit_gemm_kernel"),  # the int64 fallback
]


@pytest.mark.parametrize("dtype,cc,allow,force,expected", CHOICE)
def test_kernel_choice(emu, tf32, dtype, cc, allow, force, expected):
    tensors, kw = _make(SHAPES[0])
    low = [t.to(dtype).requires_grad_() for t in tensors]
    previous_cc = emu.compute_capability()
    emu.set_compute_capability(cc)
    emu.set_force_int64(force)
    tf32(allow)
    try:
        with _library.emulated():
            names = _kernels(emu, lambda: conv_transpose2d(*low, **kw).sum().backward())
    finally:
        emu.set_compute_capability(previous_cc)
        emu.set_force_int64(False)
    gemms = [n for n in names if "gemm" in n and "sum_splits" not in n and "reduce" not in n]
    # forward: 4 phases x 2 groups; grad_input and grad_weight: 2 groups each
    # (the int64 fallback: one launch per pass)
    assert len(gemms) == (3 if force else 12), names
    assert all(expected in n for n in gemms), names
    if expected != "implicit_gemm_kernel":
        assert not any("implicit_gemm_kernel" in n for n in names)
    assert any("bias_grad_kernel" in n for n in names)
