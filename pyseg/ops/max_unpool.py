"""max_unpool1d / 2d / 3d: the partial inverse of max pooling, from stored pooling indices.

max_unpool1d is max_unpool2d with a unit trailing axis, exactly as torch computes it;
max_unpool3d has its own operator (the same kernels: a volume is a plane of D*H*W cells)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from pyseg.ops._library import (
    check_int64,
    check_same_device,
    checked_shape,
    op,
    pair,
    register_autograd_per_namespace,
    register_fake,
)

__all__ = ["max_unpool1d", "max_unpool2d", "max_unpool3d"]


def _output_size(
    input: Tensor,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    output_size: Sequence[int] | None,
) -> list[int]:
    # torch.nn.functional._unpool_output_size, with the same messages, for any number of
    # spatial dimensions (the length of kernel_size).
    dims = len(kernel_size)
    default = [
        (input.size(-dims + d) - 1) * stride[d] + kernel_size[d] - 2 * padding[d]
        for d in range(dims)
    ]
    if output_size is None:
        size = default
    else:
        if isinstance(output_size, torch.Size | list | tuple) is False:
            output_size = list(output_size)
        if len(output_size) == dims + 2:
            output_size = output_size[2:]
        if len(output_size) != dims:
            raise ValueError(
                f"output_size should be a sequence containing {dims} or {dims + 2} elements, "
                f"but it has a length of '{len(output_size)}'"
            )
        for d in range(dims):
            lo, hi = default[d] - stride[d], default[d] + stride[d]
            if not (lo < output_size[d] < hi):
                raise ValueError(
                    f'invalid output_size "{output_size}" (dim {d} must be between {lo} and {hi})'
                )
        size = list(output_size)
    for d in range(dims):
        if size[d] < 0:
            raise ValueError(
                "max_unpooling: output_size must contain non-negative spatial dimensions, "
                f"but got output_size[{d}]={size[d]}"
            )
    return size


def _ntuple(value: Any, name: str, n: int) -> tuple[int, ...]:
    """An int, or a sequence of one or ``n`` ints, as an ``n``-tuple (``TypeError`` /
    ``ValueError`` naming the argument otherwise)."""
    if isinstance(value, int | torch.SymInt) and not isinstance(value, bool):
        return (value,) * n  # type: ignore[return-value]  # a SymInt stands for an int
    if isinstance(value, bool | str):
        raise TypeError(f"{name} must be an int or a sequence of {n} ints, got {value!r}")
    try:
        items = list(value)
    except TypeError:
        raise TypeError(f"{name} must be an int or a sequence of {n} ints, got {value!r}") from None
    if len(items) == 1:
        items = items * n
    if len(items) != n:
        raise ValueError(
            f"expected {name} to be a single integer value or a list of {n} values to match the "
            f"spatial dimensions, but got {name}={items}"
        )
    if not all(isinstance(v, int | torch.SymInt) and not isinstance(v, bool) for v in items):
        raise TypeError(f"{name} must be an int or a sequence of {n} ints, got {value!r}")
    return tuple(items)


def max_unpool2d(
    input: Tensor,
    indices: Tensor,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    output_size: Sequence[int] | None = None,
) -> Tensor:
    """Partial inverse of ``max_pool2d``: puts each input value at its stored index.

    Same signature and semantics as :func:`torch.nn.functional.max_unpool2d`: ``input`` is
    ``(N, C, H, W)`` or ``(C, H, W)``, ``indices`` the int64 indices returned by
    ``max_pool2d(..., return_indices=True)`` (flat positions in each output plane), and the
    output size is ``(H - 1) * stride - 2 * padding + kernel_size`` per side unless
    ``output_size`` says otherwise. Every cell no index names is zero. The output keeps the
    input's memory format (channels_last in, channels_last out).

    Differences from torch, all on inputs where torch is ill-defined:

    * Duplicate indices (two inputs naming one cell): the input with the highest position in
      its plane wins, on every device, every time. torch leaves this nondeterministic.
    * An index outside the output plane raises ``RuntimeError`` naming the value and its
      position, on CPU and CUDA alike (no device-side assert, no write out of bounds).

    The gradient is a gather, ``grad_input[i] = grad_output[indices[i]]``, as in torch (with
    duplicate indices every input naming a cell receives that cell's gradient).

    Example::

        >>> x = torch.tensor([[[[1., 2.], [3., 4.]]]])
        >>> pooled, idx = torch.nn.functional.max_pool2d(x, 2, return_indices=True)
        >>> pyseg.ops.max_unpool2d(pooled, idx, 2)
        tensor([[[[0., 0.],
                  [0., 4.]]]])
    """
    kernel_size = pair(kernel_size, "kernel_size")
    stride = kernel_size if stride is None else pair(stride, "stride")
    padding = pair(padding, "padding")
    if not isinstance(input, Tensor):
        raise TypeError(f"input must be a Tensor, got {type(input).__name__}")
    if not isinstance(indices, Tensor):
        raise TypeError(f"indices must be a Tensor, got {type(indices).__name__}")
    if input.dim() not in (3, 4):
        raise RuntimeError(
            "Input to max_unpooling2d should be a 3d or 4d Tensor, but got a tensor with "
            f"{input.dim()} dimensions."
        )
    size = _output_size(input, kernel_size, stride, padding, output_size)
    if output_size is None:
        checked_shape("max_unpool2d", [*input.shape[:-2], *size], "kernel_size or stride")
    else:
        check_int64(size, "output_size")
    out: Tensor = op("max_unpool2d")(input, indices, size)
    return out


def max_unpool1d(
    input: Tensor,
    indices: Tensor,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    output_size: Sequence[int] | None = None,
) -> Tensor:
    """Partial inverse of ``max_pool1d``: puts each input value at its stored index.

    Same signature and semantics as :func:`torch.nn.functional.max_unpool1d`: ``input`` is
    ``(N, C, L)`` or ``(C, L)``, ``indices`` the int64 indices of
    ``max_pool1d(..., return_indices=True)``, and the output length is
    ``(L - 1) * stride - 2 * padding + kernel_size`` unless ``output_size`` says otherwise.
    Computed, as torch computes it, by :func:`max_unpool2d` on a unit trailing axis: the same
    CPU and CUDA kernels, the same speed, the same rules (the input with the highest position
    wins a duplicate index; an index outside the output raises ``RuntimeError`` naming it).

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: a bad ``output_size`` (torch's messages).
        RuntimeError: bad shapes, non-int64 or invalid indices (torch's messages).

    Example::

        >>> x = torch.tensor([[[1., 3., 2., 0.]]])
        >>> pooled, idx = torch.nn.functional.max_pool1d(x, 2, return_indices=True)
        >>> pyseg.ops.max_unpool1d(pooled, idx, 2)
        tensor([[[0., 3., 2., 0.]]])
    """
    kernel = _ntuple(kernel_size, "kernel_size", 1)
    step = kernel if stride is None else _ntuple(stride, "stride", 1)
    pad = _ntuple(padding, "padding", 1)
    if not isinstance(input, Tensor):
        raise TypeError(f"input must be a Tensor, got {type(input).__name__}")
    if not isinstance(indices, Tensor):
        raise TypeError(f"indices must be a Tensor, got {type(indices).__name__}")
    size = _output_size(input, kernel, step, pad, output_size)
    # The 2-D op's checks and messages apply, as in torch (a 4-D input is "not 3d or 4d"
    # once unsqueezed).
    return max_unpool2d(
        input.unsqueeze(-1), indices.unsqueeze(-1), (kernel[0], 1), (step[0], 1), (pad[0], 0),
        output_size=(size[0], 1),
    ).squeeze(-1)


def max_unpool3d(
    input: Tensor,
    indices: Tensor,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    output_size: Sequence[int] | None = None,
) -> Tensor:
    """Partial inverse of ``max_pool3d``: puts each input value at its stored index.

    Same signature and semantics as :func:`torch.nn.functional.max_unpool3d`: ``input`` is
    ``(N, C, D, H, W)`` or ``(C, D, H, W)``, ``indices`` the int64 indices returned by
    ``max_pool3d(..., return_indices=True)`` (flat positions in each output volume), and the
    output size is ``(D - 1) * stride - 2 * padding + kernel_size`` per axis unless
    ``output_size`` says otherwise. Every cell no index names is zero. The output keeps the
    input's memory format (channels_last_3d in, channels_last_3d out).

    As :func:`max_unpool2d` (same kernels, CPU and CUDA): a duplicate index goes to the input
    with the highest position in its volume, on every device, every time (torch leaves it
    nondeterministic); an index outside the output volume raises ``RuntimeError`` naming the
    value and its position. The gradient is a gather,
    ``grad_input[i] = grad_output[indices[i]]``.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: a bad ``output_size`` (torch's messages).
        RuntimeError: bad shapes, non-positive stride, non-int64 or invalid indices (torch's
            messages).

    Example::

        >>> x = torch.arange(8.).reshape(1, 1, 2, 2, 2)
        >>> pooled, idx = torch.nn.functional.max_pool3d(x, 2, return_indices=True)
        >>> pyseg.ops.max_unpool3d(pooled, idx, 2).flatten()
        tensor([0., 0., 0., 0., 0., 0., 0., 7.])
    """
    kernel = _ntuple(kernel_size, "kernel_size", 3)
    step = kernel if stride is None else _ntuple(stride, "stride", 3)
    pad = _ntuple(padding, "padding", 3)
    if not isinstance(input, Tensor):
        raise TypeError(f"input must be a Tensor, got {type(input).__name__}")
    if not isinstance(indices, Tensor):
        raise TypeError(f"indices must be a Tensor, got {type(indices).__name__}")
    if input.dim() not in (4, 5):
        raise RuntimeError(
            "Input to max_unpooling3d should be a 4d or 5d Tensor, but got a tensor with "
            f"{input.dim()} dimensions."
        )
    if not all(s > 0 for s in step):
        raise RuntimeError(f"strides should be greater than zero, but got stride: {list(step)}")
    size = _output_size(input, kernel, step, pad, output_size)
    if output_size is None:
        checked_shape("max_unpool3d", [*input.shape[:-3], *size], "kernel_size or stride")
    else:
        check_int64(size, "output_size")
    out: Tensor = op("max_unpool3d")(input, indices, size)
    return out


@register_fake("max_unpool2d")
def _max_unpool2d_fake(self: Tensor, indices: Tensor, output_size: Sequence[int]) -> Tensor:
    torch._check(indices.dtype == torch.int64, lambda: "elements in indices should be type int64")
    torch._check(self.dim() in (3, 4), lambda: "Input to max_unpooling2d should be a 3d or 4d Tensor")
    torch._check(self.shape == indices.shape, lambda: "Expected shape of indices to be same as that of the input tensor")
    torch._check(len(output_size) == 2, lambda: "There should be exactly two elements (height, width) in output_size")
    check_same_device("max_unpool2d", ("input", self), ("indices", indices))
    torch._check(all(self.shape[d] > 0 for d in range(1, self.dim())),
                 lambda: "max_unpooling2d_forward(): Expected input to have non-zero size for "
                         f"non-batch dimensions, but got {list(self.shape)}")
    torch._check(output_size[0] >= 0 and output_size[1] >= 0,
                 lambda: f"max_unpool2d: output_size must be non-negative, but got {output_size}")
    shape = checked_shape("max_unpool2d", [*self.shape[:-2], *output_size], "output_size")
    memory_format = (
        torch.channels_last
        if self.dim() == 4 and _suggests_channels_last(self)
        else torch.contiguous_format
    )
    return self.new_empty(shape).contiguous(memory_format=memory_format)


def _suggests_channels_last(t: Tensor) -> bool:
    return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


@register_fake("max_unpool2d_backward")
def _max_unpool2d_backward_fake(grad_output: Tensor, indices: Tensor) -> Tensor:
    torch._check(indices.dtype == torch.int64, lambda: "elements in indices should be type int64")
    check_same_device("max_unpool2d_backward", ("grad_output", grad_output), ("indices", indices))
    memory_format = (
        torch.channels_last
        if indices.dim() == 4 and _suggests_channels_last(indices)
        else torch.contiguous_format
    )
    return grad_output.new_empty(indices.shape).contiguous(memory_format=memory_format)


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    _, indices, output_size = inputs
    ctx.save_for_backward(indices)
    ctx.output_size = output_size


def _make_backward(ops: Any) -> Callable[[Any, Tensor], tuple[Tensor, None, None]]:
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        (indices,) = ctx.saved_tensors
        return ops.max_unpool2d_backward(grad, indices), None, None

    return backward


register_autograd_per_namespace("max_unpool2d", _make_backward, _setup_context)


def _setup_context_backward(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    grad_output, indices = inputs
    ctx.save_for_backward(indices)
    ctx.output_size = list(grad_output.shape[-2:])


def _make_double_backward(ops: Any) -> Callable[[Any, Tensor], tuple[Tensor, None]]:
    # max_unpool2d_backward is linear in grad_output; its adjoint is the unpool itself.
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (indices,) = ctx.saved_tensors
        return ops.max_unpool2d(grad, indices, ctx.output_size), None

    return backward


register_autograd_per_namespace("max_unpool2d_backward", _make_double_backward, _setup_context_backward)


@register_fake("max_unpool3d")
def _max_unpool3d_fake(self: Tensor, indices: Tensor, output_size: Sequence[int]) -> Tensor:
    torch._check(indices.dtype == torch.int64, lambda: "elements in indices should be type int64")
    torch._check(self.dim() in (4, 5), lambda: "Input to max_unpooling3d should be a 4d or 5d Tensor")
    torch._check(self.shape == indices.shape, lambda: "Expected shape of indices to be same as that of the input tensor")
    torch._check(len(output_size) == 3, lambda: "There should be exactly three elements (depth, height, width) in output_size")
    check_same_device("max_unpool3d", ("input", self), ("indices", indices))
    torch._check(all(self.shape[d] > 0 for d in range(1, self.dim())),
                 lambda: "max_unpooling3d_forward(): Expected input to have non-zero size for "
                         f"non-batch dimensions, but got {list(self.shape)}")
    torch._check(all(s >= 0 for s in output_size),
                 lambda: f"max_unpool3d: output_size must be non-negative, but got {output_size}")
    shape = checked_shape("max_unpool3d", [*self.shape[:-3], *output_size], "output_size")
    memory_format = (
        torch.channels_last_3d
        if self.dim() == 5 and _suggests_channels_last_3d(self)
        else torch.contiguous_format
    )
    return self.new_empty(shape).contiguous(memory_format=memory_format)


def _suggests_channels_last_3d(t: Tensor) -> bool:
    return t.is_contiguous(memory_format=torch.channels_last_3d) and not t.is_contiguous()


@register_fake("max_unpool3d_backward")
def _max_unpool3d_backward_fake(grad_output: Tensor, indices: Tensor) -> Tensor:
    torch._check(indices.dtype == torch.int64, lambda: "elements in indices should be type int64")
    check_same_device("max_unpool3d_backward", ("grad_output", grad_output), ("indices", indices))
    memory_format = (
        torch.channels_last_3d
        if indices.dim() == 5 and _suggests_channels_last_3d(indices)
        else torch.contiguous_format
    )
    return grad_output.new_empty(indices.shape).contiguous(memory_format=memory_format)


def _make_backward_3d(ops: Any) -> Callable[[Any, Tensor], tuple[Tensor, None, None]]:
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        (indices,) = ctx.saved_tensors
        return ops.max_unpool3d_backward(grad, indices), None, None

    return backward


def _setup_context_backward_3d(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    grad_output, indices = inputs
    ctx.save_for_backward(indices)
    ctx.output_size = list(grad_output.shape[-3:])


def _make_double_backward_3d(ops: Any) -> Callable[[Any, Tensor], tuple[Tensor, None]]:
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (indices,) = ctx.saved_tensors
        return ops.max_unpool3d(grad, indices, ctx.output_size), None

    return backward


register_autograd_per_namespace("max_unpool3d", _make_backward_3d, _setup_context)
register_autograd_per_namespace(
    "max_unpool3d_backward", _make_double_backward_3d, _setup_context_backward_3d
)
