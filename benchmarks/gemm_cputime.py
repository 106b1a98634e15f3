"""pyseg's CPU GEMM in GFLOP/s by thread CPU time (one thread): a check that a loaded machine
disturbs less than wall time (benchmarks/gemm_peak.py times wall clock against torch.mm).

    python benchmarks/gemm_cputime.py [label]

Best of 7 rounds of about 2 GFLOP per case; one line per run, so that two builds can be run
alternately (PYTHONPATH pointing at each) and compared. ``PYSEG_CPU_CAPABILITY`` selects the
variant."""
import sys
import time

import torch
from gemm_peak import CASES as PEAK_CASES  # this script's directory is on sys.path

from pyseg import _loader

# gemm_peak.py's cases, plus a C of few rows and one of few columns (edge tiles, B per task).
CASES = PEAK_CASES + [("64 rows", 64, 4096, 576), ("32 columns", 4096, 32, 288)]

torch.set_num_threads(1)
parts = []
for label, m, n, k in CASES:
    torch.manual_seed(0)
    a, b, c = torch.randn(m, k), torch.randn(k, n), torch.empty(m, n)
    calls = max(1, int(2e9 / (2 * m * n * k)))
    best = float("inf")
    for _ in range(7):
        t0 = time.thread_time()
        for _ in range(calls):
            _loader._C._gemm(a, b, c, False, "")
        best = min(best, (time.thread_time() - t0) / calls)
    parts.append(f"{label} ({m}x{n}x{k}): {2 * m * n * k / best / 1e9:.1f} GFLOP/s")
print(sys.argv[1] if len(sys.argv) > 1 else "", " | ".join(parts))
