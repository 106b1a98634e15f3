"""Builds pyseg's compiled parts.

* ``pyseg._C``   -- the operators: CPU kernels always, CUDA kernels when a CUDA toolkit
  is found and torch was built with CUDA (``FORCE_CUDA=1`` insists, ``FORCE_CUDA=0``
  turns CUDA off).
* ``pyseg._emu`` -- the same CUDA kernels compiled with g++ for the CPU emulator
  (``PYSEG_EMU=1``), with the emulator's memcheck / racecheck / counters unless
  ``PYSEG_EMU_CHECKS=0``. See csrc/emu/README.md.

Environment: ``CUDA_HOME`` (else found from nvcc, see ``find_cuda_home``),
``TORCH_CUDA_ARCH_LIST`` (default "8.0;9.0" when no GPU is visible), ``MAX_JOBS``,
``PYSEG_DEBUG=1`` (-O0 -g).

CPU capability variants: every ``csrc/**/*_cpu_kernel.cpp`` is compiled once per capability
(DEFAULT, and AVX2 and AVX512 on x86-64) through a generated wrapper in
``build/cpu_capability/`` that sets the target ISA with ``#pragma GCC target``, defines
``CPU_CAPABILITY`` / ``CPU_CAPABILITY_AVX2`` / ``CPU_CAPABILITY_AVX512`` (read by
``at::vec::Vectorized``) and the matching ``__AVX2__``-style ISA macros, and includes the
kernel file. The pragma keeps every other source on
the common flags, so the same source list works for CppExtension and CUDAExtension (nvcc
never sees these files). The variant is chosen at load time (csrc/common/cpu_capability.h).
"""

from __future__ import annotations

import glob
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent.resolve()


def find_cuda_home() -> str | None:
    """Return the CUDA toolkit prefix, or None.

    torch guesses the prefix from ``which nvcc``; on machines where ``nvcc`` on PATH is a
    small wrapper script outside the toolkit that guess is wrong, so we also read the
    wrapper for the real nvcc path and fall back to the usual install locations.
    """

    def is_toolkit(p: Path) -> bool:
        return (p / "bin" / "nvcc").is_file() and (p / "include" / "cuda_runtime.h").is_file()

    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var) and is_toolkit(Path(os.environ[var])):
            return os.environ[var]
    candidates: list[Path] = []
    nvcc = shutil.which("nvcc")
    if nvcc:
        real = Path(nvcc).resolve()
        candidates.append(real.parent.parent)
        try:
            head = real.read_bytes()[:8192]
        except OSError:
            head = b""
        if head.startswith(b"#!"):  # a wrapper script: look for the nvcc it runs
            for m in re.finditer(rb"(/[^\s\"'$]+)/bin/nvcc", head):
                candidates.append(Path(m.group(1).decode()))
    candidates.append(Path("/usr/local/cuda"))
    candidates += sorted(Path("/usr/local").glob("cuda-*"), reverse=True)
    for c in candidates:
        if is_toolkit(c):
            return str(c)
    return None


FORCE_CUDA = os.environ.get("FORCE_CUDA")
BUILD_EMU = os.environ.get("PYSEG_EMU", "0") == "1"
DEBUG = os.environ.get("PYSEG_DEBUG", "0") == "1"

cuda_home = find_cuda_home() if FORCE_CUDA != "0" else None
if cuda_home:
    # torch.utils.cpp_extension reads CUDA_HOME when it is imported.
    os.environ["CUDA_HOME"] = cuda_home

import torch
from torch.utils.cpp_extension import (
    BuildExtension,
    CppExtension,
    CUDAExtension,
)

if FORCE_CUDA == "1":
    if torch.version.cuda is None:
        raise RuntimeError("FORCE_CUDA=1 but the installed torch was built without CUDA")
    if cuda_home is None:
        raise RuntimeError("FORCE_CUDA=1 but no CUDA toolkit was found; set CUDA_HOME")
WITH_CUDA = FORCE_CUDA != "0" and torch.version.cuda is not None and cuda_home is not None

if WITH_CUDA and not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
    # No GPU to ask: build for Ampere and Hopper rather than every arch torch knows.
    os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0"


def rel(paths):
    return sorted(os.path.relpath(p, ROOT) for p in paths)


def sources(pattern: str) -> list[str]:
    return rel(glob.glob(str(ROOT / pattern)))


opt = ["-O0", "-g"] if DEBUG else ["-O3"]
cxx_flags = opt + ["-std=c++20", "-fopenmp", "-Wall", "-Wno-unused-function",
                   "-Wno-unknown-pragmas"]
include_dirs = [str(ROOT / "csrc")]

X86_64 = platform.machine().lower() in ("x86_64", "amd64")
# (name, index, extra #defines, #pragma GCC target) of each capability variant.
CPU_CAPABILITIES = [("DEFAULT", 0, [], None)]
if X86_64:
    CPU_CAPABILITIES += [
        ("AVX2", 1, ["CPU_CAPABILITY_AVX2", "__AVX__", "__AVX2__", "__FMA__", "__F16C__"],
         "avx2,fma,f16c"),
        ("AVX512", 2, ["CPU_CAPABILITY_AVX512", "__AVX__", "__AVX2__", "__FMA__", "__F16C__",
                       "__AVX512F__", "__AVX512DQ__", "__AVX512BW__", "__AVX512VL__"],
         "avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,f16c"),
    ]


