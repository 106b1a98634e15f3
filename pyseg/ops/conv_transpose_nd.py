"""conv_transpose1d and conv_transpose3d, the 1-D and 3-D transposed convolutions.

conv_transpose1d is :func:`pyseg.ops.conv_transpose2d` on a unit height (exact: the same
sums); conv_transpose3d has its own operator (csrc/ops/conv_transpose3d), whose CPU kernels
follow conv_transpose2d's on three axes: per output phase a gather into columns and one GEMM
with the packed weight (or, for kernel <= stride, one GEMM of the input read in place),
NCDHW and channels_last_3d each in their own layout, the backward as a conv3d of grad_output
plus grad_weight in fixed chunks (deterministic for any thread count).
"""

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
    register_autograd_per_namespace,
    register_fake,
)
from pyseg.ops.conv_transpose import conv_transpose2d

__all__ = ["conv_transpose1d", "conv_transpose3d"]

IntOrSeq = int | Sequence[int]


def _conv_tuple(value: Any, name: str, n: int) -> tuple[int, ...]:
    """An int or a sequence of 1 or ``n`` ints as an ``n``-tuple; a sequence of another
    length raises torch's RuntimeError, anything else a TypeError naming the argument."""
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
        raise RuntimeError(
            f"expected {name} to be a single integer value or a list of {n} values to match the "
            f"convolution dimensions, but got {name}={items}"
        )
    if not all(isinstance(v, int | torch.SymInt) and not isinstance(v, bool) for v in items):
        raise TypeError(f"{name} must be an int or a sequence of {n} ints, got {value!r}")
    return tuple(items)


def _check_tensors(input: Any, weight: Any, bias: Any) -> None:
    if not isinstance(input, Tensor):
        raise TypeError(f"input must be a Tensor, got {type(input).__name__}")
    if not isinstance(weight, Tensor):
        raise TypeError(f"weight must be a Tensor, got {type(weight).__name__}")
    if bias is not None and not isinstance(bias, Tensor):
        raise TypeError(f"bias must be a Tensor or None, got {type(bias).__name__}")


def conv_transpose1d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrSeq = 1,
    padding: IntOrSeq = 0,
    output_padding: IntOrSeq = 0,
    groups: int = 1,
    dilation: IntOrSeq = 1,
) -> Tensor:
    """1-D transposed convolution, with the semantics of
    :func:`torch.nn.functional.conv_transpose1d`.

    ``input`` is ``(N, C_in, L)`` or unbatched ``(C_in, L)``, ``weight``
    ``(C_in, C_out / groups, k)``, ``bias`` ``(C_out,)``; the output length is
    ``(L - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1``. Computed
    exactly by :func:`pyseg.ops.conv_transpose2d` on a unit height (as torch does), so it
    runs pyseg's 2-D CPU and CUDA kernels at their speed, forward and backward
    (deterministic).

    Raises:
        TypeError: a non-tensor input, weight or bias, or a non-int argument.
        RuntimeError: bad shapes or arguments (torch's messages).

    Example::

        >>> x = torch.tensor([[[1., 2.]]])
        >>> k = torch.tensor([[[1., 10.]]])
        >>> pyseg.ops.conv_transpose1d(x, k)
        tensor([[[ 1., 12., 20.]]])
    """
    _check_tensors(input, weight, bias)
    stride_, padding_, output_padding_, dilation_ = (
        _conv_tuple(v, name, 1)
        for v, name in ((stride, "stride"), (padding, "padding"),
                        (output_padding, "output_padding"), (dilation, "dilation"))
    )
    if input.dim() not in (2, 3):
        raise RuntimeError(
            "Expected 2D (unbatched) or 3D (batched) input to conv_transpose1d, but got input "
            f"of size: {list(input.shape)}"
        )
    if weight.dim() != 3:
        raise RuntimeError(
            f"Expected 3-dimensional weight for conv_transpose1d, but got {weight.dim()}-"
            f"dimensional weight of size {list(weight.shape)} instead"
        )
    out = conv_transpose2d(
        input.unsqueeze(-2), weight.unsqueeze(-2), bias, (1, stride_[0]), (0, padding_[0]),
        (0, output_padding_[0]), groups, (1, dilation_[0]),
    )
    return out.squeeze(-2)


def conv_transpose3d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrSeq = 1,
    padding: IntOrSeq = 0,
    output_padding: IntOrSeq = 0,
    groups: int = 1,
    dilation: IntOrSeq = 1,
) -> Tensor:
    """3-D transposed convolution, with the semantics of
    :func:`torch.nn.functional.conv_transpose3d`.

    ``input`` is ``(N, C_in, D, H, W)`` or unbatched ``(C_in, D, H, W)``, ``weight``
    ``(C_in, C_out / groups, kD, kH, kW)``, ``bias`` ``(C_out,)``. Per axis the output size
    is ``(in - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1``; every
    argument but ``groups`` is an int or 3 ints. A channels_last_3d input (or weight) gives
    a channels_last_3d output. Differentiable in ``input``, ``weight`` and ``bias``; forward
    and backward are deterministic on every device. float32 and float64; float16 and
    bfloat16 are computed in float32 and rounded once.

    Raises:
        TypeError: a non-tensor input, weight or bias, or a non-int argument.
        RuntimeError: bad shapes or arguments (torch's messages).
        ValueError: an output whose size does not fit in int64.

    Example::

        >>> x = torch.ones(1, 1, 1, 1, 2)
        >>> k = torch.tensor([1., 10.]).reshape(1, 1, 1, 1, 2)
        >>> pyseg.ops.conv_transpose3d(x, k).flatten()
        tensor([ 1., 11., 10.])
    """
    _check_tensors(input, weight, bias)
    stride_, padding_, output_padding_, dilation_ = (
        _conv_tuple(v, name, 3)
        for v, name in ((stride, "stride"), (padding, "padding"),
                        (output_padding, "output_padding"), (dilation, "dilation"))
    )
    for value, name in ((stride_, "stride"), (padding_, "padding"),
                        (output_padding_, "output_padding"), (dilation_, "dilation"),
                        (groups, "groups")):
        check_int64(value, name)
    if input.dim() not in (4, 5):
        raise RuntimeError(
            "Expected 4D (unbatched) or 5D (batched) input to conv_transpose3d, but got input "
            f"of size: {list(input.shape)}"
        )
    out: Tensor = op("conv_transpose3d")(
        input, weight, bias, list(stride_), list(padding_), list(output_padding_), groups,
        list(dilation_),
    )
    return out


