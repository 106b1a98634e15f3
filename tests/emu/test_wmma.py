"""The emulator's nvcuda::wmma (csrc/emu/wmma_shim.h) through the self-test kernel wmma_mma
(csrc/emu/selftest_kernels.cuh): fragment loads in both layouts, fill, element-wise access,
mma and store against float64 products of the same rounded inputs; TF32 rounding against a
reference written here from the bit pattern; the collective rules (divergent lanes, lanes
with different pointers) reported as errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.emu


def tf32_round(x: torch.Tensor) -> torch.Tensor:
    """float32 -> nearest tf32 (10 mantissa bits), ties away from zero, as cvt.rna.tf32.f32:
    computed on the bit pattern with numpy, independently of the emulator's C++."""
    bits = x.numpy().view(np.uint32).astype(np.uint64)
    finite = (bits & 0x7F800000) != 0x7F800000
    rounded = ((bits + 0x1000) & 0xFFFFE000).astype(np.uint32)
    out = np.where(finite, rounded, bits.astype(np.uint32))
    return torch.from_numpy(out.view(np.float32).copy())


def _inputs(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 16, 16, generator=g, dtype=torch.float64)
    return x.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_mma_matches_float64(emu, dtype, order):
    previous = emu.thread_order()
    emu.set_thread_order(order, 7)
    try:
        x = _inputs(dtype)
        (d,) = emu.selftest("wmma_mma", x, 32, 3)
    finally:
        emu.set_thread_order(previous, 7)
    a, bt, c = x.double().unbind(0)
    if dtype == torch.float32:  # the kernel rounds a and b with __float_to_tf32
        a, bt = tf32_round(x[0]).double(), tf32_round(x[1]).double()
    product = a @ bt.T + c.float().double().T
    for blk in range(3):  # block blk fills its accumulator with blk
        # Exact products, 16 float additions: a few float32 ulps of the magnitudes summed.
        torch.testing.assert_close(d[blk].double(), product + blk, atol=2e-5, rtol=1e-5)


def test_tf32_inputs_differ_from_float32_by_a_bounded_amount(emu):
    # The same float32 matrices with and without the TF32 rounding: the mma result moves
    # by at most what 10-bit mantissas allow (relative 2^-11 per input) and visibly more than
    # float32 rounding would.
    x = _inputs(torch.float32, seed=1)
    (d,) = emu.selftest("wmma_mma", x, 32, 1)
    a, bt, c = x.double().unbind(0)
    exact = a @ bt.T + c.T
    bound = 2 * 2.0 ** -11 * (a.abs() @ bt.abs().T)
    diff = (d[0].double() - exact).abs()
    assert (diff <= bound + 1e-5).all()
    assert diff.max() > 1e-4  # float32 alone would be ~1e-6 here


def test_float_to_tf32_rounding(emu):
    x = torch.tensor([1.0, 1.0 + 2.0 ** -11, 1.0 + 2.0 ** -10 + 2.0 ** -11, -(1.0 + 2.0 ** -11),
                      1.0 + 2.0 ** -12, torch.finfo(torch.float32).max, float("inf"), -float("inf"), 0.0, -0.0, 1e-40],
                     dtype=torch.float32)
    x = torch.cat([x, torch.randn(1000, generator=torch.Generator().manual_seed(2))])
    (y,) = emu.selftest("float_to_tf32", x, 64, 2)
    assert torch.equal(y.view(torch.int32), tf32_round(x).view(torch.int32))
    # ties go away from zero; 2^-12 rounds down; the largest float rounds to infinity
    assert y[1].item() == 1.0 + 2.0 ** -10 and y[2].item() == 1.0 + 2.0 ** -9
    assert y[3].item() == -(1.0 + 2.0 ** -10) and y[4].item() == 1.0
    assert y[5].item() == float("inf")
    (nan,) = emu.selftest("float_to_tf32", torch.tensor([float("nan")]), 32, 1)
    assert torch.isnan(nan).all()


def test_divergent_fragment_load_is_reported(emu):
    with pytest.raises(RuntimeError, match="deadlock|do not match|collective"):
        emu.selftest("wmma_divergent", _inputs(torch.float16), 32, 1)


def test_lanes_with_different_pointers_are_reported(emu):
    with pytest.raises(RuntimeError, match="different arguments"):
        emu.selftest("wmma_lane_pointers", _inputs(torch.float16), 32, 1)
