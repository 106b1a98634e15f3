"""The CUDA GEMM core (csrc/common/gemm_kernels.cuh) and the packed 16-bit atomics
(csrc/common/cuda_compat.h) under the emulator, through deform_conv2d (whose three products
all run on that GEMM) against torchvision in float64, and through self-test kernels."""

from __future__ import annotations

import pytest
import torch
import torchvision

from pyseg.ops import deform_conv2d

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
