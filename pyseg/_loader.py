"""Loads the compiled extensions.

``pyseg._C`` holds the operators (``torch.ops.pyseg.*``); loading it registers them with the
dispatcher. ``pyseg._emu`` (built with ``PYSEG_EMU=1``) holds the same CUDA kernels compiled
for the CPU emulator as ``torch.ops.pyseg_emu.*``; it is optional.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import torch  # noqa: F401  (libtorch must be loaded before the extensions)

try:
    from pyseg import _C  # noqa: F401
except ImportError as e:  # pragma: no cover - only without a build
    raise ImportError(
        "pyseg's compiled extension pyseg._C could not be loaded "
        f"({e}). Build it with `pip install --no-build-isolation -e .` (see README.md)."
    ) from e


def load_emulator() -> ModuleType | None:
    """Return ``pyseg._emu`` if it was built, else None."""
    try:
        return importlib.import_module("pyseg._emu")
    except ImportError:
        return None


_emu: ModuleType | None = load_emulator()
