"""deform_conv2d vs torchvision.ops.deform_conv2d (and F.conv2d, the floor) on the CPU.

    python benchmarks/bench_deform_conv.py [--quick] [--threads N] [--cpu-time] [--no-torchvision]

Prints a Markdown table: median times and ratios ours / torchvision and ours / conv2d,
forward and forward+backward, measured in one run with torch.utils.benchmark. --cpu-time
times one thread by its CPU time (time.thread_time) instead of the wall clock, which other
work on a busy machine disturbs much less.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F
import torchvision
from torch.utils import benchmark

import pyseg.ops

SHAPES = [
    # (N, C, H, W), out channels, label
    ((4, 64, 64, 64), 64, "target"),
    ((1, 64, 64, 64), 64, "batch 1"),
    ((2, 256, 32, 32), 256, "256 channels"),
    ((4, 256, 64, 64), 256, "target, 256 channels"),
]


def _time(fn, min_run_time, threads=1, cpu_time=False):
    kwargs = {"timer": time.thread_time} if cpu_time else {}
    return benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads,
                           **kwargs).blocked_autorange(min_run_time=min_run_time).median


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="shorter timing runs")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time by thread CPU time (forces one thread)")
    parser.add_argument("--no-torchvision", action="store_true",
                        help="skip torchvision (seconds per call at 256 channels)")
    args = parser.parse_args()
    if args.cpu_time:
        args.threads = 1
    mrt = 0.5 if args.quick else 2.0
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"capability {torch.backends.cpu.get_cpu_capability()}, threads {args.threads}, "
          f"{'thread CPU time' if args.cpu_time else 'wall time'}")
    print()
    print("| shape (N,C,H,W) -> O, 3x3 pad 1, mask | pass | pyseg ms | torchvision ms | "
          "conv2d ms | pyseg / tv | pyseg / conv2d |")
    print("|---|---|---|---|---|---|---|")
    for (n, c, h, w), o, label in SHAPES:
        x = torch.randn(n, c, h, w, requires_grad=True)
        wt = torch.randn(o, c, 3, 3, requires_grad=True)
        b = torch.randn(o, requires_grad=True)
        off = torch.randn(n, 18, h, w).mul_(2).requires_grad_()
        m = torch.rand(n, 9, h, w, requires_grad=True)
        ins = [x, off, wt, b, m]

        def ours():
            return pyseg.ops.deform_conv2d(x, off, wt, b, padding=1, mask=m)

        def tv():
            return torchvision.ops.deform_conv2d(x, off, wt, b, padding=1, mask=m)

        def conv():
            return F.conv2d(x, wt, b, padding=1)

        def fb(f, inputs):
            def run():
                out = f()
                torch.autograd.grad(out, inputs, torch.ones_like(out))
            return run

        for pass_name in ("forward", "forward+backward"):
            if pass_name == "forward":
                calls = [ours, tv, conv]
            else:
                calls = [fb(ours, ins), fb(tv, ins), fb(conv, [x, wt, b])]
            t = []
            for i, f in enumerate(calls):
                if i == 1 and args.no_torchvision:
                    t.append(math.nan)
                    continue
                with torch.no_grad() if pass_name == "forward" else torch.enable_grad():
                    t.append(_time(f, mrt, args.threads, args.cpu_time))
            print(f"| {(n, c, h, w)} -> {o} ({label}) | {pass_name} | {t[0] * 1e3:.2f} | "
                  f"{t[1] * 1e3:.2f} | {t[2] * 1e3:.2f} | {t[0] / t[1]:.3f} | "
                  f"{t[0] / t[2]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
