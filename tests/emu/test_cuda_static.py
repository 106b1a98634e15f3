"""benchmarks/cuda_static.py's parsing and occupancy model, on inputs whose answers are known
(no nvcc needed: the compile itself is exercised by running the script, see RESULTS.md)."""

from __future__ import annotations

import importlib.util
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
