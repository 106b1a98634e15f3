"""Peak FMA throughput of this machine and pyseg's GEMM against it (and against torch.mm).

Peak: every thread runs 24 independent chains of vector FMAs (csrc/common/gemm_cpu_kernel.cpp,
``fma_probe``) compiled for the capability; flops / wall time. GEMM: ``pyseg._C._gemm`` and
``torch.mm`` (MKL here) on the same float32 matrices, timed with torch.utils.benchmark in one
run; the conv-shaped cases are the GEMMs of the zoo's transposed convolutions (M x N x K).

    python benchmarks/gemm_peak.py [--threads 2] [--capability avx2] [--min-run-time 1]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch.utils import benchmark

import pyseg
from pyseg import _loader
from pyseg.bench.report import cpu_model

C = _loader._C

# (label, M, N, K): square, then conv-shaped (output channels x pixels x channels*taps).
CASES = [
    ("square 1024", 1024, 1024, 1024),
    ("pets s1 256ch @25x25 (one image)", 256, 625, 2304),
    ("pets s2 phase 128ch @50x50", 128, 2500, 512),
    ("deconvnet 512ch k3 @8x8 (batch 2)", 512, 128, 4608),
    ("deconvnet fc6 7x7 4096->512 @1x1 (batch 2)", 25088, 2, 4096),
    ("unet k2s2 32->16 phase @32x32 (batch 8)", 8192, 16, 32),
]


def peak(seconds: float = 0.5) -> float:
    """Best of 5 probes, in GFLOP/s."""
    iters = 1 << 16
    flops, _ = C._fma_probe(iters)
    t0 = time.perf_counter()
    C._fma_probe(iters)
    dt = time.perf_counter() - t0
    iters = max(1, int(iters * seconds / max(dt, 1e-6)))
    best = 0.0
    for _ in range(5):
        t0 = time.perf_counter()
        flops, _ = C._fma_probe(iters)
        best = max(best, flops / (time.perf_counter() - t0) / 1e9)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--capability", default=None, help="default, avx2 or avx512")
    parser.add_argument("--min-run-time", type=float, default=1.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.capability:
        C._set_cpu_capability(args.capability)
    facts = pyseg.info()
    print(f"CPU {cpu_model()}; pyseg capability {facts['cpu_capability']}; torch "
          f"{torch.__version__} capability {torch.backends.cpu.get_cpu_capability()}; "
          f"threads {args.threads}; load average {os.getloadavg()[0]:.2f}")
    p = peak()
    print(f"peak FMA throughput (fma_probe, {args.threads} threads): {p:.0f} GFLOP/s")
    print("| GEMM (M x N x K) | torch.mm (ms) | pyseg (ms) | pyseg/torch | torch GFLOP/s | "
          "pyseg GFLOP/s | pyseg % of peak |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, m, n, k in CASES:
        torch.manual_seed(0)
        a, b = torch.randn(m, k), torch.randn(k, n)
        out = torch.empty(m, n)
        C._gemm(a, b, out, False, "")
        torch.testing.assert_close(out, a @ b, rtol=1e-3, atol=1e-3)
        env = {"torch": torch, "C": C, "a": a, "b": b, "out": out}
        t_ref = benchmark.Timer("torch.mm(a, b, out=out)", globals=env,
                                num_threads=args.threads).blocked_autorange(
            min_run_time=args.min_run_time).median
        t_ours = benchmark.Timer("C._gemm(a, b, out, False, '')", globals=env,
                                 num_threads=args.threads).blocked_autorange(
            min_run_time=args.min_run_time).median
        flops = 2.0 * m * n * k
        print(f"| {label} ({m}x{n}x{k}) | {t_ref * 1e3:.3f} | {t_ours * 1e3:.3f} | "
              f"{t_ours / t_ref:.2f} | {flops / t_ref / 1e9:.0f} | {flops / t_ours / 1e9:.0f} | "
              f"{100 * flops / t_ours / 1e9 / p:.0f}% |")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
