"""The CUDA emulator itself: scheduling, barriers, shared memory, warp collectives, atomics."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.emu


@pytest.fixture(params=["forward", "reverse", "random"])
def order(request, emu):
    previous = emu.thread_order()
    emu.set_thread_order(request.param, 7)
    yield request.param
    emu.set_thread_order(previous)


@pytest.mark.parametrize("kernel", ["block_sum", "warp_sum"])
@pytest.mark.parametrize("block,grid,n", [(64, 4, 1000), (256, 2, 513), (32, 1, 7), (128, 3, 0)])
def test_reductions(emu, order, kernel, block, grid, n):
    x = torch.randn(n, dtype=torch.float64)
    partial = emu.selftest(kernel, x, block, grid)[0]
    torch.testing.assert_close(partial.sum(), x.sum())


@pytest.mark.parametrize("block", [1, 17, 48, 100, 1000])
def test_warp_reduction_partial_warps(emu, order, block):
    x = torch.randn(3 * block + 5, dtype=torch.float64)
    torch.testing.assert_close(emu.selftest("warp_sum", x, block, 2)[0].sum(), x.sum())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_atomics(emu, dtype):
    x = torch.ones(300, dtype=dtype)
    out = emu.selftest("atomic_sum", x, 64, 3)[0]
    assert out.item() == 256 if dtype == torch.bfloat16 else out.item() == 300
    # bfloat16 has 8 significant bits: 256 + 1 rounds back to 256, as on a GPU


def test_dynamic_shared_memory(emu, order):
    x = torch.arange(100, dtype=torch.float32)
    y = emu.selftest("block_reverse", x, 32, 1)[0]
    expected = torch.cat([x[i : i + 32].flip(0) for i in range(0, 100, 32)])
    torch.testing.assert_close(y, expected)


def test_warp_collectives(emu, order):
    x = torch.randint(0, 100, (128,), dtype=torch.int32)
    scan, xor_sum, bcast, ballot = emu.selftest("warp_collectives", x, 64, 1)
    warps = x.view(-1, 32)
    torch.testing.assert_close(scan.view(-1, 32), warps.cumsum(1).int())
    torch.testing.assert_close(xor_sum.view(-1, 32), warps.sum(1, keepdim=True).int().expand(-1, 32))
    torch.testing.assert_close(bcast.view(-1, 32), warps[:, 3:4].expand(-1, 32))
    odd = (warps % 2 != 0).long()
    expected = (odd * (2 ** torch.arange(32))).sum(1)  # bit i set when lane i is odd
    assert torch.equal(ballot.view(-1, 32).long() & 0xFFFFFFFF, expected.view(-1, 1).expand(-1, 32))


def test_divergent_barrier_is_reported(emu):
    with pytest.raises(RuntimeError, match="divergent __syncthreads"):
        emu.selftest("divergent_barrier", torch.zeros(1, dtype=torch.int32), 64)


def test_two_dimensional_grid(emu, order):
    out = emu.selftest("coordinates", torch.zeros(1), 4, 3)[0]
    ys, xs = torch.meshgrid(torch.arange(12), torch.arange(12), indexing="ij")
    assert torch.equal(out, (ys * 1000 + xs).int())


def test_invalid_launch_configuration(emu):
    with pytest.raises(RuntimeError, match="invalid configuration"):
        emu.selftest("block_sum", torch.zeros(4, dtype=torch.float64), 2048, 1)


def test_stats_and_grid_cap(emu):
    emu.reset_stats()
    x = torch.randn(5000, dtype=torch.float64)
    emu.selftest("block_sum", x, 64, 4)
    s = emu.stats()
    assert s["launches"] == 1 and s["blocks"] == 4 and s["threads"] == 256
    assert s["barriers"] == 4 * 7  # one after the store, six in the 64-wide tree, per block
    assert emu.max_blocks() >= 1


def test_bad_thread_order(emu):
    with pytest.raises(ValueError, match="thread order"):
        emu.set_thread_order("sideways")