def _suggests_channels_last_3d(t: Tensor) -> bool:
    if t.dim() != 5:
        return False
    from torch._prims_common import suggest_memory_format

    return suggest_memory_format(t) == torch.channels_last_3d


@register_fake("conv_transpose3d")
def _conv_transpose3d_fake(
    input: Tensor, weight: Tensor, bias: Tensor | None, stride: Sequence[int],
    padding: Sequence[int], output_padding: Sequence[int], groups: int, dilation: Sequence[int],
) -> Tensor:
    torch._check(input.dim() in (4, 5), lambda: "Expected 4D or 5D input to conv_transpose3d")
    torch._check(weight.dim() == 5, lambda: "Expected 5-dimensional weight for conv_transpose3d")
    torch._check(input.dtype == weight.dtype, lambda: "input and weight dtypes differ")
    torch._check(input.shape[-4] == weight.shape[0], lambda: "input channels != weight.size(0)")
    torch._check(all(k > 0 for k in weight.shape[2:]),
                 lambda: "kernel size should be greater than zero")
    torch._check(weight.numel() > 0,
                 lambda: f"non-empty 5D weight tensor expected, but got: {list(weight.shape)}")
    check_same_device("conv_transpose3d", ("input", input), ("weight", weight), ("bias", bias))
    torch._check(min(stride) > 0, lambda: "non-positive stride is not supported")
    torch._check(min(padding) >= 0, lambda: "negative padding is not supported")
    torch._check(min(output_padding) >= 0, lambda: "negative output_padding is not supported")
    torch._check(min(dilation) > 0, lambda: "dilation should be greater than zero")
    torch._check(groups > 0, lambda: "non-positive groups is not supported")
    spatial = [
        (input.shape[-3 + d] - 1) * stride[d] - 2 * padding[d]
        + dilation[d] * (weight.shape[2 + d] - 1) + output_padding[d] + 1
        for d in range(3)
    ]
    torch._check(all(s > 0 for s in spatial),
                 lambda: f"Calculated output size per channel: {spatial}. Output size is too small")
    batched = input.dim() == 5
    shape = [weight.shape[1] * groups, *spatial]
    if batched:
        shape = [input.shape[0], *shape]
    checked_shape("conv_transpose3d", shape, "stride, dilation, kernel size or output_padding")
    out = input.new_empty(shape)
    if batched and (_suggests_channels_last_3d(input) or _suggests_channels_last_3d(weight)):
        out = out.contiguous(memory_format=torch.channels_last_3d)
    return out


@register_fake("conv_transpose3d_backward")
def _conv_transpose3d_backward_fake(
    grad_output: Tensor, input: Tensor, weight: Tensor, stride: Sequence[int],
    padding: Sequence[int], output_padding: Sequence[int], groups: int, dilation: Sequence[int],
    output_mask: Sequence[bool],
) -> tuple[Tensor, Tensor, Tensor]:
    check_same_device("conv_transpose3d_backward", ("input", input), ("grad_output", grad_output),
                      ("weight", weight))
    batched = input.dim() == 5
    channels_last = batched and (
        _suggests_channels_last_3d(input) or _suggests_channels_last_3d(weight)
    )
    empty = input.new_empty(0)
    grad_input = empty
    if output_mask[0]:
        grad_input = input.new_empty(input.shape)
        if channels_last:
            grad_input = grad_input.contiguous(memory_format=torch.channels_last_3d)
    grad_weight = weight.new_empty(weight.shape) if output_mask[1] else empty
    grad_bias = input.new_empty(weight.shape[1] * groups) if output_mask[2] else empty
    return grad_input, grad_weight, grad_bias


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    input, weight, bias, stride, padding, output_padding, groups, dilation = inputs
    ctx.save_for_backward(input, weight)
    ctx.args = (stride, padding, output_padding, groups, dilation)
    ctx.has_bias = bias is not None


def _make_backward(ops: Any) -> Callable[[Any, Tensor], tuple[Tensor | None, ...]]:
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        input, weight = ctx.saved_tensors
        mask = [
            ctx.needs_input_grad[0],
            ctx.needs_input_grad[1],
            ctx.has_bias and ctx.needs_input_grad[2],
        ]
        nothing: tuple[None, ...] = (None,) * 5
        if not any(mask):
            return (None, None, None, *nothing)
        gi, gw, gb = ops.conv_transpose3d_backward(grad, input, weight, *ctx.args, mask)
        return (
            gi if mask[0] else None,
            gw if mask[1] else None,
            gb if mask[2] else None,
            *nothing,
        )

    return backward


register_autograd_per_namespace("conv_transpose3d", _make_backward, _setup_context)
