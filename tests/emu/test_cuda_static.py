"""benchmarks/cuda_static.py's parsing and occupancy model, on inputs whose answers are known
(no nvcc needed: the compile itself is exercised by running the script, see RESULTS.md)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "cuda_static.py"
_spec = importlib.util.spec_from_file_location("cuda_static", _PATH)
assert _spec and _spec.loader
cs = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("cuda_static", cs)  # (dataclasses look their module up there)
_spec.loader.exec_module(cs)

PTXAS = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_ZN5pyseg4gemmEv' for 'sm_80'
ptxas info    : Function properties for _ZN5pyseg4gemmEv
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 172 registers, used 1 barriers, 8320 bytes smem, 400 bytes cmem[0]
ptxas info    : Compiling entry function '_ZN5pyseg3maxEv' for 'sm_80'
ptxas info    : Function properties for _ZN5pyseg3maxEv
    16 bytes stack frame, 12 bytes spill stores, 8 bytes spill loads
ptxas info    : Used 48 registers, used 0 barriers, 392 bytes cmem[0]
"""


def test_parse_ptxas():
    gemm, other = cs.parse_ptxas(PTXAS)
    assert (gemm.mangled, gemm.arch, gemm.registers, gemm.smem) == ("_ZN5pyseg4gemmEv", "80", 172, 8320)
    assert (other.registers, other.smem, other.stack, other.spill_stores, other.spill_loads) == (
        48, 0, 16, 12, 8)


@pytest.mark.parametrize("regs,smem,block,expected", [
    # NVIDIA's occupancy calculator, compute capability 8.0, 256 threads per block:
    (172, 8320, 256, 8 / 64),   # 176 regs/thread allocated: 11 warps fit, one block of 8
    (48, 0, 256, 40 / 64),      # 1536 regs per warp: 42 warps fit, 5 blocks of 8
    (32, 0, 256, 1.0),          # register-limited at exactly 64 warps
    (16, 100 * 1024, 256, 8 / 64),  # shared memory: one 100 KiB block per 164 KiB SM
    (16, 0, 32, 32 / 64),       # 32 blocks per SM at most
])
def test_occupancy_model(regs, smem, block, expected):
    k = cs.Kernel("k", "80", registers=regs, smem=smem, block=block)
    assert k.occupancy() == pytest.approx(expected)


def test_ptx_division_counts():
    ptx = (".visible .entry _Z1av(\n)\n{\n\tdiv.s64 \t%rd1, %rd2, %rd3;\n\trem.u32 \t%r1, %r2, %r3;\n"
           "\tdiv.rn.f32 \t%f1, %f2, %f3;\n}\n"
           ".visible .entry _Z1bv(\n)\n{\n\tadd.s64 \t%rd1, %rd2, %rd3;\n}\n")
    assert cs.ptx_divisions(ptx) == {"_Z1av": (1, 1), "_Z1bv": (0, 0)}


LOOP_PTX = """\
.visible .entry _Z4gemmv(
)
{
\tmov.u64 \t%rd1, 0;
$L__BB0_1:
\tdiv.s64 \t%rd2, %rd3, %rd4;
$L__BB0_2:
\tfma.rn.f32 \t%f1, %f2, %f3, %f1;
\tfma.rn.f32 \t%f1, %f2, %f3, %f1;
\tfma.rn.f32 \t%f1, %f2, %f3, %f1;
\t@%p1 bra \t$L__BB0_2;
\tfma.rn.f32 \t%f1, %f2, %f3, %f1;
\t@%p2 bra \t$L__BB0_1;
\tret;
}
.visible .entry _Z4scanv(
)
{
$L__BB1_1:
\trem.u64 \t%rd2, %rd3, %rd4;
\tmma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 \t{%f1}, {%r1}, {%r2}, {%f1};
\t@%p1 bra \t$L__BB1_1;
\tret;
}
"""


def test_main_loop_is_the_innermost_hot_loop():
    # gemm: the inner loop holds 3 of 4 FMAs (75%): it is the main loop, and the division in
    # the outer loop does not count. scan: no fma, its only loop is the main loop.
    facts = cs.ptx_main_loop_facts(LOOP_PTX)
    assert facts["_Z4gemmv"] == (0, 0)
    assert facts["_Z4scanv"] == (1, 1)


def test_main_loop_instruction_mix():
    # gemm's inner loop: 3 fma + the branch = 4 instructions (the label is none);
    # scan's: rem, mma, branch.
    mix = cs.ptx_main_loop_mix(LOOP_PTX)
    assert mix["_Z4gemmv"] == (0.75, 0.0)
    assert mix["_Z4scanv"] == (0.0, pytest.approx(1 / 3))


