"""Send torch's functional calls to pyseg's kernels: ``with pyseg.kernels(): model(x)``.

:func:`kernels` returns a :class:`torch.overrides.TorchFunctionMode` (nothing in torch is
patched). While it is active, every call of

==========================================  ===========================================
torch / torchvision function                pyseg kernel, for the arguments it supports
==========================================  ===========================================
``F.interpolate`` (and ``F.upsample``,      :func:`pyseg.ops.interpolate`: every mode
``F.upsample_nearest``,                     torch has for the rank (nearest,
``F.upsample_bilinear``, ``nn.Upsample``,   nearest-exact, linear, bilinear, bicubic,
which call it)                              trilinear, area) on 3-D, 4-D and 5-D input,
                                            ``antialias=True`` for bilinear / bicubic
``F.conv_transpose1d`` / ``2d`` / ``3d``    :func:`pyseg.ops.conv_transpose1d` / ``2d`` /
(= ``torch.conv_transpose*d``, what         ``3d``: batched or unbatched input, every
``nn.ConvTranspose*d`` calls)               stride, padding, output_padding, groups and
                                            dilation
``F.max_unpool1d`` / ``2d`` / ``3d``        :func:`pyseg.ops.max_unpool1d` / ``2d`` /
(``nn.MaxUnpool*d``)                        ``3d``: batched or unbatched input
``F.grid_sample``                           :func:`pyseg.ops.grid_sample`: 4-D and 5-D,
                                            every mode and padding mode
``torchvision.ops.deform_conv2d``           :func:`pyseg.ops.deform_conv2d`: v1 and v2,
(``torchvision.ops.DeformConv2d``)          every group count
==========================================  ===========================================

goes to pyseg when the tensors are floating point (float16, bfloat16, float32, float64) on a
device pyseg has a kernel for (the CPU; CUDA when built with it), and to torch unchanged
otherwise (``mode="lanczos"``, a mode that does not fit the rank, integer tensors, other
devices, tensor subclasses): torch then computes the call, or raises its own error for it.
Argument errors of routed calls are pyseg's, which repeat torch's (``F.grid_sample`` with
``align_corners=None`` warns as torch does).

``F.affine_grid`` is not routed: it is a handful of torch operators (a base grid and one
batched matrix product), and :func:`pyseg.ops.affine_grid` is that same composite, bitwise
equal to torch's, so a routed call would compute exactly what torch's does.

The mode works under autograd (pyseg's ops have their own backward) and inside
:func:`torch.compile` (pyseg's ops have fake kernels; the mode is traced).
:attr:`KernelMode.stats` counts, in eager mode, the calls sent to pyseg and those left to
torch with the reason, including those of the modules :func:`pyseg.nn.convert` made; calls
traced by ``torch.compile`` are not counted, and of nested modes the innermost counts.
``torchvision.ops.deform_conv2d`` is routed when torchvision was imported before the mode
was made (as it is by any model that holds torchvision's modules).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode
from typing_extensions import Self

import pyseg.ops
from pyseg.ops import _library
from pyseg.ops.grid_sample import MODES as _GRID_MODES
from pyseg.ops.grid_sample import PADDING_MODES as _GRID_PADDING_MODES
from pyseg.ops.upsample import _KERNEL_MODES, _MODES

__all__ = ["OPS", "KernelMode", "RoutingStats", "call", "kernels", "why_not"]

#: The ops pyseg can stand in for, the names ``ops=`` of :func:`kernels` and
#: :func:`pyseg.nn.convert` accept.
OPS: tuple[str, ...] = ("interpolate", "conv_transpose2d", "max_unpool2d", "deform_conv2d",
                        "conv_transpose1d", "conv_transpose3d", "max_unpool1d", "max_unpool3d",
                        "grid_sample")

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# The pyseg operators behind the routed ops, to ask which devices have a kernel.
_KERNELS = ("upsample2d", "upsample", "conv_transpose2d", "conv_transpose3d", "max_unpool2d",
            "max_unpool3d", "deform_conv2d", "grid_sample")


def _kernel_devices(kernel: str) -> frozenset[str]:
    keys = {"cpu": "CPU", "cuda": "CUDA"}
    return frozenset(device for device, key in keys.items()
                     if torch._C._dispatch_has_kernel_for_dispatch_key(f"pyseg::{kernel}", key))


# Computed once: under torch.compile the checks below must be plain Python.
_DEVICES = {kernel: _kernel_devices(kernel) for kernel in _KERNELS}


def _tensors_why_not(kernel: str, *tensors: Any) -> str | None:
    """Why pyseg's ``kernel`` cannot take these tensors (the first one decides dtype and
    device)."""
    present = [t for t in tensors if t is not None]
    if not all(isinstance(t, Tensor) for t in present):
        return "an argument is not a Tensor"
    # Subclasses (DTensor, masked tensors...) have their own __torch_function__ semantics;
    # FakeTensor and the FunctionalTensor of torch.compile are plain tensors to this check.
    if any(type(t) not in (Tensor, torch.nn.Parameter) and not _is_traced(t) for t in present):
        return f"a tensor subclass ({type(present[0]).__name__})"
    first = present[0]
    if first.dtype not in _FLOATS:
        return f"dtype {str(first.dtype).removeprefix('torch.')}"
    if first.device.type not in _DEVICES[kernel]:
        return f"no pyseg kernel on {first.device.type}"
    return None


def _is_traced(t: Tensor) -> bool:
    return torch.compiler.is_compiling() or type(t).__module__.startswith("torch._subclasses")


def _interpolate_why_not(input: Any, size: Any = None, scale_factor: Any = None,
                         mode: str = "nearest", align_corners: Any = None,
                         recompute_scale_factor: Any = None, antialias: bool = False,
                         ) -> str | None:
    if not isinstance(input, Tensor):
        return "input is not a Tensor"
    rank = input.dim()
    if rank not in _KERNEL_MODES:
        return f"{rank}-D input (pyseg: 3-D, 4-D or 5-D)"
    if mode not in _KERNEL_MODES[rank]:
        # lanczos, or a mode torch rejects for this rank (torch raises its own error)
        return f"mode={mode!r} on {rank}-D input (pyseg: {', '.join(_KERNEL_MODES[rank])})"
    if antialias and not (rank == 4 and mode in ("bilinear", "bicubic")):
        return f"antialias=True with mode={mode!r} on {rank}-D input"  # torch's error
    # pyseg.ops.interpolate's choice of operator
    kernel = "upsample2d" if rank == 4 and mode in _MODES and not antialias else "upsample"
    return _tensors_why_not(kernel, input)


def _conv_transpose_why_not(dims: int, kernel: str) -> Callable[..., str | None]:
    """The check of ``F.conv_transpose{dims}d``'s arguments (``kernel``: pyseg's operator)."""

    def why_not(input: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
                output_padding: Any = 0, groups: Any = 1, dilation: Any = 1) -> str | None:
        if not isinstance(input, Tensor) or not isinstance(weight, Tensor):
            return "input or weight is not a Tensor"
        if input.dim() not in (dims + 1, dims + 2) or weight.dim() != dims + 2:
            return (f"{input.dim()}-D input, {weight.dim()}-D weight (pyseg: {dims + 1}-D or "
                    f"{dims + 2}-D, {dims + 2}-D)")
        if weight.dtype != input.dtype or (isinstance(bias, Tensor) and bias.dtype != input.dtype):
            return "mixed dtypes"  # torch's error
        return _tensors_why_not(kernel, input, weight, bias)

    return why_not


def _max_unpool_why_not(dims: int, kernel: str) -> Callable[..., str | None]:
    """The check of ``F.max_unpool{dims}d``'s arguments (``kernel``: pyseg's operator)."""

    def why_not(input: Any, indices: Any, kernel_size: Any, stride: Any = None,
                padding: Any = 0, output_size: Any = None) -> str | None:
        if not isinstance(input, Tensor) or not isinstance(indices, Tensor):
            return "input or indices is not a Tensor"
        if input.dim() not in (dims + 1, dims + 2):
            return f"{input.dim()}-D input (pyseg: {dims + 1}-D or {dims + 2}-D)"
        if indices.dtype != torch.int64 or indices.device != input.device:
            return "indices not int64 on the input's device"  # torch's error
        return _tensors_why_not(kernel, input, indices)

    return why_not


def _grid_sample_why_not(input: Any, grid: Any, mode: Any = "bilinear",
                         padding_mode: Any = "zeros", align_corners: Any = None) -> str | None:
    if not isinstance(input, Tensor) or not isinstance(grid, Tensor):
        return "input or grid is not a Tensor"
    if input.dim() not in (4, 5) or grid.dim() != input.dim():
        return f"{input.dim()}-D input, {grid.dim()}-D grid (pyseg: both 4-D or both 5-D)"
    if mode not in _GRID_MODES:
        return f"mode={mode!r}"  # torch's error
    if padding_mode not in _GRID_PADDING_MODES:
        return f"padding_mode={padding_mode!r}"  # torch's error
    if mode == "bicubic" and input.dim() == 5:
        return "mode='bicubic' on 5-D input"  # torch's error
    if grid.dtype != input.dtype or grid.device != input.device:
        return "mixed dtypes or devices"  # torch's error
    return _tensors_why_not("grid_sample", input, grid)


def _grid_sample(input: Tensor, grid: Tensor, mode: str = "bilinear",
                 padding_mode: str = "zeros", align_corners: bool | None = None) -> Tensor:
    """pyseg's grid_sample with torch's warning for ``align_corners=None``."""
    if align_corners is None:
        warnings.warn(
            "Default grid_sample and affine_grid behavior has changed "
            "to align_corners=False since 1.3.0. Please specify "
            "align_corners=True if the old behavior is desired. "
            "See the documentation of grid_sample for details.",
            stacklevel=3,
        )
    return pyseg.ops.grid_sample(input, grid, mode, padding_mode, bool(align_corners))


def _deform_tensors_why_not(*tensors: Any) -> str | None:
    if not all(isinstance(t, Tensor) for t in tensors if t is not None):
        return "an argument is not a Tensor"
    present = [t for t in tensors if t is not None]
    if any(t.dim() != 4 for t in present[:3]):
        return "input, weight and offset must be 4-D"  # torch's error
    if any(t.dtype != present[0].dtype or t.device != present[0].device for t in present):
        return "mixed dtypes or devices"  # torchvision's error
    return _tensors_why_not("deform_conv2d", *present)


def _deform_conv2d_why_not(input: Any, offset: Any, weight: Any, bias: Any = None,
                           stride: Any = (1, 1), padding: Any = (0, 0), dilation: Any = (1, 1),
                           mask: Any = None) -> str | None:
    """The arguments of ``torchvision.ops.deform_conv2d`` (the Python function)."""
    return _deform_tensors_why_not(input, weight, offset, mask, bias)


def _deform_op_why_not(input: Any, weight: Any, offset: Any, mask: Any, bias: Any,
                       *params: Any) -> str | None:
    """The arguments of ``torch.ops.torchvision.deform_conv2d`` (pyseg's op has that schema)."""
    return _deform_tensors_why_not(input, weight, offset, mask, bias)


def _deform_op(*args: Any) -> Tensor:
    out: Tensor = _library.op("deform_conv2d")(*args)
    return out


def _torchvision_deform_conv2d(*args: Any, **kwargs: Any) -> Tensor:
    import torchvision.ops  # type: ignore[import-untyped]

    out: Tensor = torchvision.ops.deform_conv2d(*args, **kwargs)
    return out


@dataclass(frozen=True)
class _Route:
    op: str
    why_not: Callable[..., str | None]  # None: pyseg takes these arguments
    pyseg: Callable[..., Tensor]


# The Python-level functions, by the name the converted modules (pyseg.nn.convert) use.
_ROUTES: dict[str, _Route] = {
    "interpolate": _Route("interpolate", _interpolate_why_not, pyseg.ops.interpolate),
    "conv_transpose1d": _Route("conv_transpose1d",
                               _conv_transpose_why_not(1, "conv_transpose2d"),
                               pyseg.ops.conv_transpose1d),
    "conv_transpose2d": _Route("conv_transpose2d",
                               _conv_transpose_why_not(2, "conv_transpose2d"),
                               pyseg.ops.conv_transpose2d),
    "conv_transpose3d": _Route("conv_transpose3d",
                               _conv_transpose_why_not(3, "conv_transpose3d"),
                               pyseg.ops.conv_transpose3d),
    "max_unpool1d": _Route("max_unpool1d", _max_unpool_why_not(1, "max_unpool2d"),
                           pyseg.ops.max_unpool1d),
    "max_unpool2d": _Route("max_unpool2d", _max_unpool_why_not(2, "max_unpool2d"),
                           pyseg.ops.max_unpool2d),
    "max_unpool3d": _Route("max_unpool3d", _max_unpool_why_not(3, "max_unpool3d"),
                           pyseg.ops.max_unpool3d),
    "grid_sample": _Route("grid_sample", _grid_sample_why_not, _grid_sample),
    "deform_conv2d": _Route("deform_conv2d", _deform_conv2d_why_not, pyseg.ops.deform_conv2d),
}
# The torch function each op of _ROUTES stands in for (torch.conv_transpose*d is
# F.conv_transpose*d, what nn.ConvTranspose*d calls); deform_conv2d is handled apart.
_TORCH_FUNCTIONS: dict[str, Any] = {
    "interpolate": F.interpolate,
    "conv_transpose1d": torch.conv_transpose1d,
    "conv_transpose2d": torch.conv_transpose2d,
    "conv_transpose3d": torch.conv_transpose3d,
    "max_unpool1d": F.max_unpool1d,
    "max_unpool2d": F.max_unpool2d,
    "max_unpool3d": F.max_unpool3d,
    "grid_sample": F.grid_sample,
}
_DEFORM_OP_ROUTE = _Route("deform_conv2d", _deform_op_why_not, _deform_op)


def check_ops(ops: Iterable[str] | None, argument: str = "ops") -> tuple[str, ...]:
    """``ops`` as a tuple (all of :data:`OPS` when None); a ValueError names an unknown one."""
    if ops is None:
        return OPS
    if isinstance(ops, str):
        ops = (ops,)
    chosen = tuple(ops)
    unknown = [op for op in chosen if op not in OPS]
    if unknown:
        raise ValueError(f"{argument}: unknown op {', '.join(map(repr, unknown))} "
                         f"(known: {', '.join(OPS)})")
    return chosen


def why_not(op: str, *args: Any, **kwargs: Any) -> str | None:
    """Why pyseg's kernel for ``op`` (one of :data:`OPS`) would not take these arguments
    (``args`` and ``kwargs``, as the torch / torchvision function it stands in for takes
    them); None when it would. Raises ``ValueError`` for an unknown ``op``.

    Example::

        >>> pyseg.routing.why_not("interpolate", torch.rand(1, 1, 4), size=2, mode="lanczos")
        "mode='lanczos' on 3-D input (pyseg: nearest, nearest-exact, linear, area)"
        >>> print(pyseg.routing.why_not("interpolate", torch.rand(1, 1, 4), scale_factor=2))
        None
    """
    return _ROUTES[check_ops((op,))[0]].why_not(*args, **kwargs)


@dataclass
class RoutingStats:
    """Calls seen by a :class:`KernelMode` (or the modules of :func:`pyseg.nn.convert`).

    ``to_pyseg[op]`` counts the calls pyseg computed, ``to_torch[(op, reason)]`` those left
    to torch and why (both start empty). ``str()`` gives one line per count.

    Example::

        >>> from pyseg.routing import RoutingStats
        >>> stats = RoutingStats()
        >>> stats.record("interpolate", None)
        >>> stats.record("interpolate", "dtype uint8")
        >>> print(stats)
        interpolate: 1 call(s) to pyseg
        interpolate: 1 call(s) to torch (dtype uint8)
    """

    # Plain dicts, not Counters: torch.compile can trace a mode being built.
    to_pyseg: dict[str, int] = field(default_factory=dict)
    to_torch: dict[tuple[str, str], int] = field(default_factory=dict)

    def record(self, op: str, reason: str | None) -> None:
        """Count one call of ``op``: to pyseg when ``reason`` is None."""
        if torch.compiler.is_compiling():
            return  # a trace is not a call
        if reason is None:
            self.to_pyseg[op] = self.to_pyseg.get(op, 0) + 1
        else:
            self.to_torch[(op, reason)] = self.to_torch.get((op, reason), 0) + 1

    def clear(self) -> None:
        """Forget every count."""
        self.to_pyseg.clear()
        self.to_torch.clear()

    def __str__(self) -> str:
        lines = [f"{op}: {n} call(s) to pyseg" for op, n in sorted(self.to_pyseg.items())]
        lines += [f"{op}: {n} call(s) to torch ({reason})"
                  for (op, reason), n in sorted(self.to_torch.items())]
        return "\n".join(lines) or "no call of a routable op"


# The stats the converted modules of pyseg.nn.convert record into (see call()).
_module_stats: list[RoutingStats] = []


def call(op: str, torch_fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``torch_fn(*args, **kwargs)``, computed by pyseg's kernel for ``op`` (one of
    :data:`OPS`) when it takes these arguments (the converted modules of
    :func:`pyseg.nn.convert` call this). Counted in the stats of every active
    :class:`KernelMode`. Raises what ``torch_fn`` or the kernel raises for bad arguments.

    Example::

        >>> x = torch.rand(1, 2, 4, 4)
        >>> with pyseg.kernels() as mode:
        ...     y = pyseg.routing.call("interpolate", F.interpolate, x, scale_factor=2)
        >>> y.shape, mode.stats.to_pyseg
        (torch.Size([1, 2, 8, 8]), {'interpolate': 1})
    """
    route = _ROUTES[op]
    if route.why_not(*args, **kwargs) is None:
        for stats in _module_stats:
            stats.record(op, None)
        return route.pyseg(*args, **kwargs)
    # An active KernelMode sees this call and counts it with the reason.
    return torch_fn(*args, **kwargs)


class KernelMode(TorchFunctionMode):
    """The mode :func:`kernels` returns; :attr:`stats` (a :class:`RoutingStats`) counts what
    it routed. ``ops`` are the names of :data:`OPS` it routes (None: all); ``ValueError``
    for an unknown one.

    Example: only ``max_unpool2d`` is routed, so ``interpolate`` stays with torch, uncounted::

        >>> from pyseg.routing import KernelMode
        >>> with KernelMode(ops=["max_unpool2d"]) as mode:
        ...     y = F.interpolate(torch.rand(1, 1, 4, 4), scale_factor=2)
        >>> mode.ops, mode.stats.to_pyseg
        (('max_unpool2d',), {})
    """

    def __init__(self, ops: Iterable[str] | None = None) -> None:
        super().__init__()
        self.ops = check_ops(ops)
        self.stats = RoutingStats()
        table: dict[Any, _Route] = {
            _TORCH_FUNCTIONS[op]: _ROUTES[op] for op in self.ops if op in _TORCH_FUNCTIONS}
        # torchvision's op exists once torchvision is imported, as any model using it has.
        if "deform_conv2d" in self.ops and "torchvision" in sys.modules:
            packet = torch.ops.torchvision.deform_conv2d
            table[packet] = table[packet.default] = _DEFORM_OP_ROUTE
        self._table = table

    def __enter__(self) -> Self:
        _module_stats.append(self.stats)
        super().__enter__()  # type: ignore[no-untyped-call]
        return self

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)  # type: ignore[no-untyped-call]
        _module_stats.remove(self.stats)

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        route = self._table.get(func)
        if route is not None:
            reason = route.why_not(*args, **kwargs)
            self.stats.record(route.op, reason)
            if reason is None:
                return route.pyseg(*args, **kwargs)
        return func(*args, **kwargs)


def kernels(ops: Iterable[str] | None = None) -> KernelMode:
    """A context manager that sends torch's functional calls to pyseg's kernels.

    Args:
        ops: which of :data:`OPS` to route (default: all).

    Returns:
        A :class:`KernelMode`; ``with pyseg.kernels() as mode: ...`` then ``mode.stats``
        tells what went to pyseg and what stayed with torch (and why).

    Raises:
        ValueError: an unknown name in ``ops``.

    Example::

        >>> with pyseg.kernels() as mode:
        ...     y = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8), scale_factor=2,
        ...                                         mode="bilinear")
        >>> mode.stats.to_pyseg["interpolate"]
        1
    """
    return KernelMode(ops)
