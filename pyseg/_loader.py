"""Loads the compiled extensions.

``pyseg._C`` holds the operators (``torch.ops.pyseg.*``); loading it registers them with the
dispatcher. ``pyseg._emu`` (built with ``PYSEG_EMU=1``) holds the same CUDA kernels compiled
for the CPU emulator as ``torch.ops.pyseg_emu.*``; it is optional.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import torch  # (libtorch must be loaded before the extensions)


def check_torch_version(built_with: str, running: str) -> None:
    """Raise ImportError unless ``running`` has the major.minor of ``built_with``.

    The compiled extensions use torch's C++ API, which changes between minor releases: a
    build (a wheel) works only with the torch it was built against. An empty ``built_with``
    (no build facts) is not checked.
    """
    if not built_with:
        return
    if built_with.split(".")[:2] != running.split(".")[:2]:
        raise ImportError(
            f"pyseg was built against torch {built_with} but torch {running} is installed; "
            f"its compiled operators only work with torch {'.'.join(built_with.split('.')[:2])}"
            ".x. Install that torch, or rebuild pyseg against this one: "
            "pip install --no-build-isolation torch-pyseg (or -e . in a checkout)."
        )


try:
    from pyseg import _build_info
except ImportError:  # pragma: no cover - a checkout that was never built
    _build_info = None
check_torch_version(getattr(_build_info, "torch_version", ""), torch.__version__)

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
