#!/usr/bin/env bash
# One-command check for the day a GPU is available (see benchmarks/RESULTS.md):
#   1. builds pyseg's CUDA kernels for the local GPU's architecture (nvidia-smi compute_cap),
#   2. runs the tests marked `cuda` (every op on the real device against torch/torchvision),
#   3. runs `pyseg bench --device cuda` on the standard shapes (ours vs torch / torchvision),
#   4. writes one JSON (bench results + test summary) and one Markdown table.
# Budget: under 10 minutes on one GPU (build ~4-6 min for one arch, tests ~1 min, bench
# with --min-run-time 0.1 ~2 min).
#
# Usage: bash benchmarks/gpu_check.sh [--dry-run] [--out DIR]
#   --dry-run  on a machine without a GPU: print each step, run what a CPU can (argument
#              and environment checks, test collection, the case list), then stop with a
#              clear message before the CUDA-only parts. Without --dry-run, a missing GPU
#              is an error (exit 2) before anything is built.
# Environment: MAX_JOBS (default 4), GPU_CHECK_MIN_RUN_TIME (default 0.1 s per timing).
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=0
out=benchmarks/gpu_check
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --out) out=$2; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument '$1' (see --help)" >&2; exit 64 ;;
  esac
  shift
done
mkdir -p "$out"
start=$(date +%s)
step() { echo "[gpu_check $(( $(date +%s) - start ))s] $*"; }
no_gpu() {
  if [ "$dry_run" = 1 ]; then
    step "dry run: $1"
    step "would build: FORCE_CUDA=1 PYSEG_EMU=1 TORCH_CUDA_ARCH_LIST=<compute_cap> pip install -e ."
    step "would run: $(python -m pytest -q --collect-only -m cuda tests 2>/dev/null | tail -1) (pytest -m cuda)"
    step "would time: $(pyseg bench --backward --list | wc -l) cases (pyseg bench --device cuda --backward)"
    step "dry run: stopping before the CUDA-only parts"
    exit 0
  fi
  echo "gpu_check: $1" >&2
  exit 2
}

# 1. The GPU and its architecture.
arch=""
if command -v nvidia-smi > /dev/null && nvidia-smi -L > /dev/null 2>&1; then
  arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' ')
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
  step "GPU: $gpu (compute capability $arch)"
fi
python - <<'PY' || no_gpu "torch sees no CUDA device (torch.cuda.is_available() is False)"
import sys, torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"devices {torch.cuda.device_count() if torch.version.cuda else 0}")
sys.exit(0 if torch.cuda.is_available() else 1)
PY
[ -n "$arch" ] || no_gpu "nvidia-smi reports no GPU"

# 2. Build for this architecture only (plus the emulator, so the emulated tests still run).
step "building for sm_${arch/./}"
FORCE_CUDA=1 PYSEG_EMU=1 TORCH_CUDA_ARCH_LIST="$arch" MAX_JOBS="${MAX_JOBS:-4}" \
  python -m pip install -q --no-build-isolation --no-deps -e .
pyseg info

# 3. The tests marked cuda.
step "tests marked cuda"
set +e
python -m pytest -q -m cuda tests --junitxml="$out/cuda_tests.xml" | tee "$out/cuda_tests.txt"
tests_status=${PIPESTATUS[0]}
set -e

# 4. The benchmark on the device, forward and forward + backward.
step "pyseg bench --device cuda"
set +e
pyseg bench --device cuda --backward --min-run-time "${GPU_CHECK_MIN_RUN_TIME:-0.1}" \
  --json "$out/bench_cuda.json"
bench_status=$?
set -e

# 5. One JSON, one Markdown table.
python - "$out" "$tests_status" "$bench_status" <<'PY'
import json, re, sys
from pathlib import Path

import pyseg.bench as bench

out, tests_status, bench_status = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
data = json.loads((out / "bench_cuda.json").read_text()) if (out / "bench_cuda.json").exists() else {}
summary = (out / "cuda_tests.txt").read_text().strip().splitlines()[-1:] or [""]
report = {"tests": {"exit_status": tests_status, "summary": summary[0]},
          "bench_exit_status": bench_status, "bench": data}
(out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
md = [f"# GPU check", "", f"- Tests marked cuda: {summary[0]} (exit {tests_status})", ""]
md.append(bench.markdown(data) if data else f"(no benchmark results; exit {bench_status})")
(out / "gpu_check.md").write_text("\n".join(md) + "\n")
print(f"wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}")
PY
step "done"
[ "$tests_status" = 0 ] && [ "$bench_status" = 0 ]
