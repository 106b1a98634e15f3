"""The CUDA GEMM core (csrc/common/gemm_kernels.cuh) and the packed 16-bit atomics
(csrc/common/cuda_compat.h) under the emulator, through deform_conv2d (whose three products
all run on that GEMM) against torchvision in float64, and through self-test kernels."""

from __future__ import annotations

import pytest
import torch
import torchvision

from pyseg.ops import _library, deform_conv2d

pytestmark = pytest.mark.emu


def _args(n, c, o, h, w, k, dtype, seed=0, groups=1):
    g = torch.Generator().manual_seed(seed)
    pad = k // 2
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    wt = torch.randn(o, c // groups, k, k, generator=g, dtype=torch.float64)
    b = torch.randn(o, generator=g, dtype=torch.float64)
    off = 1.5 * torch.randn(n, 2 * k * k, h, w, generator=g, dtype=torch.float64)
    m = torch.rand(n, k * k, h, w, generator=g, dtype=torch.float64)
    return dict(input=x, offset=off, weight=wt, bias=b, padding=(pad, pad), mask=m), dtype


def _check(args, dtype, atol, rtol):
    """Forward and every gradient of the emulated op (in `dtype`) against torchvision in
    float64 on the same (rounded) inputs."""
    low = {k: v.detach().to(dtype).requires_grad_() if isinstance(v, torch.Tensor) else v
           for k, v in args.items()}
    ref = {k: v.detach().double().requires_grad_() if isinstance(v, torch.Tensor) else v
           for k, v in low.items()}
    expected = torchvision.ops.deform_conv2d(**ref)
    actual = deform_conv2d(**low)
    torch.testing.assert_close(actual.double(), expected, atol=atol, rtol=rtol)
    g = torch.randn(expected.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    expected.backward(g)
    actual.backward(g.to(dtype))
    for k in ("input", "weight", "offset", "mask", "bias"):
        torch.testing.assert_close(low[k].grad.double(), ref[k].grad, atol=atol * 4, rtol=rtol,
                                   msg=lambda m, k=k: f"grad of {k}: {m}")


@pytest.fixture(params=[80, 75], ids=["cp.async", "registers"])
def compute_capability(request, emu):
    """float tiles are staged with cp.async from sm_80 on and through registers below."""
    previous = emu.compute_capability()
    emu.set_compute_capability(request.param)
    yield request.param
    emu.set_compute_capability(previous)


# M, N, K off the 128 x 64 x 8 tile in every direction, one group and two.
SHAPES = [
    (2, 5, 7, 6, 5, 3, 1),     # M = 7, N = 60, K = 45
    (1, 6, 130, 3, 3, 1, 2),   # two groups of M = 65, K = 3
    (1, 3, 129, 9, 8, 3, 1),   # M = 129 (a second m tile of one row), N = 72
]


@pytest.mark.parametrize("shape", SHAPES)
def test_float_both_staging_paths(emu_backend, compute_capability, shape):
    n, c, o, h, w, k, groups = shape
    args, _ = _args(n, c, o, h, w, k, torch.float32, groups=groups)
    _check(args, torch.float32, atol=2e-4, rtol=1e-4)


def test_double_exact_enough(emu_backend):
    args, _ = _args(2, 5, 7, 6, 5, 3, torch.float64)
    _check(args, torch.float64, atol=1e-10, rtol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_float_accumulation(emu_backend, dtype):
    # Products accumulate in float32; the result is rounded once to dtype.
    args, _ = _args(1, 4, 5, 6, 7, 3, dtype)
    eps = torch.finfo(dtype).eps
    _check(args, dtype, atol=40 * eps, rtol=8 * eps)


def test_split_k_weight_gradient(emu_backend):
    # grad_weight = grad_out @ cols^T has one 128 x 64 output tile and k = 32 * 32 = 1024
    # pixels: the launch splits k in 4 (kMinSplitK = 256), the partial sums go to a float64
    # buffer and are added in split order. Against torchvision's float64 gradient, and bit
    # for bit against a second run (a fixed split count and order: deterministic).
    from pyseg import _emu

    args, _ = _args(1, 2, 3, 32, 32, 3, torch.float64, seed=4)
    _emu.reset_stats()
    _check(args, torch.float64, atol=1e-9, rtol=1e-9)
    launches = _emu.stats()["launches"]
    again = {k: v.detach().clone().requires_grad_() if isinstance(v, torch.Tensor) else v
             for k, v in args.items()}
    twice = {k: v.detach().clone().requires_grad_() if isinstance(v, torch.Tensor) else v
             for k, v in args.items()}
    for a in (again, twice):
        deform_conv2d(**a).sum().backward()
    assert torch.equal(again["weight"].grad, twice["weight"].grad)
    # forward: im2col + GEMM; backward: im2col, two GEMMs, the split sum, coord, col2im
    assert launches == 2 + 6


def test_column_vector_result(emu_backend, compute_capability):
    # conv_transpose3d's products, grad_bias among them: a GEMM whose C is one column of 70
    # rows at unit stride, which the epilogue stores with lanes along the rows, in two passes
    # of 64 rows. Every output and gradient against torch in float64.
    from pyseg.ops import conv_transpose3d

    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 6, 3, 4, 5, generator=g, dtype=torch.float64)
    w = torch.randn(6, 70, 2, 3, 3, generator=g, dtype=torch.float64)
    b = torch.randn(70, generator=g, dtype=torch.float64)
    low = [t.float().requires_grad_() for t in (x, w, b)]
    ref = [t.detach().double().requires_grad_() for t in low]
    kw = dict(stride=(1, 2, 2), padding=1)
    expected = torch.nn.functional.conv_transpose3d(*ref, **kw)
    actual = conv_transpose3d(*low, **kw)
    torch.testing.assert_close(actual.double(), expected, atol=2e-4, rtol=1e-4)
    grad = torch.randn(expected.shape, generator=g, dtype=torch.float64)
    expected.backward(grad)
    actual.backward(grad.float())
    for name, a, e in zip(("input", "weight", "bias"), low, ref):
        torch.testing.assert_close(a.grad.double(), e.grad, atol=1e-3, rtol=1e-4,
                                   msg=lambda m, name=name: f"grad of {name}: {m}")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("n", [1, 2, 7, 64, 65])
@pytest.mark.parametrize("name", ["atomic_scatter", "atomic_scatter_shifted"])
def test_indexed_atomic_add(emu, dtype, n, name):
    # Each element receives two additions from different threads while its 32-bit word's
    # other half receives its own: the packed path must leave the neighbour unchanged.
    # "shifted" starts the buffer at an odd element, so the first element is the high half
    # of a word whose low half is outside the buffer (the scalar path takes it).
    x = (torch.arange(n, dtype=torch.float64) * 0.25 - 3).to(dtype)
    out, buffer = emu.selftest(name, x, 64, 2)
    expected = x.double() + x.double().flip(0)  # exact in every dtype at these values
    assert torch.equal(out.double(), expected)
    if name == "atomic_scatter_shifted":
        assert buffer[0].item() == 0  # the element before the buffer is untouched


# --- Tensor cores (gemm_tc_kernel) and TF32 ------------------------------------------------


def _gemm_kernels(emu, fn):
    """Names of the GEMM kernels that `fn()` launches (the counters record each launch)."""
    previous = emu.checks()
    emu.set_checks(previous["memcheck"], previous["racecheck"], True)
    emu.reset_stats()
    try:
        fn()
        return [c["kernel"] for c in emu.launch_counters() if "gemm" in c["kernel"]
                and "sum_splits" not in c["kernel"]]
    finally:
        emu.set_checks(previous["memcheck"], previous["racecheck"], previous["counters"])


@pytest.fixture(params=["flag", "precision"])
def tf32_allowed(request):
    """TF32 allowed the two ways torch offers for matmuls (the flag the GEMM reads)."""
    flag, precision = torch.backends.cuda.matmul.allow_tf32, torch.get_float32_matmul_precision()
    if request.param == "flag":
        torch.backends.cuda.matmul.allow_tf32 = True
    else:
        torch.set_float32_matmul_precision("high")
    yield
    torch.backends.cuda.matmul.allow_tf32 = flag
    torch.set_float32_matmul_precision(precision)


@pytest.mark.parametrize("dtype,cc,tf32,tensor_cores", [
    (torch.float16, 80, False, True),
    (torch.bfloat16, 90, False, True),
    (torch.float16, 75, False, False),   # below sm_80: the FMA kernel
    (torch.float32, 80, False, False),   # the default: exact float32
    (torch.float32, 80, True, True),
    (torch.float32, 75, True, False),    # TF32 needs sm_80
    (torch.float64, 80, True, False),    # TF32 is for float32 only
])
def test_kernel_choice(emu, dtype, cc, tf32, tensor_cores):
    args, _ = _args(1, 3, 4, 5, 5, 3, dtype)
    low = {k: v.to(dtype).requires_grad_() if isinstance(v, torch.Tensor) else v
           for k, v in args.items()}
    previous_cc, previous_flag = emu.compute_capability(), torch.backends.cuda.matmul.allow_tf32
    emu.set_compute_capability(cc)
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        with _library.emulated():
            names = _gemm_kernels(emu, lambda: deform_conv2d(**low).sum().backward())
    finally:
        emu.set_compute_capability(previous_cc)
        torch.backends.cuda.matmul.allow_tf32 = previous_flag
    assert len(names) == 3  # forward, grad of the columns, grad of the weight
    assert all(("gemm_tc_kernel" in n) == tensor_cores for n in names), names


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES)
def test_tensor_cores_half_bfloat16(emu_backend, dtype, shape):
    # M, N, K off the tile and the 16-deep stages in every direction, split-K included
    # (grad_weight): zero padding of the edge tiles, float accumulation, one rounding.
    n, c, o, h, w, k, groups = shape
    args, _ = _args(n, c, o, h, w, k, dtype, groups=groups)
    eps = torch.finfo(dtype).eps
    _check(args, dtype, atol=40 * eps, rtol=8 * eps)


def test_tensor_cores_split_k(emu_backend):
    # grad_weight with K = 1024 pixels split in 4 float partial sums (gemm_tc_kernel<half,
    # float>), then added in split order.
    args, _ = _args(1, 2, 3, 32, 32, 3, torch.float16, seed=4)
    eps = torch.finfo(torch.float16).eps
    _check(args, torch.float16, atol=40 * eps, rtol=8 * eps)


def _max_error(args, dtype):
    low = {k: v.to(dtype) if isinstance(v, torch.Tensor) else v for k, v in args.items()}
    ref = {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in low.items()}
    return (deform_conv2d(**low).double() - torchvision.ops.deform_conv2d(**ref)).abs().max().item()


@pytest.mark.parametrize("shape", SHAPES)
def test_tf32_when_allowed(emu_backend, tf32_allowed, shape):
    # With TF32 allowed, float32 products round their inputs to 10-bit mantissas: the error
    # against float64 is bounded like half precision's, and measurably above float32's.
    n, c, o, h, w, k, groups = shape
    args, _ = _args(n, c, o, h, w, k, torch.float32, groups=groups)
    tf32_eps = 2.0 ** -10
    _check(args, torch.float32, atol=40 * tf32_eps, rtol=8 * tf32_eps)
    assert _max_error(args, torch.float32) > 1e-4


def test_float32_exact_by_default(emu_backend):
    assert not torch.backends.cuda.matmul.allow_tf32
    args, _ = _args(2, 5, 7, 6, 5, 3, torch.float32)
    assert _max_error(args, torch.float32) < 2e-5


@pytest.mark.parametrize("tf32", [False, True], ids=["exact", "tf32"])
def test_conv_transpose3d_tf32_flag(emu_backend, tf32):
    # conv_transpose3d's products run on the same GEMM (float compute): exact float32 by
    # default, TF32 (a bounded, measurable difference) when torch allows it.
    from pyseg.ops import conv_transpose3d

    g = torch.Generator().manual_seed(11)
    x = torch.randn(2, 6, 3, 4, 5, generator=g, dtype=torch.float64)
    w = torch.randn(6, 4, 2, 3, 3, generator=g, dtype=torch.float64)
    b = torch.randn(4, generator=g, dtype=torch.float64)
    expected = torch.nn.functional.conv_transpose3d(x, w, b, stride=(1, 2, 2), padding=1)
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        actual = conv_transpose3d(x.float(), w.float(), b.float(), stride=(1, 2, 2), padding=1)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    error = (actual.double() - expected).abs().max().item()
    if tf32:
        tf32_eps = 2.0 ** -10
        torch.testing.assert_close(actual.double(), expected, atol=40 * tf32_eps, rtol=8 * tf32_eps)
        assert error > 1e-4
    else:
        assert error < 2e-5
