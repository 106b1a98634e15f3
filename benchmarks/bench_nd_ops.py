"""pyseg's 1-D / 3-D ops against torch's on the CPU: max_unpool1d/3d, conv_transpose1d/3d,
forward and forward+backward, torch.utils.benchmark's blocked_autorange (median) for both
sides in one run. Prints a Markdown table with ours/torch (below 1: pyseg is faster).

    python benchmarks/bench_nd_ops.py [--min-run-time 0.2]
"""

from __future__ import annotations

import argparse
import platform

import torch
import torch.nn.functional as F
from torch.utils import benchmark

import pyseg


def median(fn, min_run_time: float) -> float:
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median


def cases():
    x3 = torch.randn(2, 16, 8, 16, 16)
    y3, i3 = F.max_pool3d(x3, 2, return_indices=True)
    yield ("max_unpool3d (2,16,4,8,8) k2", lambda f, a: f(a, i3, 2), pyseg.ops.max_unpool3d,
           F.max_unpool3d, [y3])
    x1 = torch.randn(8, 32, 1024)
    y1, i1 = F.max_pool1d(x1, 2, return_indices=True)
    yield ("max_unpool1d (8,32,512) k2", lambda f, a: f(a, i1, 2), pyseg.ops.max_unpool1d,
           F.max_unpool1d, [y1])
    for shape, cin, cout in [((2, 32, 4, 8, 8), 32, 16), ((1, 16, 8, 16, 16), 16, 8)]:
        w = torch.randn(cin, cout, 2, 2, 2)
        yield (f"conv_transpose3d {shape} -> {cout} k2 s2",
               lambda f, a, w=w: f(a, w, stride=2), pyseg.ops.conv_transpose3d, F.conv_transpose3d,
               [torch.randn(shape)])
    w = torch.randn(16, 8, 3, 3, 3)
    yield ("conv_transpose3d (2,16,6,8,8) -> 8 k3 s1 p1",
           lambda f, a: f(a, w, padding=1), pyseg.ops.conv_transpose3d, F.conv_transpose3d,
           [torch.randn(2, 16, 6, 8, 8)])
    w1 = torch.randn(32, 16, 4)
    yield ("conv_transpose1d (8,32,256) -> 16 k4 s2 p1",
           lambda f, a: f(a, w1, stride=2, padding=1), pyseg.ops.conv_transpose1d,
           F.conv_transpose1d, [torch.randn(8, 32, 256)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-run-time", type=float, default=0.2)
    args = parser.parse_args()
    print(f"CPU: {platform.processor() or platform.machine()}, capability "
          f"{torch.backends.cpu.get_cpu_capability()}, threads {torch.get_num_threads()}")
    print("| case | fwd ours ms | fwd torch ms | ours/torch | fwd+bwd ours ms | fwd+bwd torch ms | ours/torch |")
    print("|---|---|---|---|---|---|---|")
    for name, call, ours, ref, inputs in cases():
        row = [name]
        fwd = [median(lambda f=f: call(f, inputs[0]), args.min_run_time) for f in (ours, ref)]
        leaf = inputs[0].clone().requires_grad_()

        def train(f, leaf=leaf):
            call(f, leaf).sum().backward()

        both = [median(lambda f=f: train(f), args.min_run_time) for f in (ours, ref)]
        for a, b in (fwd, both):
            row += [f"{a * 1e3:.3f}", f"{b * 1e3:.3f}", f"{a / b:.2f}"]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
