"""pyseg.ops.grid_sample vs torch.nn.functional.grid_sample on the CPU: forward and
forward + backward, a few shapes, measured with torch.utils.benchmark in one run.

Usage: python benchmarks/bench_grid_sample.py [--threads N] [--min-run-time S]
Prints the CPU capability torch uses, the fastest block of runs of each side and the ratio
(pyseg / torch) per case; < 1 is faster.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch.utils import benchmark

import pyseg

CASES = [
    # (input shape, output spatial, mode)
    ((8, 3, 64, 64), (64, 64), "bilinear"),
    ((4, 64, 64, 64), (64, 64), "bilinear"),
    ((4, 64, 64, 64), (64, 64), "nearest"),
    ((2, 16, 64, 64), (64, 64), "bicubic"),
    ((2, 8, 16, 32, 32), (16, 32, 32), "bilinear"),
]


def inputs(shape, out, backward):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g)
    d = len(out)
    theta = torch.eye(d, d + 1).repeat(shape[0], 1, 1) * 0.9 + 0.05 * torch.randn(
        shape[0], d, d + 1, generator=g)
    grid = F.affine_grid(theta, [shape[0], shape[1], *out], align_corners=False)
    if backward:
        x.requires_grad_()
        grid.requires_grad_()
    return x, grid


def step(fn, x, grid, mode, backward):
    out = fn(x, grid, mode, "zeros", False)
    if backward:
        out.backward(torch.ones_like(out))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--min-run-time", type=float, default=0.5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"cpu capability: {torch.backends.cpu.get_cpu_capability()}, threads {args.threads}")
    print(f"{'case':44s} {'torch ms':>9s} {'pyseg ms':>9s} {'ratio':>6s}")
    for shape, out, mode in CASES:
        for backward in (False, True):
            x, grid = inputs(shape, out, backward)
            times = []
            for fn in (F.grid_sample, pyseg.ops.grid_sample):
                t = benchmark.Timer("step(fn, x, grid, mode, backward)",
                                    globals=dict(step=step, fn=fn, x=x, grid=grid, mode=mode,
                                                 backward=backward),
                                    num_threads=args.threads)
                # The fastest block: on a shared machine the median mostly measures the load.
                times.append(min(t.blocked_autorange(min_run_time=args.min_run_time).times) * 1e3)
            name = f"{tuple(shape)}->{out} {mode}{' +bwd' if backward else ''}"
            print(f"{name:44s} {times[0]:9.3f} {times[1]:9.3f} {times[1] / times[0]:6.2f}")


if __name__ == "__main__":
    main()
