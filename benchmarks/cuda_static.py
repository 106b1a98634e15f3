"""Static report on pyseg's CUDA kernels, from the compiler alone (no GPU needed).

Compiles every CUDA translation unit (``csrc/ops/*/*_cuda.cu``) with nvcc for sm_80 and
sm_90 with ``-Xptxas -v`` and prints, per kernel instantiation and arch: registers, static
shared memory, spill stores / loads, theoretical occupancy at the kernel's launch
configuration, and the integer divisions it contains.

Integer divisions are read from the PTX of the same compile (``div`` / ``rem`` instructions
per entry function, 64-bit and 32-bit counted apart): ptxas lowers a 64-bit division to a
call of its division subroutine and a 32-bit one to an inline sequence. NVVM guards each
64-bit division by a 32-bit one taken when both operands fit, so every 64-bit division also
counts once in the 32-bit column; a kernel with 0 in the 64-bit column calls no division
routine. When ``cuobjdump`` is found (see below), the SASS is read too and the calls of
subroutines are counted (column ``div calls``: 64-bit division and float-division slow
paths); without it the column is ``-``.

Occupancy: resident warps per SM over the SM's maximum (64), limited by registers (64K per
SM, allocated per warp in units of 256), static shared memory (sm_80: 164 KiB per SM,
sm_90: 228 KiB, 1 KiB reserved per block) and 32 blocks per SM; block sizes are those of
the launch code (256 threads for every kernel today, read from the sources below).

Main loop: the innermost loop (a backward branch in the PTX) that holds at least 75% of
the kernel's multiply-add instructions (``fma``, ``mma``, ``wmma.mma``); a kernel without
them (elementwise, gathers) has its outermost loop, the grid-stride loop, as main loop.
Columns ``div 64 loop`` (PTX 64-bit div/rem in the main loop) and ``mma`` (tensor-core
instructions: ``mma`` / ``wmma.mma`` in the PTX, ``HMMA`` in the SASS when cuobjdump is found)
come from the same PTX. cuobjdump is looked for next to nvcc and in the ``nvidia/cu13/bin``
of the Python packages (``pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm``).

Column ``loop fma/mma %``: the share of the main loop's PTX instructions that are ``fma`` /
tensor-core ``mma`` (PTX, not SASS: address arithmetic that ptxas folds still counts).

``--check`` enforces the budgets of ``BUDGETS`` below and exits 1 naming every kernel over
one (``ALLOWED`` lists the exceptions, each with its reason).

``--estimate`` prints ESTIMATED times on A100 and H100 of a few benchmark shapes (alone, or
after the table with ``--markdown``), ours and torch's, from a roofline model derated by the occupancy and the
main-loop mix above (see "--estimate" below for the model and what it ignores).

Usage::

    python benchmarks/cuda_static.py [--src csrc] [--arch 80 --arch 90] [--jobs 2]
        [--markdown] [--tu max_unpool] [--check] [--estimate]

``--src`` points at another checkout's ``csrc`` (to compare before / after a change).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Per-SM limits of compute capability 8.0 and 9.0 (CUDA C Programming Guide, table of
# technical specifications per compute capability).
SM_LIMITS = {
    "80": dict(regs=65536, warps=64, blocks=32, smem=164 * 1024, reg_unit=256),
    "90": dict(regs=65536, warps=64, blocks=32, smem=228 * 1024, reg_unit=256),
}
SMEM_RESERVED_PER_BLOCK = 1024

# What --check enforces, per kernel instantiation and arch.
BUDGETS = {
    "spills": "no spill stores or loads in a float / half / bfloat16 kernel",
    "div64_loop": "no 64-bit integer division (div/rem .s64/.u64) in the main loop",
    "gemm_registers": "a GEMM uses at most 128 registers (two 256-thread blocks per SM)",
    "occupancy": "every other kernel reaches at least 50% theoretical occupancy",
    "mma": "the half / bfloat16 GEMMs use tensor-core instructions (HMMA in the SASS when "
           "cuobjdump is found, mma / wmma.mma in the PTX otherwise)",
    "tc_twin": "every SIMT half / bfloat16 GEMM (the fallback below sm_80) has a tensor-core "
               "twin gemm_tc_kernel of the same types in its translation unit",
}

# Exceptions: (budget, regular expression on the short kernel name) -> reason.
ALLOWED: dict[tuple[str, str], str] = {
    ("gemm_registers", r"^gemm_(conv_)?kernel<double,"):
        "double accumulators take two registers each: the 8x4 sub-tile alone is 64, and at "
        "128 registers the kernel spills 376 B; one block per SM for double",
    ("mma", r"^gemm_(conv_)?kernel<(half|bf16),"):
        "the SIMT FMA fallback that launch_gemm runs below sm_80 (the kernel choice is made on "
        "the host, so it is compiled for every arch); sm_80+ launches gemm_tc_kernel, whose "
        "HMMA the tc_twin budget requires",
    ("div64_loop",
     r"^deform_conv::(im2col|col2im_atomic|col2im_plane|coord_grad)_kernel<\w+, int64>$"):
        "the int64 index variant, launched only when an offset or size exceeds int32 "
        "(deform_conv_launch.h: index_bound); the int32 variant that every smaller call runs "
        "has none",
    ("occupancy", r"^deform_conv::coord_grad_kernel<double, "):
        "the double coordinate gradient: 72 registers on sm_80 for int32 indices, 80 for "
        "int64 (38%); float / half / bf16 reach 50% or more",
    ("div64_loop", r"^max_unpool::\w+<.*int64>$"):
        "the int64 index variant, launched only when an offset or the grid exceeds int32 "
        "(fits_int32); the int32 variant that every smaller call runs has none",
    ("div64_loop", r"^upsample::nails_table_kernel<"):
        "builds the per-axis index table (out_h + out_w entries) once per call: one division "
        "per table entry, not per output element",
    ("div64_loop", r"^conv_transpose::implicit_gemm_kernel<"):
        "conv_transpose2d's int64 fallback, launched only when a size exceeds the 32-bit index "
        "arithmetic of the GEMM core (gemm_conv_fits); every smaller call runs "
        "gemm_(tc_)conv_kernel, which has none",
    ("mma", r"^conv_transpose::implicit_gemm_kernel<(half|bf16),"):
        "conv_transpose2d's int64 fallback (SIMT FMA); the 32-bit path runs on tensor cores "
        "(gemm_tc_conv_kernel)",
    ("div64_loop", r"^conv_transpose3d::(col2vol|vol2col)_kernel<\w+, int64>$"):
        "the int64 index variant, launched only when a size or the tap arithmetic exceeds "
        "int32 (conv_transpose3d_launch.h: index_bound); the int32 variant has none",
    ("div64_loop", r"^grid_sample::(forward|backward)_kernel<\d, double, double>"):
        "the double kernels split the flat index with one 64-bit division per point; the "
        "float / half / bf16 kernels do not",
    ("occupancy", r"^grid_sample::backward_kernel<\d, double, double>"):
        "double coordinates and gradients: 96 registers for 3-D (25%), 80 for 2-D (38%); "
        "float / half / bf16 reach 50%",
    ("occupancy", r"^grid_sample::forward_kernel<3, double, double>"):
        "double 3-D sampling (eight corners, double weights and coordinates): 72 registers on "
        "sm_90 (38%), within 64 on sm_80; float / half / bf16 reach 50% on both",
    ("div64_loop", r"^grid_sample::finalize_kernel<.*, int64>$"):
        "the int64 index variant of the fixed-point to floating-point pass, launched only "
        "when grad_input has 2^31 elements or more (fits_int32); the int32 variant has none",
    ("div64_loop", r"^upsample::forward_table_kernel<"):
        "builds the per-axis tap table (out entries per axis) once per call: one division "
        "per table entry, not per output element",
}

GEMM_KERNELS = re.compile(
    r"(^|::)(gemm_kernel|gemm_tc_kernel|gemm_conv_kernel|gemm_tc_conv_kernel|implicit_gemm_kernel)<")
TENSOR_CORE_GEMM = re.compile(r"(^|::)gemm_tc_(conv_)?kernel<")
LOW_PRECISION = re.compile(r"<(float|half|bf16)\b")


def find_nvcc() -> Path:
    """The real nvcc: CUDA_HOME, else the toolkit a wrapper script on PATH runs."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var) and (Path(os.environ[var]) / "bin" / "nvcc").is_file():
            return Path(os.environ[var]) / "bin" / "nvcc"
    nvcc = shutil.which("nvcc")
    if nvcc:
        real = Path(nvcc).resolve()
        head = real.read_bytes()[:8192]
        if head.startswith(b"#!"):
            m = re.search(rb"(/[^\s\"'$]+/bin/nvcc)", head)
            if m:
                return Path(m.group(1).decode())
        return real
    for p in sorted(Path("/usr/local").glob("cuda*"), reverse=True):
        if (p / "bin" / "nvcc").is_file():
            return p / "bin" / "nvcc"
    raise SystemExit("cuda_static: no nvcc found (set CUDA_HOME)")


