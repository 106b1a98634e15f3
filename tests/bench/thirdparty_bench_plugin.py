"""A stand-in third-party plugin: benchmarks its own kernel (max-unpool as a pure-torch
scatter) against pyseg's built-in, with no change to pyseg. Loaded by name through
PYSEG_PLUGINS / ``pyseg --plugin`` in the tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import pyseg
from pyseg.hookspecs import hookimpl
from pyseg.registry import BenchmarkCase

CASE_NAME = "thirdparty/scatter-unpool"


def scatter_unpool(x: torch.Tensor, indices: torch.Tensor, kernel_size: int) -> torch.Tensor:
    n, c, h, w = x.shape
    out = x.new_zeros(n, c, h * kernel_size * w * kernel_size)
    out = out.scatter(2, indices.reshape(n, c, -1), x.reshape(n, c, -1))
    return out.reshape(n, c, h * kernel_size, w * kernel_size)


def make_inputs(device: torch.device, dtype: torch.dtype) -> tuple:
    g = torch.Generator().manual_seed(0)
    pooled, indices = F.max_pool2d(torch.randn(1, 4, 16, 16, generator=g), 2, return_indices=True)
    return pooled.to(device=device, dtype=dtype), indices.to(device), 2


@hookimpl
def pyseg_benchmarks() -> list:
    return [
        BenchmarkCase(
            name=CASE_NAME, label="max_unpool2d", sub_label="scatter (1,4,8,8)->16x16",
            make_inputs=make_inputs, ours=scatter_unpool,
            reference=lambda *a: pyseg.ops.max_unpool2d(*a), quick=True,
            summary="a plugin's scatter unpool vs pyseg's kernel",
        )
    ]
