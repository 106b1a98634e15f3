"""deform_conv2d vs torchvision.ops.deform_conv2d (and F.conv2d, the floor) on the CPU.

    python benchmarks/bench_deform_conv.py [--quick]

Prints a Markdown table: median times and ratios ours / torchvision and ours / conv2d,
forward and forward+backward, measured in one run with torch.utils.benchmark.
"""

from __future__ import annotations

import argparse

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
]


def _time(fn, min_run_time):
    return benchmark.Timer(stmt="fn()", globals={"fn": fn}).blocked_autorange(
        min_run_time=min_run_time).median


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="shorter timing runs")
    args = parser.parse_args()
    mrt = 0.5 if args.quick else 2.0
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"threads {torch.get_num_threads()}")
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
                with torch.no_grad():
                    t = [_time(f, mrt) for f in (ours, tv, conv)]
            else:
                t = [_time(fb(ours, ins), mrt), _time(fb(tv, ins), mrt),
                     _time(fb(conv, [x, wt, b]), mrt)]
            print(f"| {(n, c, h, w)} -> {o} ({label}) | {pass_name} | {t[0] * 1e3:.2f} | "
                  f"{t[1] * 1e3:.2f} | {t[2] * 1e3:.2f} | {t[0] / t[1]:.3f} | "
                  f"{t[0] / t[2]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
