"""Fixtures for the CPU kernels' capability variants (csrc/common/cpu_capability.h)."""

from __future__ import annotations

import contextlib

import pytest

from pyseg import _loader

_ORDER = ["default", "avx2", "avx512"]


def supported_capabilities() -> list[str]:
    """The compiled variants this CPU can run, lowest first."""
    C = _loader._C
    best = _ORDER.index(C.cpu_capability_supported())
    return [c for c in _ORDER if c in C.cpu_capabilities_compiled() and _ORDER.index(c) <= best]


@contextlib.contextmanager
def using_capability(name: str):
    """Run pyseg's CPU kernels with the variant `name` inside the block."""
    C = _loader._C
    before = C.cpu_capability()
    try:
        assert C._set_cpu_capability(name) == name
        yield
    finally:
        C._set_cpu_capability(before)


@pytest.fixture(params=supported_capabilities())
def cpu_capability(request):
    """Each capability variant this machine supports, selected for the test."""
    with using_capability(request.param):
        yield request.param
