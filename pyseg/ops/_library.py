"""Plumbing shared by every operator wrapper.

Each operator exists twice: ``torch.ops.pyseg.<name>`` (CPU and CUDA kernels) and, when
``pyseg._emu`` is built, ``torch.ops.pyseg_emu.<name>`` (the CUDA kernels run on the CPU by
the emulator). The wrappers in this package call ``op("name")``, which resolves to the
current namespace; tests switch to the emulator with ``emulated()``. Autograd and fake
kernels are registered for both namespaces by ``register_autograd_per_namespace`` and
``register_fake``.

While ``torch.onnx.export`` traces a model, ``op("name")`` resolves to the op's ONNX
translation instead (see pyseg/ops/_onnx.py).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import torch

from pyseg import _loader
from pyseg.ops._onnx import TRANSLATIONS

NAMESPACES: tuple[str, ...] = ("pyseg", "pyseg_emu") if _loader._emu is not None else ("pyseg",)

_Fn = TypeVar("_Fn", bound=Callable[..., Any])

_state = threading.local()


def namespace() -> str:
    """The namespace the wrappers dispatch to in this thread (``"pyseg"`` by default)."""
    return getattr(_state, "namespace", "pyseg")


def _onnx_exporting() -> bool:
    # Exporting implies tracing, and is_compiling() is a cheap flag, so eager calls skip the
    # slower ONNX check; torch.onnx is imported by whoever exports, never by pyseg.
    if not torch.compiler.is_compiling():
        return False
    onnx = sys.modules.get("torch.onnx")
    return onnx is not None and onnx.is_in_onnx_export()


def op(name: str) -> Any:
    """``torch.ops.<current namespace>.<name>``, or its ONNX translation while
    ``torch.onnx.export`` runs."""
    if _onnx_exporting():
        if name not in TRANSLATIONS:
            raise RuntimeError(f"pyseg::{name} has no ONNX translation")
        return TRANSLATIONS[name]
    return getattr(getattr(torch.ops, namespace()), name)


@contextlib.contextmanager
def emulated() -> Iterator[None]:
    """Route pyseg's wrappers to the emulated CUDA kernels (``torch.ops.pyseg_emu``).

    Inputs stay on the CPU; the CUDA launch code and kernels run under the emulator.
    Raises RuntimeError when pyseg was built without ``PYSEG_EMU=1``.
    """
    if "pyseg_emu" not in NAMESPACES:
        raise RuntimeError("pyseg was built without the CUDA emulator; rebuild with PYSEG_EMU=1")
    previous = namespace()
    _state.namespace = "pyseg_emu"
    try:
        yield
    finally:
        _state.namespace = previous


def register_fake(name: str) -> Callable[[_Fn], _Fn]:
    """Decorator: the fake (meta) kernel of ``name`` in every namespace."""

    def decorate(fn: _Fn) -> _Fn:
        for ns in NAMESPACES:
            torch.library.register_fake(f"{ns}::{name}", fn)
        return fn

    return decorate


def register_autograd_per_namespace(
    name: str,
    make_backward: Callable[[Any], Callable[..., Any]],
    setup_context: Callable[[Any, tuple[Any, ...], Any], None],
) -> None:
    """Register autograd for ``name`` in every namespace, each with its own backward.

    ``make_backward(ops)`` gets the namespace's ``torch.ops.<ns>`` and returns the backward
    function for that namespace, so the emulated forward is differentiated by the emulated
    backward kernels.
    """
    for ns in NAMESPACES:
        torch.library.register_autograd(
            f"{ns}::{name}", make_backward(getattr(torch.ops, ns)), setup_context=setup_context
        )


def pair(
    value: Any,
    name: str,
    *,
    length_error: type[Exception] = ValueError,
    dims: str = "spatial",
) -> tuple[int, int]:
    """An int, or a sequence of one or two ints, as a pair of ints.

    Anything else raises ``TypeError`` naming the argument. A sequence of another length
    raises ``length_error`` with torch's wording, e.g. for ``conv_transpose2d``
    (``length_error=RuntimeError, dims="convolution"``, torch's exact message):
    "expected stride to be a single integer value or a list of 2 values to match the
    convolution dimensions, but got stride=[1, 2, 3]".
    """
    if isinstance(value, int | torch.SymInt) and not isinstance(value, bool):
        return (value, value)  # type: ignore[return-value]  # a SymInt stands for an int
    if isinstance(value, bool | str):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    try:
        items = list(value)
    except TypeError:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}") from None
    if len(items) == 1:
        items = items * 2
    if len(items) != 2:
        raise length_error(
            f"expected {name} to be a single integer value or a list of 2 values to match the "
            f"{dims} dimensions, but got {name}={items}"
        )
    if not all(isinstance(v, int | torch.SymInt) and not isinstance(v, bool) for v in items):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    return (items[0], items[1])


INT64_MAX = 2**63 - 1


def check_int64(value: Any, name: str) -> None:
    """A ValueError naming ``name`` when an int argument does not fit in int64 (the schema's
    type; pybind would refuse it with a message naming nothing)."""
    for v in value if isinstance(value, list | tuple) else (value,):
        if isinstance(v, int) and not -INT64_MAX - 1 <= v <= INT64_MAX:
            raise ValueError(f"{name} must fit in int64 (|value| < 2**63), got {value!r}")


def checked_shape(op_name: str, shape: Sequence[Any], cause: str) -> list[Any]:
    """``shape`` (exact Python ints, or SymInts) when every size and the number of elements
    fit in int64, as the kernels' size arithmetic needs; else a ValueError naming ``cause``,
    the argument that made the size. Symbolic sizes are left to torch's own checks."""
    concrete = [s for s in shape if isinstance(s, int)]
    numel = 1
    for s in concrete:
        numel *= s
    if any(s > INT64_MAX for s in concrete) or numel > INT64_MAX:
        raise ValueError(
            f"{op_name}: the output shape {list(shape)} does not fit in int64 "
            f"({cause} too large)"
        )
    return list(shape)


def check_same_device(op_name: str, *tensors: tuple[str, Any]) -> None:
    """A RuntimeError when the named tensors (``(name, tensor or None)`` pairs, the first is
    the reference) are not on one device. Called by the fake kernels: a CPU tensor mixed with
    a ``meta`` one dispatches to the fake kernel, which must refuse rather than hand back
    uninitialized memory."""
    present = [(name, t) for name, t in tensors if isinstance(t, torch.Tensor)]
    first_name, first = present[0]
    for name, t in present[1:]:
        if t.device != first.device:
            raise RuntimeError(
                f"{op_name}: expected {name} on {first.device} like {first_name}, but got "
                f"{name} on {t.device}"
            )
