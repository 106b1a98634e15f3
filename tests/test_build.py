"""The build: every operator has CPU, CUDA (when compiled) and emulated kernels; info."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import pyseg
from tests.conftest import REQUIRE_CUDA_BUILD, REQUIRE_EMU


def pyseg_ops(namespace: str) -> list[str]:
    names = torch._C._dispatch_get_all_op_names()
    return sorted(n.split("::", 1)[1] for n in names if n.startswith(namespace + "::"))


def has_kernel(qualified: str, key: str) -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key(qualified, key)


def test_every_op_has_a_cpu_kernel():
    ops = pyseg_ops("pyseg")
    assert "max_unpool2d" in ops
    missing = [op for op in ops if not has_kernel(f"pyseg::{op}", "CPU")]
    assert not missing, f"ops without a CPU kernel: {missing}"


def test_every_op_has_a_cuda_kernel():
    if not pyseg.info()["cuda_compiled"]:
        if REQUIRE_CUDA_BUILD:
            pytest.fail("PYSEG_REQUIRE_CUDA_BUILD=1 but pyseg._C was built without CUDA")
        pytest.skip("pyseg._C was built without CUDA")
    missing = [op for op in pyseg_ops("pyseg") if not has_kernel(f"pyseg::{op}", "CUDA")]
    assert not missing, f"ops without a CUDA kernel: {missing}"
    assert pyseg.info()["cuda_arch_list"], "a CUDA build must record its arch list"


def test_every_op_has_an_emulated_twin():
    if not pyseg.info()["emulator"]:
        if REQUIRE_EMU:
            pytest.fail("PYSEG_REQUIRE_EMU=1 but pyseg._emu is not built")
        pytest.skip("pyseg._emu is not built")
    ours, twins = pyseg_ops("pyseg"), pyseg_ops("pyseg_emu")
    assert ours == twins
    missing = [op for op in twins if not has_kernel(f"pyseg_emu::{op}", "CPU")]
    assert not missing, f"emulated ops without a kernel: {missing}"


def test_every_op_has_autograd_and_fake_kernels():
    for op in pyseg_ops("pyseg"):
        q = f"pyseg::{op}"
        assert has_kernel(q, "Meta"), f"{q}: no fake (meta) kernel"
        if "backward" not in op:  # backward ops need autograd only for double backward
            assert has_kernel(q, "Autograd") or has_kernel(q, "AutogradCPU"), f"{q}: no autograd"


def test_info():
    facts = pyseg.info()
    for key in ("version", "torch_version", "cuda_compiled", "cuda_arch_list", "emulator",
                "threads", "compiler"):
        assert key in facts
    assert facts["version"] == pyseg.__version__
    assert isinstance(facts["cuda_compiled"], bool)
    assert facts["threads"] >= 1


@pytest.mark.parametrize("launcher", ["script", "module"])
def test_info_command(launcher):
    cmd = ["pyseg"] if launcher == "script" else [sys.executable, "-m", "pyseg"]
    if launcher == "script":
        script = os.path.join(os.path.dirname(sys.executable), "pyseg")
        if not os.path.exists(script):
            pytest.skip("console script not installed (editable install missing)")
        cmd = [script]
    out = subprocess.run(cmd + ["info", "--json"], capture_output=True, text=True, check=True)
    facts = json.loads(out.stdout)
    # The thread count is the fresh process's own default; this process's may have been set
    # by a fixture, so it is checked against torch in a fresh process too.
    fresh_threads = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
        capture_output=True, text=True, check=True).stdout
    assert facts["threads"] == int(fresh_threads)
    assert facts == json.loads(json.dumps(pyseg.info())) | {"platform": facts["platform"],
                                                            "threads": facts["threads"]}
    text = subprocess.run(cmd + ["info"], capture_output=True, text=True, check=True).stdout
    assert "cuda_compiled" in text and "emulator" in text


def test_no_command_prints_help():
    out = subprocess.run([sys.executable, "-m", "pyseg"], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 2
    assert "usage: pyseg" in out.stdout


def test_vector_instructions_only_in_capability_variants():
    # The baseline build must run on any x86-64 CPU: AVX2 / AVX-512 code (ymm / zmm registers)
    # may appear only in the per-capability translation units (namespaces AVX2:: / AVX512::,
    # chosen at run time), never in code every CPU executes (it would die of SIGILL there).
    import platform
    import re
    import shutil

    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the capability variants are x86-64 only")
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("objdump (binutils) not found")
    from pyseg import _loader

    listing = subprocess.run([objdump, "-d", "--no-show-raw-insn", "-C", _loader._C.__file__],
                             capture_output=True, text=True, check=True).stdout
    label = re.compile(r"^[0-9a-f]+ <(.*)>:$")
    function, offenders, variants = "", set(), 0
    for line in listing.splitlines():
        m = label.match(line)
        if m:
            function = m.group(1)
        elif "%ymm" in line or "%zmm" in line:
            if "AVX2::" in function or "AVX512::" in function:
                variants += 1
            else:
                offenders.add(function)
    assert variants > 0, "no AVX2 / AVX-512 variant found: were the capability variants built?"
    assert not offenders, f"vector code outside the capability variants: {sorted(offenders)[:10]}"
