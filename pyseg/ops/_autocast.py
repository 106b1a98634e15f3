"""Autocast rules: in which dtype each operator runs inside ``torch.autocast``.

Each pyseg operator follows the rule torch (or torchvision) applies to the operator it stands
in for, read from torch's own lists (``aten/src/ATen/autocast_mode.cpp``, checked on torch
2.14 with ``torch._C._dispatch_has_kernel_for_dispatch_key``) and from torchvision's
``csrc/ops/autocast``:

=================  ====================================  ==================  ==================
pyseg op           stands in for                         CPU                 CUDA
=================  ====================================  ==================  ==================
conv_transpose2d   aten::conv_transpose2d                autocast dtype      autocast dtype
conv_transpose3d   aten::conv_transpose3d                autocast dtype      autocast dtype
max_unpool2d       aten::max_unpool2d                    float32             input dtype
max_unpool3d       aten::max_unpool3d                    float32             input dtype
upsample2d         aten::upsample_{nearest,bilinear,     input dtype         float32
                   bicubic}2d
upsample           aten::upsample_*{1,2,3}d, _upsample_   input dtype;        float32; area:
                   nearest_exact*, _upsample_*2d_aa,     area 5-D: float32   input dtype
                   adaptive_avg_pool{1,2,3}d (area)
bed_of_nails       (zero insertion; no arithmetic)       input dtype         input dtype
deform_conv2d      torchvision::deform_conv2d            float32, output     float32, output
                                                         cast back           cast back
grid_sample        aten::grid_sampler                    float32             float32
=================  ====================================  ==================  ==================

"autocast dtype" is ``torch.get_autocast_dtype(device)`` (bfloat16 or float16); "input dtype"
means no Autocast kernel: the op runs in the dtype it is given, as torch's does. Like torch,
only float32/float16/bfloat16 tensors are cast (float64 stays float64) and every floating
input of an op is cast to the same dtype, so a bfloat16 activation meeting a float32 weight
works instead of failing. torchvision registers its deform_conv2d rule for CUDA only; pyseg
applies it on the CPU too, so deformable networks run under CPU autocast.

The ``pyseg_emu`` namespace holds the CUDA kernels run on CPU tensors by the emulator, so its
Autocast kernels (registered for AutocastCPU, the only autocast key CPU tensors see) apply
the CUDA column with ``torch.get_autocast_dtype("cpu")``: under
``torch.autocast("cpu", dtype=torch.float16)`` the emulated kernels run what
``torch.autocast("cuda", dtype=torch.float16)`` runs on a GPU.

The 1-D ops (conv_transpose1d, max_unpool1d) run the 2-D ones and inherit their rules, as
torch's lists give the 1-D ops the same rules as the 2-D ones.

Backward operators get no rule: autograd sees the casts done here and hands the backward
kernels tensors of matching dtypes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

__all__ = ["CPU_RULES", "CUDA_RULES", "register_autocast_rules"]

# A rule: "lower" (the autocast dtype), "float32", or "float32_cast_back" (run in float32,
# return the input's dtype, as torchvision's deform_conv2d autocast does), or upsample's
# per-mode "float32_unless_area" / "float32_if_area_5d" (float32 or untouched). Ops without
# an entry run in the dtype they are given.
CPU_RULES: dict[str, str] = {
    "conv_transpose2d": "lower",
    "conv_transpose3d": "lower",
    "max_unpool2d": "float32",
    "upsample": "float32_if_area_5d",
    "max_unpool3d": "float32",
    "deform_conv2d": "float32_cast_back",
    "grid_sample": "float32",
}
CUDA_RULES: dict[str, str] = {
    "conv_transpose2d": "lower",
    "conv_transpose3d": "lower",
    "upsample2d": "float32",
    "upsample": "float32_unless_area",
    "deform_conv2d": "float32_cast_back",
    "grid_sample": "float32",
}

_CASTABLE = (torch.float32, torch.float16, torch.bfloat16)
_libraries: dict[str, torch.library.Library] = {}  # keep the registrations alive


def _cast(value: Any, dtype: torch.dtype) -> Any:
    if isinstance(value, Tensor) and value.dtype in _CASTABLE and value.dtype != dtype:
        return value.to(dtype)
    return value


def _upsample_casts(rule: str, args: tuple[Any, ...]) -> bool:
    # upsample stands in for several aten ops: area is adaptive_avg_pool*d, which torch's
    # CUDA autocast leaves alone and its CPU autocast runs in float32 for 3-D pooling only.
    if rule == "float32_unless_area":
        return bool(args[2] != "area")
    if rule == "float32_if_area_5d":
        return bool(args[2] == "area" and args[0].dim() == 5)
    return True


def _autocast_kernel(op: Any, key: str, rule: str, dtype_device: str) -> Callable[..., Any]:
    """The Autocast kernel of ``op``: cast the floating inputs, then run ``op`` below the
    Autocast key (the same mechanism as ``torch.library.register_autocast``)."""
    exclude = torch._C.DispatchKeySet(getattr(torch._C.DispatchKey, key))

    def kernel(_keyset: Any, *args: Any) -> Any:
        dtype = torch.get_autocast_dtype(dtype_device) if rule == "lower" else torch.float32
        if not _upsample_casts(rule, args):
            with torch._C._ExcludeDispatchKeyGuard(exclude):
                return op(*args)
        with torch._C._ExcludeDispatchKeyGuard(exclude):
            out = op(*(_cast(a, dtype) for a in args))
        if rule == "float32_cast_back" and out.dtype != args[0].dtype:
            out = out.to(args[0].dtype)
        return out

    return kernel


def register_autocast_rules(namespaces: tuple[str, ...]) -> None:
    """Register the Autocast kernels of the tables above for every op in ``namespaces``.

    ``pyseg`` gets the CPU rules on AutocastCPU and the CUDA rules on AutocastCUDA;
    ``pyseg_emu`` (CUDA kernels on CPU tensors) gets the CUDA rules on AutocastCPU.
    """
    for namespace in namespaces:
        lib = _libraries[namespace] = torch.library.Library(  # type: ignore[no-untyped-call]
            namespace, "IMPL")
        if namespace == "pyseg_emu":
            plan = [("cpu", "AutocastCPU", CUDA_RULES)]
        else:
            plan = [("cpu", "AutocastCPU", CPU_RULES), ("cuda", "AutocastCUDA", CUDA_RULES)]
        for dtype_device, key, rules in plan:
            for name, rule in rules.items():
                op = getattr(getattr(torch.ops, namespace), name).default
                lib.impl(name, _autocast_kernel(op, key, rule, dtype_device),  # type: ignore[no-untyped-call]
                         key, with_keyset=True)
