"""Fixtures for the architecture tests."""

from __future__ import annotations

import os

import pytest

import pyseg
from pyseg import registry


@pytest.fixture
def require_pyseg_ops():
    """``require_pyseg_ops(*names)``: the named ``pyseg.nn`` modules must exist (a model must
    never fall back to torch's op silently)."""

    def require(*names: str) -> None:
        missing = [n for n in names if not hasattr(pyseg.nn, n)]
        assert not missing, f"pyseg.nn lacks {', '.join(missing)}"

    return require


@pytest.fixture(scope="session", autouse=True)
def _strict_builtins():
    """The built-in plugins must load without a single failure."""
    old = os.environ.get("PYSEG_STRICT_PLUGINS")
    os.environ["PYSEG_STRICT_PLUGINS"] = "1"
    registry.reload()
    try:
        registry.plugins()
    finally:
        if old is None:
            del os.environ["PYSEG_STRICT_PLUGINS"]
        else:
            os.environ["PYSEG_STRICT_PLUGINS"] = old
    yield
