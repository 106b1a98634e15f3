"""Shared test fixtures.

``backend`` runs a test once per way pyseg's kernels can execute here:

* ``cpu``          -- the CPU kernels (``torch.ops.pyseg``)
* ``emu``          -- the CUDA kernels under the CPU emulator (``torch.ops.pyseg_emu``),
                      threads of a block resumed in forward order
* ``emu-reverse``  -- the same in reverse order (exposes intra-block races)
* ``emu-interleaved`` -- several blocks resident at once, switched at barriers, blocks and
                      threads in seeded random orders (blocks have no order on a GPU)
* ``cuda``         -- the CUDA kernels on a GPU (marked ``cuda``; skipped without one)

Every emulated case runs under the emulator's memcheck and racecheck (on by default in the
instrumented build, see csrc/emu/README.md). Emulated cases skip when ``pyseg._emu`` is not built, unless ``PYSEG_REQUIRE_EMU=1`` (CI),
which turns the skip into a failure. ``PYSEG_REQUIRE_CUDA_BUILD=1`` does the same for tests
that need the CUDA kernels compiled in.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass

import pytest
import torch

import pyseg
from pyseg.ops import _library

REQUIRE_EMU = os.environ.get("PYSEG_REQUIRE_EMU") == "1"
REQUIRE_CUDA_BUILD = os.environ.get("PYSEG_REQUIRE_CUDA_BUILD") == "1"
EMU_ORDERS = {"emu": "forward", "emu-reverse": "reverse", "emu-interleaved": "interleaved"}


@dataclass
class Backend:
    name: str
    device: torch.device

    @property
    def emulated(self) -> bool:
        return self.name.startswith("emu")


def _need_emulator() -> None:
    if "pyseg_emu" not in _library.NAMESPACES:
        if REQUIRE_EMU:
            pytest.fail("PYSEG_REQUIRE_EMU=1 but pyseg._emu is not built (build with PYSEG_EMU=1)")
        pytest.skip("pyseg._emu is not built (build with PYSEG_EMU=1)")


@pytest.fixture(
    params=[
        "cpu",
        pytest.param("emu", marks=pytest.mark.emu),
        pytest.param("emu-reverse", marks=pytest.mark.emu),
        pytest.param("emu-interleaved", marks=pytest.mark.emu),
        pytest.param("cuda", marks=pytest.mark.cuda),
    ]
)
def backend(request):
    yield from _make_backend(request.param)


@pytest.fixture(
    params=[
        "cpu",
        pytest.param("emu-one-order", marks=pytest.mark.emu),
        pytest.param("cuda", marks=pytest.mark.cuda),
    ]
)
def sweep_backend(request):
    """Like ``backend``, for large parameter sweeps: each case runs the emulated kernels in one
    thread order, chosen from the test's id (stable across runs), so that the sweep as a whole
    covers all three orders at a third of the cost. The tests of thread-order independence
    itself use ``backend`` or ``emu``."""
    name = request.param
    if name == "emu-one-order":
        orders = list(EMU_ORDERS)
        name = orders[zlib.crc32(request.node.nodeid.encode()) % len(orders)]
    yield from _make_backend(name)


@pytest.fixture(
    params=[
        pytest.param("emu", marks=pytest.mark.emu),
        pytest.param("emu-reverse", marks=pytest.mark.emu),
        pytest.param("emu-interleaved", marks=pytest.mark.emu),
    ]
)
def emu_backend(request):
    """Like ``backend``, for tests of emulator-only facts (block caps, barrier counts)."""
    yield from _make_backend(request.param)


def _make_backend(name: str):
    if name == "cuda":
        yield Backend(name, torch.device("cuda"))
        return
    if name.startswith("emu"):
        _need_emulator()
        from pyseg import _emu

        previous = _emu.thread_order()
        _emu.set_thread_order(EMU_ORDERS[name], 7)
        try:
            with _library.emulated():
                yield Backend(name, torch.device("cpu"))
        finally:
            _emu.set_thread_order(previous)
        return
    yield Backend(name, torch.device("cpu"))


@pytest.fixture
def one_thread():
    """One intra-op thread for the duration of a test: tests that run many tiny ops (data,
    training) are tens of times slower when OpenMP barriers meet an oversubscribed machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def emu():
    """The emulator module, for tests of the emulator itself."""
    _need_emulator()
    from pyseg import _emu

    return _emu


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def pytest_report_header(config):
    facts = pyseg.info()
    return (
        f"pyseg {facts['version']}: cuda_compiled={facts['cuda_compiled']} "
        f"emulator={facts['emulator']} cuda_available={facts['cuda_available']} "
        f"threads={facts['threads']}"
    )