def capability_sources() -> list[str]:
    """Write one wrapper per (kernel file, capability) and return their paths."""
    out_dir = ROOT / "build" / "cpu_capability"
    out_dir.mkdir(parents=True, exist_ok=True)
    wrappers = []
    for kernel in sources("csrc/common/*_cpu_kernel.cpp") + sources("csrc/ops/*/*_cpu_kernel.cpp"):
        include = Path(kernel).relative_to("csrc").as_posix()
        for name, index, defines, target in CPU_CAPABILITIES:
            lines = ["// Generated by setup.py: the " + name + " variant of " + kernel + "."]
            if target:
                lines.append(f'#pragma GCC target("{target}")')
                # (g++ notes that vector arguments change the ABI: all callers are inside.)
                lines.append('#pragma GCC diagnostic ignored "-Wpsabi"')
            lines.append(f"#define CPU_CAPABILITY {name}")
            # The pragma switches code generation but (in g++) not the ISA macros that
            # headers such as sleef.h test, so they are set here to match it.
            lines += [f"#ifndef {d}\n#define {d} 1\n#endif" for d in defines]
            lines.append(f"#define PYSEG_CPU_CAPABILITY_INDEX {index}")
            lines.append(f'#include "{include}"')
            path = out_dir / (Path(kernel).stem + "_" + name.lower() + ".cpp")
            text = "\n".join(lines) + "\n"
            if not path.exists() or path.read_text() != text:  # keep timestamps for ninja
                path.write_text(text)
            wrappers.append(os.path.relpath(path, ROOT))
    return wrappers


c_sources = (sources("csrc/pyseg.cpp")
             + [s for s in sources("csrc/common/*.cpp") if not s.endswith("_cpu_kernel.cpp")]
             + sources("csrc/ops/*/*_cpu.cpp") + capability_sources())
define_macros = [("PYSEG_CPU_X86", None)] if X86_64 else []
extra = {"cxx": cxx_flags}
if WITH_CUDA:
    c_sources += sources("csrc/ops/*/*_cuda.cu")
    define_macros.append(("PYSEG_WITH_CUDA", None))
    extra["nvcc"] = opt + ["-std=c++20", "--expt-relaxed-constexpr", "-lineinfo"]
    Ext = CUDAExtension
else:
    Ext = CppExtension

ext_modules = [
    Ext(
        "pyseg._C",
        c_sources,
        include_dirs=include_dirs,
        define_macros=define_macros,
        extra_compile_args=extra,
        extra_link_args=["-fopenmp"],
    )
]
if BUILD_EMU:
    # PYSEG_EMU_CHECKS=1 (default): -fsanitize=thread makes GCC call a hook before every load
    # and store; csrc/emu/sanitizer.cpp answers the hooks (libtsan is not linked) with
    # memcheck, racecheck and memory counters. No vectorization or store merging, so each
    # access is the one the CUDA code makes; -g1 gives the source lines of reports.
    emu_checks = os.environ.get("PYSEG_EMU_CHECKS", "1") == "1"
    emu_flags = (["-O0", "-g"] if DEBUG else ["-O2"]) + [
        "-std=c++20", "-Wall", "-Wno-unused-function", "-Wno-unknown-pragmas"]
    if emu_checks:
        emu_flags += ["-fsanitize=thread", "--param=tsan-instrument-func-entry-exit=0",
                      "-fno-tree-vectorize", "-fno-tree-slp-vectorize", "-fno-store-merging",
                      "-fno-tree-loop-distribute-patterns", "-g1"]
    ext_modules.append(
        CppExtension(
            "pyseg._emu",
            sources("csrc/emu/*.cpp") + sources("csrc/ops/*/*_emu.cpp"),
            include_dirs=include_dirs,
            define_macros=[("PYSEG_EMULATOR", None)]
            + ([("PYSEG_EMU_CHECKS", None)] if emu_checks else []),
            extra_compile_args={"cxx": emu_flags},
        )
    )


def nvcc_version() -> str:
    if not WITH_CUDA:
        return ""
    try:
        out = subprocess.run([os.path.join(cuda_home, "bin", "nvcc"), "--version"],
                             capture_output=True, text=True, check=True).stdout
        m = re.search(r"release ([\d.]+)", out)
        return m.group(1) if m else out.strip().splitlines()[-1]
    except (OSError, subprocess.CalledProcessError):
        return ""


# Facts about this build that only the build knows; pyseg.info() reports them.
(ROOT / "pyseg" / "_build_info.py").write_text(
    "# Written by setup.py; do not edit.\n"
    f"cuda_arch_list = {os.environ.get('TORCH_CUDA_ARCH_LIST', '') if WITH_CUDA else ''!r}\n"
    f"cuda_home = {cuda_home if WITH_CUDA else ''!r}\n"
    f"nvcc_version = {nvcc_version()!r}\n"
    f"torch_version = {torch.__version__!r}\n"
    f"emulator_built = {BUILD_EMU!r}\n"
)

setup(
    packages=find_packages(include=["pyseg", "pyseg.*"]) + ["pyseg_plugins"]
    + ["pyseg_plugins." + p for p in find_packages(where="plugins")],
    package_dir={"pyseg_plugins": "plugins"},
    ext_modules=ext_modules,
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    zip_safe=False,
)
