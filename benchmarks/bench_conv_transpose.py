"""pyseg.ops.conv_transpose2d vs torch.nn.functional.conv_transpose2d (oneDNN on CPU).

Both run in the same process on the same tensors, timed with
torch.utils.benchmark.Timer.blocked_autorange; the table gives medians and ours/torch.

    python benchmarks/bench_conv_transpose.py [--threads N] [--min-run-time S] [--quick]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch.utils import benchmark

import pyseg

# (label, N, C_in, C_out, H, W, kernel, stride, padding, output_padding)
CASES = [
    ("issue case (8,128,64,64)->64 k3 s2", 8, 128, 64, 64, 64, 3, 2, 1, 1),
    # Decoder of the Oxford Pets encoder-decoder at 200x200 input (encoder strides give
    # 25x25 at the bottleneck): kernel 3, padding 1, output_padding 1 for stride 2.
    ("pets 256->256 s1 @25x25", 4, 256, 256, 25, 25, 3, 1, 1, 0),
    ("pets 256->256 s2 @25x25", 4, 256, 256, 25, 25, 3, 2, 1, 1),
    ("pets 128->128 s2 @50x50", 4, 128, 128, 50, 50, 3, 2, 1, 1),
    ("pets 64->64 s2 @100x100", 4, 64, 64, 100, 100, 3, 2, 1, 1),
]


def measure(stmt: str, env: dict, min_run_time: float) -> float:
    timer = benchmark.Timer(stmt=stmt, globals=env, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--min-run-time", type=float, default=1.0)
    parser.add_argument("--quick", action="store_true", help="only the first case")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = CASES[:1] if args.quick else CASES
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, float32, CPU")
    print("| case | pass | torch (ms) | pyseg (ms) | pyseg/torch |")
    print("|---|---|---:|---:|---:|")
    for label, n, ci, co, h, w, k, s, p, op in cases:
        torch.manual_seed(0)
        x = torch.randn(n, ci, h, w)
        weight = torch.randn(ci, co, k, k) * 0.05
        bias = torch.randn(co)
        out = F.conv_transpose2d(x, weight, bias, s, p, op)
        torch.testing.assert_close(
            pyseg.ops.conv_transpose2d(x, weight, bias, s, p, op), out, rtol=1e-4, atol=1e-4
        )
        grad = torch.randn_like(out)
        xg, wg, bg = (t.clone().requires_grad_() for t in (x, weight, bias))
        env = dict(F=F, pyseg=pyseg, x=x, w=weight, b=bias, xg=xg, wg=wg, bg=bg, g=grad,
                   s=s, p=p, op=op, torch=torch)
        for name, ref_stmt, our_stmt in [
            ("forward", "F.conv_transpose2d(x, w, b, s, p, op)",
             "pyseg.ops.conv_transpose2d(x, w, b, s, p, op)"),
            ("fwd+bwd",
             "torch.autograd.grad(F.conv_transpose2d(xg, wg, bg, s, p, op), (xg, wg, bg), g)",
             ("torch.autograd.grad(pyseg.ops.conv_transpose2d(xg, wg, bg, s, p, op), "
              "(xg, wg, bg), g)")),
        ]:
            ref = measure(ref_stmt, env, args.min_run_time)
            ours = measure(our_stmt, env, args.min_run_time)
            print(f"| {label} | {name} | {ref * 1e3:.1f} | {ours * 1e3:.1f} | {ours / ref:.2f}x |",
                  flush=True)


if __name__ == "__main__":
    main()
