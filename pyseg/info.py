"""Build and runtime facts about this copy of pyseg (``pyseg info``)."""

from __future__ import annotations

import os
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
    ``emulator`` (``pyseg._emu`` is built and loads), ``threads``, ``cpu_capability`` (the
    CPU kernel variant in use: ``default``, ``avx2`` or ``avx512``; lower it with
    ``PYSEG_CPU_CAPABILITY``), ``cpu_capability_supported`` (the best this CPU and torch's
    ``ATEN_CPU_CAPABILITY`` allow), ``cpu_capabilities_compiled``, ``gemm`` (``pyseg`` or
    ``aten``, from ``PYSEG_GEMM``), ``compiler``, ``python``, ``platform``.

    Takes no arguments and raises nothing (``pyseg`` itself fails to import when its
    extension is missing). ``pyseg info`` prints the same.

    Example::

        >>> facts = pyseg.info()
        >>> facts["version"] == pyseg.__version__, facts["cpu_capability"] in (
        ...     "default", "avx2", "avx512")
        (True, True)
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
        "cpu_capability": C.cpu_capability(),
        "cpu_capability_supported": C.cpu_capability_supported(),
        "cpu_capabilities_compiled": list(C.cpu_capabilities_compiled()),
        "gemm": "aten" if os.environ.get("PYSEG_GEMM") == "aten" else "pyseg",
        "compiler": C.compiler(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
