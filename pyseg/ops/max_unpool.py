"""max_unpool2d: the partial inverse of max pooling, from stored pooling indices."""

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

__all__ = ["max_unpool2d"]


def _output_size(
    input: Tensor,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    output_size: Sequence[int] | None,
) -> list[int]:
    # torch.nn.functional._unpool_output_size, with the same messages.
    default = [
        (input.size(-2 + d) - 1) * stride[d] + kernel_size[d] - 2 * padding[d] for d in range(2)
    ]
    if output_size is None:
        size = default
    else:
        if isinstance(output_size, torch.Size | list | tuple) is False:
            output_size = list(output_size)
        if len(output_size) == 4:
            output_size = output_size[2:]
        if len(output_size) != 2:
            raise ValueError(
                "output_size should be a sequence containing 2 or 4 elements, but it has a "
                f"length of '{len(output_size)}'"
            )
        for d in range(2):
            lo, hi = default[d] - stride[d], default[d] + stride[d]
            if not (lo < output_size[d] < hi):
                raise ValueError(
                    f'invalid output_size "{output_size}" (dim {d} must be between {lo} and {hi})'
                )
        size = list(output_size)
    for d in range(2):
        if size[d] < 0:
            raise ValueError(
                "max_unpooling: output_size must contain non-negative spatial dimensions, "
                f"but got output_size[{d}]={size[d]}"
            )
    return size


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
