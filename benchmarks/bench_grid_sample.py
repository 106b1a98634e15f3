"""pyseg.ops.grid_sample vs torch.nn.functional.grid_sample on the CPU: forward and
forward + backward, 2-D and 3-D, every mode, NCHW and channels_last inputs.

Usage: python benchmarks/bench_grid_sample.py [--threads N] [--min-run-time S] [--wall]

Each measurement runs the step repeatedly in blocks of at least S seconds and keeps the
fastest block's time per step: CPU time of the calling thread (time.thread_time, steadier
than wall time on a loaded machine, and exact with one thread) unless --wall is given.
Prints the CPU capability of torch and of pyseg, and per case both times and the ratio
pyseg / torch (< 1: pyseg is faster).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import pyseg
from pyseg import _loader

CASES = [
    # (input shape, output spatial, mode, padding_mode)
    ((8, 3, 64, 64), (64, 64), "bilinear", "zeros"),
    ((4, 64, 64, 64), (64, 64), "bilinear", "zeros"),
    ((4, 64, 64, 64), (64, 64), "bilinear", "reflection"),
    ((4, 64, 64, 64), (64, 64), "nearest", "zeros"),
    ((2, 16, 64, 64), (64, 64), "bicubic", "zeros"),
    ((2, 8, 16, 32, 32), (16, 32, 32), "bilinear", "zeros"),
    ((2, 8, 16, 32, 32), (16, 32, 32), "nearest", "border"),
]


def inputs(shape, out, channels_last, backward):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g)
    if channels_last:
        x = x.to(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
    d = len(out)
    theta = torch.eye(d, d + 1).repeat(shape[0], 1, 1) * 0.9 + 0.05 * torch.randn(
        shape[0], d, d + 1, generator=g)
    grid = F.affine_grid(theta, [shape[0], shape[1], *out], align_corners=False)
    if backward:
        x.requires_grad_()
        grid.requires_grad_()
    return x, grid


def step(fn, x, grid, mode, padding, backward):
    out = fn(x, grid, mode, padding, False)
    if backward:
        out.backward(torch.ones_like(out))


def measure(run, min_run_time: float, clock) -> float:
    """Seconds per call of the fastest of 3 blocks, each at least min_run_time / 3 long."""
    run()  # warm-up
    n, start = 1, clock()
    run()
    one = max(clock() - start, 1e-6)
    n = max(1, int(min_run_time / 3 / one))
    best = float("inf")
    for _ in range(3):
        start = clock()
        for _ in range(n):
            run()
        best = min(best, (clock() - start) / n)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--min-run-time", type=float, default=0.3)
    parser.add_argument("--wall", action="store_true", help="wall time instead of CPU time")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.wall else time.thread_time
    if args.threads > 1 and not args.wall:
        print("note: thread_time counts the calling thread only; use --wall with --threads > 1")
    print(f"torch cpu capability: {torch.backends.cpu.get_cpu_capability()}, "
          f"pyseg: {_loader._C.cpu_capability()}, threads {args.threads}, "
          f"{'wall' if args.wall else 'CPU'} time")
    print(f"{'case':58s} {'torch ms':>9s} {'pyseg ms':>9s} {'ratio':>6s}")
    for shape, out, mode, padding in CASES:
        for channels_last in (False, True):
            for backward in (False, True):
                x, grid = inputs(shape, out, channels_last, backward)
                times = [
                    measure(lambda fn=fn: step(fn, x, grid, mode, padding, backward),
                            args.min_run_time, clock) * 1e3
                    for fn in (F.grid_sample, pyseg.ops.grid_sample)
                ]
                name = (f"{tuple(shape)}->{out} {mode} {padding}"
                        f"{' NHWC' if channels_last else ''}{' +bwd' if backward else ''}")
                print(f"{name:58s} {times[0]:9.3f} {times[1]:9.3f} {times[1] / times[0]:6.2f}",
                      flush=True)


if __name__ == "__main__":
    main()
