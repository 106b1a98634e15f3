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

``--check`` enforces the budgets of ``BUDGETS`` below and exits 1 naming every kernel over
one (``ALLOWED`` lists the exceptions, each with its reason).

Usage::

    python benchmarks/cuda_static.py [--src csrc] [--arch 80 --arch 90] [--jobs 2]
        [--markdown] [--tu max_unpool] [--check]

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
    ("div64_loop", r"^deform_conv::(im2col|col2im_atomic|col2im_plane|coord_grad)_kernel<"):
        "one (image, channel, tap, pixel) decomposition of the flat int64 index per element of "
        "the grid-stride loop; these kernels have no int32 variant yet",
    ("occupancy", r"^deform_conv::coord_grad_kernel<double>"):
        "80 registers for the double coordinate gradient (38%); float / half / bf16 reach 50%",
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
    ("div64_loop", r"^conv_transpose3d::(col2vol|vol2col)_kernel<"):
        "first version of conv_transpose3d: each element splits its flat int64 index into "
        "(channel, depth, row, column, tap) with 64-bit divisions; no int32 variant yet",
    ("div64_loop", r"^grid_sample::(forward|backward)_kernel<\d, double, double>"):
        "the double kernels split the flat index with one 64-bit division per point; the "
        "float / half / bf16 kernels do not",
    ("occupancy", r"^grid_sample::backward_kernel<\d, double, double>"):
        "double coordinates and gradients: 96 registers for 3-D (25%), 80 for 2-D (38%); "
        "float / half / bf16 reach 50%",
    ("div64_loop", r"^grid_sample::finalize_kernel<"):
        "converts the fixed-point int64 grad_input sums back to floating point: one flat "
        "index split per element with 64-bit divisions; no int32 variant yet",
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
        for ptx in keep.glob("*.ptx"):
            text = ptx.read_text()
            divs.update(ptx_divisions(text))
            facts.update(ptx_main_loop_facts(text))
        sass = sass_facts(cuobjdump, Path(f"{stem}.cubin")) if cuobjdump else {}
        for k in found:
            k.div64, k.div32 = divs.get(k.mangled, (0, 0))
            k.div64_loop, k.mma = facts.get(k.mangled, (0, 0))
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", type=Path, default=ROOT / "csrc", help="the csrc tree to compile")
    p.add_argument("--arch", action="append", choices=sorted(SM_LIMITS), help="(repeatable)")
    p.add_argument("--tu", action="append", help="only translation units whose path has this")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--check", action="store_true", help="exit 1 if a kernel breaks a budget")
    args = p.parse_args(argv)
    archs = args.arch or ["80", "90"]
    src = args.src.resolve()
    tus = sorted(src.glob("ops/*/*_cuda.cu"))
    if args.tu:
        tus = [t for t in tus if any(s in str(t) for s in args.tu)]
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
            "div/rem 64", "div/rem 32", "div 64 loop", "div calls", "mma", "HMMA"]
    rows = [[k.name, k.arch, str(k.registers), str(k.smem), f"{k.spill_stores}/{k.spill_loads}",
             str(k.block), f"{k.occupancy():.0%}", str(k.div64), str(k.div32), str(k.div64_loop),
             "-" if k.div_calls is None else str(k.div_calls), str(k.mma),
             "-" if k.hmma is None else str(k.hmma)] for k in kernels]
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("---" for _ in head) + "|")
        for r in rows:
            print("| `" + r[0] + "` | " + " | ".join(r[1:]) + " |")
    else:
        widths = [max(len(x) for x in col) for col in zip(head, *rows)]
        for r in [head] + rows:
            print("  ".join(x.ljust(w) for x, w in zip(r, widths)))
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