A100, H100 = cs.GPUS


def test_estimate_model_by_hand():
    # 32 registers: 100% occupancy, o = 1. A100: an FMA every 2nd issue slot is peak, so a
    # 25% fma share gives m = 0.5: compute 1.95 GFLOP / (19.5 TFLOP/s * 0.5) = 0.2 ms against
    # memory 155.5 MB / 1555 GB/s = 0.1 ms. H100: m = 0.25, 1.95e9 / (67e12 * 0.25) = 0.11642 ms
    # against 155.5e6 / 3350e9 = 0.04642 ms.
    simt = cs.Launch("x", "k", "", flops=1.95e9, bytes=155.5e6)
    k80 = cs.Kernel("m", "80", registers=32, fma_share=0.25)
    k90 = cs.Kernel("m", "90", registers=32, fma_share=0.25)
    assert cs.launch_time(simt, k80, A100) == pytest.approx(0.2e-3)
    assert cs.launch_time(simt, k90, H100) == pytest.approx(1.95e9 / (67e12 * 0.25))
    # 128 registers: 25% occupancy, o = 0.5. Tensor cores, 5% mma share: A100 m = 0.05 * 8 =
    # 0.4, compute 3.12e9 / (312e12 * 0.5 * 0.4) = 0.05 ms; memory 155.5e6 / (1555e9 * 0.5)
    # = 0.2 ms: memory-bound.
    tc = cs.Launch("x", "k", "", flops=3.12e9, bytes=155.5e6, unit="fp16")
    k = cs.Kernel("m", "80", registers=128, mma_share=0.05)
    assert cs.derate(k, A100, "fp16") == (0.5, pytest.approx(0.4))
    assert cs.launch_time(tc, k, A100) == pytest.approx(0.2e-3)
    # No multiply-add in the main loop: bytes alone.
    gather = cs.Kernel("m", "80", registers=32)
    assert cs.launch_time(simt, gather, A100) == pytest.approx(0.1e-3)
    # The reference: 70% of peak, 80% of bandwidth: max(1.95e9 / 13.65e12, 155.5e6 / 1244e9)
    # = max(0.142857, 0.125) ms.
    assert cs.reference_time(cs.Work(1.95e9, 155.5e6), A100) == pytest.approx(1e-3 / 7)


def test_estimate_table_finds_the_kernels():
    # The bicubic case with a gather-like resample kernel (no fma): its bytes, input once
    # (8 * 64 * 128 * 128 floats) and output once (4 times that), over A100's bandwidth:
    # 167.77216 MB / 1555 GB/s = 0.108 ms. Cases whose kernels were not compiled say n/a.
    k = cs.Kernel("m", "80", name="upsample::resample_kernel<false, float, float, int32>",
                  registers=32, extra={"tu": "ops/upsample/upsample_cuda.cu"})
    text = cs.estimate_tables([k])
    assert text.startswith("ESTIMATE")
    row = next(line for line in text.splitlines()
               if line.startswith("| interpolate bicubic") and "A100" in line)
    assert "| 0.108 |" in row
    assert "| n/a |" in next(line for line in text.splitlines()
                             if line.startswith("| deform_conv2d"))


def _kernel(name, **kw):
    k = cs.Kernel("m", "80", name=name, registers=kw.pop("registers", 32), **kw)
    return k


def test_budgets_name_each_violation():
    ok = [_kernel("deform_conv::im2col_kernel<float>"),
          _kernel("gemm_kernel<double, double, false>", registers=228),  # allowed, with reason
          _kernel("gemm_kernel<float, float, true>", registers=128)]
    assert cs.violations(ok) == []
    bad = [_kernel("gemm_kernel<float, float, false>", registers=130),
           _kernel("upsample::nearest_kernel<half>", spill_stores=8, spill_loads=8),
           _kernel("upsample::nearest_kernel<float>", registers=100),  # 25% occupancy
           _kernel("max_unpool::forward_kernel<float>", div64_loop=2)]
    lines = cs.violations(bad)
    assert len(lines) == 4
    assert "130 registers" in lines[0] and "8/8 B spilled" in lines[1]
    assert "25% occupancy" in lines[2] and "2 64-bit div/rem in the main loop" in lines[3]


@pytest.mark.skipif(shutil.which("nvcc") is None and not os.environ.get("CUDA_HOME"),
                    reason="needs nvcc (CI has it)")
def test_kernels_within_budgets():
    # The real compile of every CUDA translation unit for sm_80 (sm_90 is checked by running
    # the script by hand: the budgets do not depend on the arch so far, and the compile costs
    # minutes). Fails naming every kernel over a budget.
    assert cs.main(["--check", "--arch", "80", "--jobs", "2"]) == 0
