"""pyseg.ops.conv_transpose3d against torch.nn.functional.conv_transpose3d on the CPU, one
thread, CPU time of this thread (time.thread_time, so that other processes on a loaded machine
do not count), forward and forward+backward, NCDHW and channels_last_3d. The shapes are
`pyseg bench`'s conv_transpose3d case and the layers of a small volumetric U-Net. Outputs and
gradients are checked against torch before timing. Prints a Markdown table; ratio = pyseg /
torch (below 1: pyseg is faster).

    python benchmarks/bench_conv_transpose3d.py [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
import torch.nn.functional as F

import pyseg

# (input shape, C_out, kernel, stride, padding, output_padding)
CASES = [
    ((2, 32, 8, 16, 16), 32, 3, 2, 1, 1),  # pyseg bench's conv_transpose3d case
    ((2, 32, 16, 16, 16), 16, 2, 2, 0, 0),  # U-Net up-convolutions
    ((2, 64, 8, 8, 8), 32, 2, 2, 0, 0),
    ((1, 32, 16, 16, 16), 32, 3, 1, 1, 0),
    ((1, 32, 16, 16, 16), 16, 3, 2, 1, 1),
]


def thread_seconds(fn, repeats: int) -> float:
    """Best of `repeats` runs of fn, each run long enough (>= 0.05 s) to time."""
    fn()
    loops, best = 1, float("inf")
    while True:
        t = time.thread_time()
        for _ in range(loops):
            fn()
        if time.thread_time() - t >= 0.05:
            break
        loops *= 2
    for _ in range(repeats):
        t = time.thread_time()
        for _ in range(loops):
            fn()
        best = min(best, (time.thread_time() - t) / loops)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU: {platform.processor() or platform.machine()}, capability "
          f"{torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}, "
          f"threads {args.threads}, thread_time (ms)\n")
    print("| case | layout | fwd pyseg | fwd torch | ratio | f+b pyseg | f+b torch | ratio |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for shape, cout, k, s, p, op in CASES:
        gen = torch.Generator().manual_seed(0)
        x0 = torch.randn(*shape, generator=gen)
        w = torch.randn(shape[1], cout, k, k, k, generator=gen) / (shape[1] * k**3) ** 0.5
        b = torch.randn(cout, generator=gen)
        kw = dict(stride=s, padding=p, output_padding=op)
        for layout in (torch.contiguous_format, torch.channels_last_3d):
            x = x0.contiguous(memory_format=layout).requires_grad_()
            wr, br = w.clone().requires_grad_(), b.clone().requires_grad_()
            ref = F.conv_transpose3d(x, wr, br, **kw)
            gy = torch.randn(ref.shape, generator=gen).contiguous(memory_format=layout)
            out = pyseg.ops.conv_transpose3d(x, wr, br, **kw)
            torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
            for ours, theirs in zip(torch.autograd.grad(out, (x, wr, br), gy),
                                    torch.autograd.grad(ref, (x, wr, br), gy)):
                torch.testing.assert_close(ours, theirs, rtol=1e-3, atol=1e-3)
            times = []
            for f in (pyseg.ops.conv_transpose3d, F.conv_transpose3d):
                with torch.no_grad():
                    fwd = thread_seconds(lambda f=f: f(x, w, b, **kw), args.repeats)

                def step(f=f):
                    o = f(x, wr, br, **kw)
                    torch.autograd.grad(o, (x, wr, br), gy)

                times.append((fwd, thread_seconds(step, args.repeats)))
            (pf, pb), (tf, tb) = times
            name = f"{shape}->{cout} k{k} s{s} p{p} op{op}"
            lay = "NCDHW" if layout is torch.contiguous_format else "NDHWC"
            print(f"| {name} | {lay} | {pf * 1e3:.2f} | {tf * 1e3:.2f} | {pf / tf:.2f} "
                  f"| {pb * 1e3:.2f} | {tb * 1e3:.2f} | {pb / tb:.2f} |", flush=True)


if __name__ == "__main__":
    main()
