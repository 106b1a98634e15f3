"""Benchmark pyseg.ops.interpolate against torch.nn.functional.interpolate (same run).

    python benchmarks/bench_upsample.py [--shape 8 64 128 128] [--min-run-time 1.0]

Prints a markdown table: time per call of each, and ours / torch (lower is better).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch.utils import benchmark

import pyseg


def _case(fn, x, mode, backward, kwargs):
    if not backward:
        return lambda: fn(x, mode=mode, **kwargs)
    xg = x.detach().requires_grad_(True)
    out = fn(xg, mode=mode, **kwargs)
    grad = torch.randn_like(out)

    def run():
        y = fn(xg, mode=mode, **kwargs)
        torch.autograd.grad(y, xg, grad)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", type=int, nargs=4, default=[8, 64, 128, 128])
    parser.add_argument("--scale", type=float, default=2.0)
    parser.add_argument("--min-run-time", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--only", default="", help="substring filter on the case name")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    x = torch.randn(*args.shape)
    cases = []
    for layout in ("nchw", "channels_last"):
        xin = x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x
        for mode in ("nearest", "bilinear", "bicubic"):
            for backward in (False, True):
                kwargs = dict(scale_factor=args.scale)
                if mode != "nearest":
                    kwargs["align_corners"] = False
                name = f"{mode} {'fwd+bwd' if backward else 'fwd'} {layout}"
                cases.append((name, xin, mode, backward, kwargs))

    print(f"shape {tuple(args.shape)} float32, scale {args.scale}, align_corners=False, "
          f"threads {torch.get_num_threads()}, torch {torch.__version__}, pyseg {pyseg.__version__}")
    print()
    print("| case | pyseg (ms) | torch (ms) | pyseg / torch |")
    print("|---|---:|---:|---:|")
    for name, xin, mode, backward, kwargs in cases:
        if args.only and args.only not in name:
            continue
        times = []
        for fn in (pyseg.ops.interpolate, F.interpolate):
            run = _case(fn, xin, mode, backward, kwargs)
            run()  # warm up
            t = benchmark.Timer("run()", globals={"run": run}, num_threads=args.threads)
            times.append(t.blocked_autorange(min_run_time=args.min_run_time).median * 1e3)
        print(f"| {name} | {times[0]:.2f} | {times[1]:.2f} | {times[0] / times[1]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
