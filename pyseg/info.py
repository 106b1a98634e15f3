"""Build and runtime facts about this copy of pyseg (``pyseg info``)."""

from __future__ import annotations

import platform
from typing import Any

import torch

from pyseg import _loader
from pyseg._version import __version__


def info() -> dict[str, Any]:
    """Return a dict describing the build and the runtime.

    Keys: ``version``, ``torch_version`` (runtime) and ``torch_built_with`` (build time),
    ``cuda_compiled`` (the CUDA kernels are in ``pyseg._C``), ``cuda_arch_list``,
    ``cuda_version`` (nvcc used for the build), ``cuda_available`` (a GPU is usable now),
    ``emulator`` (``pyseg._emu`` is built and loads), ``threads``, ``compiler``, ``python``,
    ``platform``.
    """
    try:
        from pyseg import _build_info as b
    except ImportError:  # pragma: no cover - only in a broken checkout
        b = None
    C = _loader._C
    return {
        "version": __version__,
        "torch_version": torch.__version__,
        "torch_built_with": getattr(b, "torch_version", ""),
        "cuda_compiled": bool(C.cuda_compiled()),
        "cuda_arch_list": [a for a in getattr(b, "cuda_arch_list", "").split(";") if a],
        "cuda_version": getattr(b, "nvcc_version", ""),
        "cuda_available": torch.cuda.is_available(),
        "emulator": _loader._emu is not None,
        "threads": torch.get_num_threads(),
        "compiler": C.compiler(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