def block_sizes(src: Path) -> dict[str, int]:
    """Threads per block of each kernel, by name, from the launch code's constants."""
    def const(path: Path, name: str, default: int) -> int:
        m = re.search(rf"constexpr int {name} = (\d+)", path.read_text()) if path.exists() else None
        return int(m.group(1)) if m else default

    common = const(src / "common" / "launch_utils.h", "kThreadsPerBlock", 256)
    gemm = const(src / "common" / "gemm_kernels.cuh", "kGemmThreads", 256)
    ct_path = src / "ops" / "conv_transpose" / "conv_transpose_kernels.cuh"
    ct = const(ct_path, "kTileThreads", const(ct_path, "kGemmThreads", 256))
    return {"__default__": common, "gemm_kernel": gemm, "gemm_tc_kernel": gemm,
            "gemm_conv_kernel": gemm, "gemm_tc_conv_kernel": gemm, "implicit_gemm_kernel": ct,
            "bias_grad_kernel": ct, "trap_on_error_kernel": 1}


@dataclass
class Kernel:
    mangled: str
    arch: str
    name: str = ""
    registers: int = 0
    smem: int = 0
    stack: int = 0
    spill_stores: int = 0
    spill_loads: int = 0
    div64: int = 0
    div32: int = 0
    div_calls: int | None = None
    div64_loop: int = 0
    mma: int = 0
    hmma: int | None = None
    fma_share: float = 0.0  # fma / all PTX instructions of the main loop
    mma_share: float = 0.0  # mma.sync / wmma.mma / all PTX instructions of the main loop
    block: int = 256
    extra: dict = field(default_factory=dict)

    def occupancy(self) -> float:
        lim = SM_LIMITS[self.arch]
        warps = -(-self.block // 32)
        regs_per_warp = -(-max(self.registers, 1) * 32 // lim["reg_unit"]) * lim["reg_unit"]
        by_regs = (lim["regs"] // regs_per_warp) // warps
        by_smem = lim["smem"] // (self.smem + SMEM_RESERVED_PER_BLOCK)
        by_warps = lim["warps"] // warps
        blocks = min(by_regs, by_smem, by_warps, lim["blocks"])
        return blocks * warps / lim["warps"]


def demangle(names: list[str]) -> dict[str, str]:
    tool = shutil.which("c++filt")
    if not tool or not names:
        return {n: n for n in names}
    out = subprocess.run([tool], check=False, input="\n".join(names), capture_output=True, text=True).stdout
    return dict(zip(names, out.splitlines()))


def short(name: str) -> str:
    """`void pyseg::op::kernel<float, int>(args)` -> `op::kernel<float, int>`."""
    name = name.split("(")[0].removeprefix("void ").removeprefix("pyseg::")
    return name.replace("c10::Half", "half").replace("c10::BFloat16", "bf16").replace(
        "long", "int64").replace("int>", "int32>").replace("int, ", "int32, ")


PTXAS_ENTRY = re.compile(r"Compiling entry function '(\S+)' for 'sm_(\d+)'")
PTXAS_STACK = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
PTXAS_USED = re.compile(r"Used (\d+) registers(?:.*?, (\d+) bytes smem)?")


def parse_ptxas(text: str) -> list[Kernel]:
    kernels: list[Kernel] = []
    current: Kernel | None = None
    for line in text.splitlines():
        if m := PTXAS_ENTRY.search(line):
            current = Kernel(m.group(1), m.group(2))
            kernels.append(current)
        elif current and (m := PTXAS_STACK.search(line)):
            current.stack, current.spill_stores, current.spill_loads = map(int, m.groups())
        elif current and (m := PTXAS_USED.search(line)):
            current.registers = int(m.group(1))
            current.smem = int(m.group(2) or 0)
    return kernels


PTX_FUNCTION_START = re.compile(r"^[ \t]*(?:\.visible[ \t]+|\.weak[ \t]+)?(?:\.entry|\.func)\b|^// \.globl",
                                re.MULTILINE)


def ptx_entries(ptx: str) -> list[tuple[str, str]]:
    """(name, body) of every .entry of a PTX file: the text up to the next function. (Not up
    to the first line holding "}": an inline asm block, such as cvt.rna.tf32's, ends with one.)"""
    starts = [m.start() for m in PTX_FUNCTION_START.finditer(ptx)] + [len(ptx)]
    out = []
    for m in re.finditer(r"\.entry (\S+)\(", ptx):
        end = next(s for s in starts if s > m.start())
        out.append((m.group(1), ptx[m.end():end]))
    return out


def ptx_divisions(ptx: str) -> dict[str, tuple[int, int]]:
    """(64-bit, 32-bit) integer div/rem instructions per .entry of a PTX file."""
    out: dict[str, tuple[int, int]] = {}
    for name, body in ptx_entries(ptx):
        d64 = len(re.findall(r"\b(?:div|rem)\.[su]64\b", body))
        d32 = len(re.findall(r"\b(?:div|rem)\.[su]32\b", body))
        out[name] = (d64, d32)
    return out


FMA_PTX = re.compile(r"^\s*(?:@!?%p\d+\s+)?(?:fma|mma|wmma\.mma)\.")
DIV64_PTX = re.compile(r"\b(?:div|rem)\.[su]64\b")
MMA_PTX = re.compile(r"^\s*(?:@!?%p\d+\s+)?(?:mma\.sync|wmma\.mma\.sync)\b")


def ptx_loops(body: str) -> list[tuple[int, int]]:
    """(first line, last line) of every loop of one PTX function: a branch to a label above."""
    lines = body.splitlines()
    labels: dict[str, int] = {}
    loops = []
    for i, line in enumerate(lines):
        if m := re.match(r"^(\$\w+):", line.strip()):
            labels[m.group(1)] = i
        elif (m := re.search(r"\bbra(?:\.uni)?\s+(\$\w+);", line)) and m.group(1) in labels:
            loops.append((labels[m.group(1)], i))
    return loops


def main_loop(body: str) -> tuple[int, int] | None:
    """The main loop of a PTX function body (see the module's docstring), or None."""
    lines = body.splitlines()
    loops = ptx_loops(body)
    if not loops:
        return None

    def fmas(loop: tuple[int, int]) -> int:
        return sum(1 for line in lines[loop[0]:loop[1] + 1] if FMA_PTX.match(line))

    total = sum(1 for line in lines if FMA_PTX.match(line))
    if total == 0:
        return max(loops, key=lambda lp: lp[1] - lp[0])
    hot = [lp for lp in loops if fmas(lp) >= 0.75 * total]
    return min(hot, key=lambda lp: lp[1] - lp[0]) if hot else max(loops, key=fmas)


def ptx_main_loop_facts(ptx: str) -> dict[str, tuple[int, int]]:
    """(64-bit div/rem in the main loop, tensor-core instructions) per .entry of a PTX file."""
    out: dict[str, tuple[int, int]] = {}
    for name, body in ptx_entries(ptx):
        loop = main_loop(body)
        lines = body.splitlines()
        in_loop = lines[loop[0]:loop[1] + 1] if loop else []
        out[name] = (sum(len(DIV64_PTX.findall(line)) for line in in_loop),
                           sum(1 for line in lines if MMA_PTX.match(line)))
    return out


FMA_ONLY_PTX = re.compile(r"^\s*(?:@!?%p\d+\s+)?fma\.")


def is_instruction(line: str) -> bool:
    """A PTX instruction line (not a label, directive, comment or brace)."""
    t = line.strip()
    return t.endswith(";") and not t.startswith((".", "//", "$", "{", "}"))


def ptx_main_loop_mix(ptx: str) -> dict[str, tuple[float, float]]:
    """(fma share, mma share) of the main loop's PTX instructions per .entry: the
    instruction mix that the --estimate model derates the arithmetic peak with (0, 0 for a
    kernel without loops)."""
    out: dict[str, tuple[float, float]] = {}
    for name, body in ptx_entries(ptx):
        loop = main_loop(body)
        lines = body.splitlines()[loop[0]:loop[1] + 1] if loop else []
        instructions = [line for line in lines if is_instruction(line)]
        n = max(len(instructions), 1)
        out[name] = (sum(1 for line in instructions if FMA_ONLY_PTX.match(line)) / n,
                     sum(1 for line in instructions if MMA_PTX.match(line)) / n)
    return out


def find_cuobjdump(nvcc: Path) -> Path | None:
    """cuobjdump next to nvcc, else the one of the nvidia-cuda-cuobjdump wheel."""
    if (nvcc.parent / "cuobjdump").is_file():
        return nvcc.parent / "cuobjdump"
    try:
        import nvidia  # type: ignore[import-not-found]
    except ImportError:
        return None
    for root in getattr(nvidia, "__path__", []):
        for cand in sorted(Path(root).glob("cu*/bin/cuobjdump"), reverse=True):
            return cand
    return None


def sass_facts(cuobjdump: Path, cubin: Path) -> dict[str, tuple[int, int]]:
    """(calls of a subroutine, HMMA instructions) per function of a cubin. ptxas appends
    its subroutines (64-bit integer division, float division slow paths) after the kernel's
    last ``EXIT``; a ``CALL`` to an address before that is a loop-exit idiom, not counted."""
    env = dict(os.environ, PATH=f"{cuobjdump.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    text = subprocess.run([str(cuobjdump), "-sass", str(cubin)], check=False, capture_output=True,
                          text=True, env=env).stdout
    out: dict[str, tuple[int, int]] = {}
    for part in text.split("Function : ")[1:]:
        name = part.split()[0]
        exits = [int(m.group(1), 16)
                 for m in re.finditer(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?P\d+\s+)?EXIT\b", part)]
        last_exit = max(exits, default=0)
        calls = sum(1 for m in re.finditer(r"\bCALL\.\S+\s+0x([0-9a-f]+)", part)
                    if int(m.group(1), 16) > last_exit)
        out[name] = (calls, len(re.findall(r"\bHMMA\.", part)))
    return out


def compile_tu(nvcc: Path, src: Path, tu: Path, archs: list[str], tmp: Path) -> list[Kernel]:
    import torch.utils.cpp_extension as ce

    includes = [str(src)] + ce.include_paths() + [str(nvcc.parent.parent / "include"),
                                                  sysconfig.get_paths()["include"]]
    flags = ["-O3", "-std=c++20", "--expt-relaxed-constexpr", "-DPYSEG_WITH_CUDA",
             "-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__",
             "-D__CUDA_NO_BFLOAT16_CONVERSIONS__", "-D__CUDA_NO_HALF2_OPERATORS__",
             "-DTORCH_API_INCLUDE_EXTENSION_H", "-DTORCH_EXTENSION_NAME=_C",
             "-D_GLIBCXX_USE_CXX11_ABI=1", "-Xcompiler", "-fPIC"]
    flags += [f"-I{i}" for i in includes]
    kernels: list[Kernel] = []
    cuobjdump = find_cuobjdump(nvcc)
    for arch in archs:
        stem = tmp / f"{tu.stem}_sm{arch}"
        gen = [f"-gencode=arch=compute_{arch},code=sm_{arch}"]
        keep = tmp / f"{tu.stem}_sm{arch}_keep"
        keep.mkdir()
        # --keep leaves the PTX that ptxas compiled: one front-end pass gives both.
        res = subprocess.run([str(nvcc), *flags, *gen, "-Xptxas", "-v", "-cubin", "--keep",
                              f"--keep-dir={keep}", "-o", f"{stem}.cubin", str(tu)],
                             check=False, capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(f"cuda_static: nvcc failed on {tu}:\n{res.stderr[-4000:]}")
        found = [k for k in parse_ptxas(res.stderr) if k.arch == arch]
        divs: dict[str, tuple[int, int]] = {}
        facts: dict[str, tuple[int, int]] = {}
        mix: dict[str, tuple[float, float]] = {}
        for ptx in keep.glob("*.ptx"):
            text = ptx.read_text()
            divs.update(ptx_divisions(text))
            facts.update(ptx_main_loop_facts(text))
            mix.update(ptx_main_loop_mix(text))
        sass = sass_facts(cuobjdump, Path(f"{stem}.cubin")) if cuobjdump else {}
        for k in found:
            k.div64, k.div32 = divs.get(k.mangled, (0, 0))
            k.div64_loop, k.mma = facts.get(k.mangled, (0, 0))
            k.fma_share, k.mma_share = mix.get(k.mangled, (0.0, 0.0))
            if sass:
                k.div_calls, k.hmma = sass.get(k.mangled, (0, 0))
            k.extra["tu"] = tu.relative_to(src).as_posix()
        kernels += found
    return kernels


def allowed(budget: str, name: str) -> str | None:
    for (b, pattern), reason in ALLOWED.items():
        if b == budget and re.search(pattern, name):
            return reason
    return None


def violations(kernels: list[Kernel]) -> list[str]:
    """Every budget a kernel breaks and that ALLOWED does not excuse, one line each."""
    out = []
    present = {(k.name, k.arch, k.extra.get("tu")) for k in kernels}
    for k in kernels:
        gemm = bool(GEMM_KERNELS.search(k.name))
        broken = []
        if LOW_PRECISION.search(k.name) and (k.spill_stores or k.spill_loads):
            broken.append(("spills", f"{k.spill_stores}/{k.spill_loads} B spilled"))
        if k.div64_loop:
            broken.append(("div64_loop", f"{k.div64_loop} 64-bit div/rem in the main loop"))
        if gemm and k.registers > 128:
            broken.append(("gemm_registers", f"{k.registers} registers"))
        if not gemm and k.name != "trap_on_error_kernel<int64>" and k.occupancy() < 0.5:
            broken.append(("occupancy", f"{k.occupancy():.0%} occupancy"))
        tensor_cores = k.hmma if k.hmma is not None else k.mma
        if gemm and (re.search(r"<(half|bf16),", k.name) or TENSOR_CORE_GEMM.search(k.name)) \
                and not tensor_cores:
            broken.append(("mma", "no tensor-core instruction"))
        if m := re.search(r"(^|::)gemm_(conv_)?kernel<(half|bf16),", k.name):
            twin = k.name.replace(f"gemm_{m.group(2) or ''}kernel<",
                                  f"gemm_tc_{m.group(2) or ''}kernel<", 1)
            twin = re.sub(r", (true|false)>$", ">", twin)
            if (twin, k.arch, k.extra.get("tu")) not in present:
                broken.append(("tc_twin", f"no {twin} in {k.extra.get('tu')}"))
        for budget, what in broken:
            if not allowed(budget, k.name):
                out.append(f"{k.name} sm_{k.arch}: {what} ({BUDGETS[budget]})")
    return out


# ---- --estimate: a roofline model of the benchmark shapes on A100 / H100 ------------------
#
# ESTIMATES, not measurements. Per kernel launch of an op at a benchmark shape (plugins/
# benchmarks.py, `pyseg bench --list`), the FLOPs and DRAM bytes are counted from the shape
# (the counts are in the case functions below), and
#
#     time = max(FLOPs / (peak x o x m), bytes / (bandwidth x o))
#
# o = min(1, theoretical occupancy / OCCUPANCY_ENOUGH): below half the SM's warps, a kernel is
#     taken to hide memory and pipeline latency in proportion to its resident warps.
# m = the main loop's instruction mix (from the report): fma share x issue slots per FMA at
#     peak (FP32 SIMT: A100 has 16 FP32 lanes per scheduler, so an FMA every 2nd issue slot
#     is peak; H100 has 32, every slot), or mma share x issue slots per mma at the tensor
#     cores' peak (mma.sync m16n8k16: A100 one per 8 slots of an SM's 4 schedulers, H100 one
#     per 4), capped at 1. A kernel whose main loop has no multiply-add (gathers, scatters,
#     elementwise) is modeled by its bytes alone.
# peak: FP32 for the FMA kernels, FP16 / BF16 or TF32 dense tensor-core peak for the
#     tensor-core kernels (half / bfloat16, and float when TF32 is allowed).
#
# The reference (torch / cuDNN / cuBLAS / torchvision) gets the same model with fixed
# efficiencies instead of o and m: TORCH_COMPUTE_EFFICIENCY of the peak it would use (cuDNN
# convolutions run float32 as TF32 by default: torch.backends.cudnn.allow_tf32 is True;
# cuBLAS matmuls do not: torch.backends.cuda.matmul.allow_tf32 is False) and
# TORCH_MEMORY_EFFICIENCY of the bandwidth, on the bytes of its algorithm (an ideal single
# pass for cuDNN and the upsampling kernels; the same columns as ours for torchvision's
# deform_conv2d, which is im2col + GEMM + col2im as well).
#
# Ignored: L2 hits beyond "each operand once per launch", caches of gathered taps, launch
# overhead and host time, tail effects of partial waves, clock behaviour under load, the
# cost of atomics beyond their bytes, allocator and fill kernels of torch itself, and that
# mma.sync does not reach H100's wgmma peak (the H100 tensor-core rows are optimistic).


@dataclass(frozen=True)
class Gpu:
    name: str
    arch: str           # the report's sm column whose kernel facts apply
    bandwidth: float    # DRAM, bytes/s
    peaks: dict         # FLOP/s per unit: fp32 (FMA), tf32 and fp16 (dense tensor cores)
    fma_slots: int      # issue slots per FP32 FMA at peak
    mma_slots: int      # issue slots per mma.sync at the tensor-core peak


# NVIDIA's public specifications (A100 40GB SXM; H100 SXM5, dense tensor-core numbers).
GPUS = [
    Gpu("A100 SXM 40GB", "80", 1555e9, {"fp32": 19.5e12, "tf32": 156e12, "fp16": 312e12}, 2, 8),
    Gpu("H100 SXM", "90", 3350e9, {"fp32": 67e12, "tf32": 495e12, "fp16": 990e12}, 1, 4),
]
OCCUPANCY_ENOUGH = 0.5
TORCH_COMPUTE_EFFICIENCY = 0.7
TORCH_MEMORY_EFFICIENCY = 0.8


@dataclass(frozen=True)
class Launch:
    """One kernel launch (or a group of identical ones) of our op: `kernel` is a regular
    expression on the report's short kernel name, `tu` the translation unit to take it from."""
    what: str
    kernel: str
    tu: str
    flops: float
    bytes: float
    unit: str = "fp32"


@dataclass(frozen=True)
class Work:
    """One pass of the reference's algorithm: FLOPs, bytes and the peak it runs at."""
    flops: float
    bytes: float
    unit: str = "fp32"


@dataclass(frozen=True)
class Case:
    name: str
    dtype: str
    ours: list
    reference: list
    reference_name: str


def derate(kernel: Kernel, gpu: Gpu, unit: str) -> tuple[float, float]:
    """(o, m) of the model for one kernel on one GPU."""
    o = min(1.0, kernel.occupancy() / OCCUPANCY_ENOUGH)
    share, slots = (kernel.fma_share, gpu.fma_slots) if unit == "fp32" else (
        kernel.mma_share, gpu.mma_slots)
    return o, min(1.0, share * slots)


def launch_time(launch: Launch, kernel: Kernel, gpu: Gpu) -> float:
    """Seconds for one launch under the model (see above)."""
    o, m = derate(kernel, gpu, launch.unit)
    memory = launch.bytes / (gpu.bandwidth * o)
    if launch.flops == 0 or m == 0:
        return memory
    return max(memory, launch.flops / (gpu.peaks[launch.unit] * o * m))


def reference_time(work: Work, gpu: Gpu) -> float:
    return max(work.flops / (gpu.peaks[work.unit] * TORCH_COMPUTE_EFFICIENCY),
               work.bytes / (gpu.bandwidth * TORCH_MEMORY_EFFICIENCY))


def _conv_transpose2d_case(dtype: str) -> Case:
    # (8, 128, 64, 64) -> 64, k3 s2 p1 op1 -> 128x128, forward: one GEMM per output phase
    # (stride 2: 4 phases holding 4, 2, 2, 1 of the 9 taps); each reads x and its taps of the
    # weight and writes a quarter of y.
    e = 4 if dtype == "float32" else 2
    n, cin, h, w, cout = 8, 128, 64, 64, 64
    x, y, wt = n * cin * h * w * e, n * cout * 4 * h * w * e, cin * cout * 9 * e
    kernel = (r"^gemm_conv_kernel<float, float, true>$" if dtype == "float32"
              else rf"^gemm_tc_conv_kernel<{dtype}, {dtype}>$")
    unit = "fp32" if dtype == "float32" else "fp16"
    ours = [Launch(f"phase GEMM ({taps} taps)", kernel, "conv_transpose/",
                   2.0 * n * cout * h * w * cin * taps, x + y / 4 + wt * taps / 9, unit)
            for taps in (4, 2, 2, 1)]
    ref = [Work(2.0 * n * cout * h * w * cin * 9, x + y + wt,
                "tf32" if dtype == "float32" else "fp16")]
    return Case("conv_transpose2d (8,128,64,64)->64 k3 s2 fwd", dtype, ours, ref,
                "cuDNN" + (" (TF32)" if dtype == "float32" else ""))


def _bicubic_case(dtype: str) -> Case:
    # interpolate bicubic x2, (8, 64, 128, 128) -> 256x256, NCHW, forward: per output 4 x 4
    # taps and 4 row sums, 20 multiply-adds; input read once, output written once.
    e = 4 if dtype == "float32" else 2
    out = 8 * 64 * 256 * 256
    name = "float" if dtype == "float32" else dtype
    ours = [Launch("resample", rf"^upsample::resample_kernel<false, {name}, float, int32>$",
                   "upsample/", 40.0 * out, out * e + out / 4 * e)]
    return Case("interpolate bicubic x2 (8,64,128,128) fwd", dtype, ours,
                [Work(40.0 * out, out * e + out / 4 * e)], "torch upsample_bicubic2d")


def _deform_conv2d_case(dtype: str) -> Case:
    # deform_conv2d (4, 64, 64, 64) -> 64, 3x3 p1, mask, backward; one column chunk.
    # cols / gcols: C*K x N*P. Gathers: every sampled corner of the input and every offset /
    # mask value counted once (L2), columns streamed.
    e = 4 if dtype == "float32" else 2
    n, c, hw, o, k = 4, 64, 64 * 64, 64, 9
    cols = c * k * n * hw
    x, go, off, mask = n * c * hw * e, n * o * hw * e, n * 2 * k * hw * e, n * k * hw * e
    wt = o * c * k * e
    name = "float" if dtype == "float32" else dtype
    tc = dtype != "float32"
    unit = "fp16" if tc else "fp32"
    gemm = (lambda out: rf"^gemm_tc_kernel<{name}, {out}>$") if tc else (
        lambda out: r"^gemm_kernel<float, float, true>$")
    # split-K of the weight gradient: 28 splits of float partial sums (deform_conv_launch.h).
    splits, partial = 28, 28 * o * c * k * 4
    gflop = 2.0 * c * k * n * hw * o
    ours = [
        Launch("im2col", rf"^deform_conv::im2col_kernel<{name}, int32>$", "deform_conv/",
               16.0 * cols, cols * e + x + off + mask),
        Launch("GEMM gcols = W^T grad", gemm(name), "deform_conv/", gflop,
               wt + go + cols * e, unit),
        Launch(f"GEMM grad_weight, split-K {splits}", gemm("float"), "deform_conv/", gflop,
               go + cols * e + partial, unit),
        Launch("sum of the splits", rf"^gemm_sum_splits_kernel<{name}, float>$", "deform_conv/",
               0, partial + wt),
        Launch("coord_grad", rf"^deform_conv::coord_grad_kernel<{name}, int32>$", "deform_conv/",
               30.0 * cols, cols * e + x + 2 * off + 2 * mask),
        Launch("col2im (atomics)", rf"^deform_conv::col2im_atomic_kernel<{name}, int32>$",
               "deform_conv/", 12.0 * cols, cols * e + off + mask + 4 * cols * e),
    ]
    # torchvision: the same columns (im2col twice: forward's are not kept), cuBLAS GEMMs.
    ref = [Work(16.0 * cols, cols * e + x + off + mask),
           Work(gflop, wt + go + cols * e, unit if tc else "fp32"),
           Work(gflop, go + cols * e + wt, unit if tc else "fp32"),
           Work(30.0 * cols, cols * e + x + 2 * off + 2 * mask),
           Work(12.0 * cols, cols * e + off + mask + 4 * cols * e)]
    return Case("deform_conv2d (4,64,64,64)->64 3x3 bwd", dtype, ours, ref,
                "torchvision (cuBLAS)")


def _conv_transpose3d_case(dtype: str) -> Case:
    # conv_transpose3d (2, 32, 8, 16, 16) -> 32, k3 s2 p1 op1 -> 16x32x32, float32, forward:
    # per image a GEMM writing the columns (32 * 27 x 2048) and col2vol reading them back.
    n, cin, cout, vin, vout, taps = 2, 32, 32, 8 * 16 * 16, 16 * 32 * 32, 27
    cols = cout * taps * vin * 4
    ours = [Launch("GEMM cols = W^T x (per image)", r"^gemm_kernel<float, float, true>$",
                   "conv_transpose3d/", 2.0 * n * cols / 4 * cin,
                   n * (cin * vin * 4 + cols) + cin * cout * taps * 4),
            Launch("col2vol (per image)", r"^conv_transpose3d::col2vol_kernel<float, int32>$",
                   "conv_transpose3d/", 0, n * (cols + cout * vout * 4))]
    ref = [Work(2.0 * n * cin * cout * taps * vin,
                (n * cin * vin + cin * cout * taps + n * cout * vout) * 4, "tf32")]
    return Case("conv_transpose3d (2,32,8,16,16)->32 k3 s2 fwd", dtype, ours, ref, "cuDNN (TF32)")


def estimate_cases() -> list[Case]:
    return [_conv_transpose2d_case("float32"), _conv_transpose2d_case("half"),
            _bicubic_case("float32"), _deform_conv2d_case("float32"),
            _deform_conv2d_case("half"), _conv_transpose3d_case("float32")]


ESTIMATE_TUS = ["conv_transpose/", "upsample/", "deform_conv/", "conv_transpose3d/"]


def find_kernel(kernels: list[Kernel], launch: Launch, arch: str) -> Kernel | None:
    for k in kernels:
        if (k.arch == arch and launch.tu in k.extra.get("tu", "")
                and re.search(launch.kernel, k.name)):
            return k
    return None


def estimate_tables(kernels: list[Kernel]) -> str:
    """The --estimate output: per case and GPU, ours against the reference, then every
    launch of ours with the derating factors it got."""
    summary = [("| case | dtype | GPU | ours (ms) | reference | reference (ms) | "
                "ours / reference | reference without TF32 (ms) |"),
               "|---|---|---|---|---|---|---|---|"]
    detail = ["| case | dtype | GPU | launch | kernel | GFLOP | MB | occupancy | o | m | ms |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for case in estimate_cases():
        for gpu in GPUS:
            total, missing = 0.0, False
            for launch in case.ours:
                k = find_kernel(kernels, launch, gpu.arch)
                if k is None:
                    missing = True
                    detail.append(f"| {case.name} | {case.dtype} | {gpu.name} | {launch.what} | "
                                  f"`{launch.kernel}` not compiled | | | | | | |")
                    continue
                t = launch_time(launch, k, gpu)
                total += t
                o, m = derate(k, gpu, launch.unit)
                detail.append(
                    f"| {case.name} | {case.dtype} | {gpu.name} | {launch.what} | `{k.name}` | "
                    f"{launch.flops / 1e9:.3f} | {launch.bytes / 1e6:.1f} | {k.occupancy():.0%} | "
                    f"{o:.2f} | {'-' if launch.flops == 0 or m == 0 else f'{m:.2f}'} | "
                    f"{t * 1e3:.3f} |")
            ref = sum(reference_time(w, gpu) for w in case.reference)
            # The same work at the FP32 peak: torch with torch.backends.cudnn.allow_tf32 off.
            exact = sum(reference_time(Work(w.flops, w.bytes, "fp32" if w.unit == "tf32"
                                            else w.unit), gpu) for w in case.reference)
            ours = "n/a" if missing else f"{total * 1e3:.3f}"
            ratio = "n/a" if missing else f"{total / ref:.2f}"
            summary.append(f"| {case.name} | {case.dtype} | {gpu.name} | {ours} | "
                           f"{case.reference_name} | {ref * 1e3:.3f} | {ratio} | "
                           f"{f'{exact * 1e3:.3f}' if exact != ref else '='} |")
    head = (f"ESTIMATE (a roofline model, not a measurement; see cuda_static.py): "
            f"occupancy enough at {OCCUPANCY_ENOUGH:.0%}, reference at "
            f"{TORCH_COMPUTE_EFFICIENCY:.0%} of peak FLOP/s and "
            f"{TORCH_MEMORY_EFFICIENCY:.0%} of bandwidth.")
    return "\n".join([head, "", *summary, "", *detail])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", type=Path, default=ROOT / "csrc", help="the csrc tree to compile")
    p.add_argument("--arch", action="append", choices=sorted(SM_LIMITS), help="(repeatable)")
    p.add_argument("--tu", action="append", help="only translation units whose path has this")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--check", action="store_true", help="exit 1 if a kernel breaks a budget")
    p.add_argument("--estimate", action="store_true",
                   help="print the A100 / H100 time ESTIMATES of the benchmark shapes (after "
                        "the kernel table with --markdown, else alone); compiles only the ops "
                        "they need unless --tu or --check is given")
    args = p.parse_args(argv)
    archs = args.arch or ["80", "90"]
    src = args.src.resolve()
    tus = sorted(src.glob("ops/*/*_cuda.cu"))
    wanted = args.tu or (ESTIMATE_TUS if args.estimate and not args.check else None)
    if wanted:
        tus = [t for t in tus if any(s in t.relative_to(src).as_posix() for s in wanted)]
    if not tus:
        raise SystemExit(f"cuda_static: no CUDA translation units under {src}")
    nvcc = find_nvcc()
    sizes = block_sizes(src)
    with tempfile.TemporaryDirectory() as d, concurrent.futures.ThreadPoolExecutor(args.jobs) as ex:
        results = list(ex.map(lambda t: compile_tu(nvcc, src, t, archs, Path(d)), tus))
    kernels = [k for r in results for k in r]
    names = demangle([k.mangled for k in kernels])
    for k in kernels:
        k.name = short(names[k.mangled])
        base = k.name.split("<")[0].split("::")[-1]
        k.block = sizes.get(base, sizes["__default__"])
    kernels.sort(key=lambda k: (k.name, k.arch))

    head = ["kernel", "sm", "regs", "smem B", "spill st/ld B", "block", "occupancy",
            "div/rem 64", "div/rem 32", "div 64 loop", "div calls", "mma", "HMMA",
            "loop fma/mma %"]
    rows = [[k.name, k.arch, str(k.registers), str(k.smem), f"{k.spill_stores}/{k.spill_loads}",
             str(k.block), f"{k.occupancy():.0%}", str(k.div64), str(k.div32), str(k.div64_loop),
             "-" if k.div_calls is None else str(k.div_calls), str(k.mma),
             "-" if k.hmma is None else str(k.hmma),
             f"{k.fma_share:.0%}/{k.mma_share:.0%}"] for k in kernels]
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("---" for _ in head) + "|")
        for r in rows:
            print("| `" + r[0] + "` | " + " | ".join(r[1:]) + " |")
    elif not args.estimate:
        widths = [max(len(x) for x in col) for col in zip(head, *rows)]
        for r in [head] + rows:
            print("  ".join(x.ljust(w) for x, w in zip(r, widths)))
    if args.estimate:
        print(("\n" if args.markdown else "") + estimate_tables(kernels))
    cuobjdump = find_cuobjdump(nvcc)
    print(f"\n{len(kernels)} kernels; nvcc {nvcc}; cuobjdump "
          f"{cuobjdump if cuobjdump else 'not found: div calls and HMMA not read'}",
          file=sys.stderr)
    if args.check:
        broken = violations(kernels)
        for line in broken:
            print(f"over budget: {line}", file=sys.stderr)
        print(f"budgets: {len(broken)} violation(s) in {len(kernels)} kernels", file=sys.stderr)
        return 1 if broken else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
