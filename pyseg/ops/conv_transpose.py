"""conv_transpose2d (the "deconvolution" of decoders) and the dense matrix view of conv2d.

A transposed convolution is the adjoint of a convolution: if ``C`` is the matrix with
``conv2d(x) == C @ vec(x)`` (see :func:`conv2d_matrix`), then
``conv_transpose2d(y) == C.T @ vec(y)`` for the same weight, stride, padding and dilation.
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
    pair,
    register_autograd_per_namespace,
    register_fake,
)

__all__ = ["conv2d_matrix", "conv_transpose2d"]

IntOrPair = int | Sequence[int]


def conv_transpose2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    output_padding: IntOrPair = 0,
    groups: int = 1,
    dilation: IntOrPair = 1,
) -> Tensor:
    """2-D transposed convolution, with the semantics of
    :func:`torch.nn.functional.conv_transpose2d`.

    ``input`` is ``(N, C_in, H, W)`` or unbatched ``(C_in, H, W)``, ``weight`` is
    ``(C_in, C_out / groups, kH, kW)``, ``bias`` ``(C_out,)``. The output is
    ``(N, C_out, H_out, W_out)`` with
    ``H_out = (H - 1) * stride - 2 * padding + dilation * (kH - 1) + output_padding + 1``
    (same for W). Every argument but ``groups`` is an int or a pair; bad shapes and
    arguments raise torch's errors. A channels_last input (or weight) gives a channels_last
    output. Differentiable in ``input``, ``weight`` and ``bias``; the backward is
    deterministic on every device.

    Example (the adjoint of a 2x2 convolution)::

        >>> x = torch.tensor([[[[0., 1.], [2., 3.]]]])
        >>> k = torch.tensor([[[[0., 1.], [2., 3.]]]])
        >>> pyseg.ops.conv_transpose2d(x, k)
        tensor([[[[ 0.,  0.,  1.],
                  [ 0.,  4.,  6.],
                  [ 4., 12.,  9.]]]])
    """
    if not isinstance(input, Tensor):
        raise TypeError(f"input must be a Tensor, got {type(input).__name__}")
    if not isinstance(weight, Tensor):
        raise TypeError(f"weight must be a Tensor, got {type(weight).__name__}")
    if bias is not None and not isinstance(bias, Tensor):
        raise TypeError(f"bias must be a Tensor or None, got {type(bias).__name__}")
    # torch's exception type and message for a sequence of the wrong length
    stride = pair(stride, "stride", length_error=RuntimeError, dims="convolution")
    padding = pair(padding, "padding", length_error=RuntimeError, dims="convolution")
    output_padding = pair(
        output_padding, "output_padding", length_error=RuntimeError, dims="convolution"
    )
    dilation = pair(dilation, "dilation", length_error=RuntimeError, dims="convolution")
    for value, name in ((stride, "stride"), (padding, "padding"),
                        (output_padding, "output_padding"), (dilation, "dilation"),
                        (groups, "groups")):
        check_int64(value, name)
    if input.dim() not in (3, 4):
        raise RuntimeError(
            "Expected 3D (unbatched) or 4D (batched) input to conv_transpose2d, but got input "
            f"of size: {list(input.shape)}"
        )
    if input.dim() == 3:
        # Unbatched: one image. Checks and messages see the batched shape, as in torch.
        out: Tensor = op("conv_transpose2d")(
            input.unsqueeze(0), weight, bias, stride, padding, output_padding, groups, dilation
        )
        return out.squeeze(0)
    out = op("conv_transpose2d")(
        input, weight, bias, stride, padding, output_padding, groups, dilation
    )
    return out


def _suggests_channels_last(t: Tensor) -> bool:
    if t.dim() != 4:
        return False
    from torch._prims_common import suggest_memory_format

    return suggest_memory_format(t) == torch.channels_last


def _output_shape(
    input: Tensor, weight: Tensor, stride: Sequence[int], padding: Sequence[int],
    output_padding: Sequence[int], dilation: Sequence[int], groups: int,
) -> tuple[list[int], bool]:
    batched = input.dim() == 4
    h, w = input.shape[-2], input.shape[-1]
    out_h = (h - 1) * stride[0] - 2 * padding[0] + dilation[0] * (weight.shape[2] - 1)
    out_w = (w - 1) * stride[1] - 2 * padding[1] + dilation[1] * (weight.shape[3] - 1)
    out_h = out_h + output_padding[0] + 1
    out_w = out_w + output_padding[1] + 1
    channels = weight.shape[1] * groups
    shape = [channels, out_h, out_w]
    return ([input.shape[0], *shape] if batched else shape), batched


@register_fake("conv_transpose2d")
def _conv_transpose2d_fake(
    input: Tensor, weight: Tensor, bias: Tensor | None, stride: Sequence[int],
    padding: Sequence[int], output_padding: Sequence[int], groups: int, dilation: Sequence[int],
) -> Tensor:
    torch._check(input.dim() in (3, 4), lambda: "Expected 3D or 4D input to conv_transpose2d")
    torch._check(weight.dim() == 4, lambda: "Expected 4-dimensional weight for conv_transpose2d")
    torch._check(input.dtype == weight.dtype, lambda: "input and weight dtypes differ")
    torch._check(input.shape[-3] == weight.shape[0], lambda: "input channels != weight.size(0)")
    # The C++ checks (conv_transpose.h) that decide whether there is an output at all.
    torch._check(weight.shape[2] > 0 and weight.shape[3] > 0,
                 lambda: "kernel size should be greater than zero, but got kernel_height: "
                         f"{weight.shape[2]} kernel_width: {weight.shape[3]}")
    torch._check(weight.numel() > 0,
                 lambda: f"non-empty 2D or 4D weight tensor expected, but got: {list(weight.shape)}")
    check_same_device("conv_transpose2d", ("input", input), ("weight", weight), ("bias", bias))
    torch._check(min(stride) > 0, lambda: "non-positive stride is not supported")
    torch._check(min(padding) >= 0, lambda: "negative padding is not supported")
    torch._check(min(output_padding) >= 0, lambda: "negative output_padding is not supported")
    torch._check(min(dilation) > 0, lambda: "dilation should be greater than zero")
    torch._check(groups > 0, lambda: "non-positive groups is not supported")
    shape, batched = _output_shape(input, weight, stride, padding, output_padding, dilation, groups)
    torch._check(shape[-2] > 0 and shape[-1] > 0,
                 lambda: f"Calculated output size per channel: ({shape[-2]} x {shape[-1]}). "
                         "Output size is too small")
    checked_shape("conv_transpose2d", shape,
                  "stride, dilation, kernel size or output_padding")
    channels_last = batched and (_suggests_channels_last(input) or _suggests_channels_last(weight))
    out = input.new_empty(shape)
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


@register_fake("conv_transpose2d_backward")
def _conv_transpose2d_backward_fake(
    grad_output: Tensor, input: Tensor, weight: Tensor, stride: Sequence[int],
    padding: Sequence[int], output_padding: Sequence[int], groups: int, dilation: Sequence[int],
    output_mask: Sequence[bool],
) -> tuple[Tensor, Tensor, Tensor]:
    check_same_device("conv_transpose2d_backward", ("input", input), ("grad_output", grad_output),
                      ("weight", weight))
    batched = input.dim() == 4
    channels_last = batched and (_suggests_channels_last(input) or _suggests_channels_last(weight))
    empty = input.new_empty(0)
    grad_input = empty
    if output_mask[0]:
        grad_input = input.new_empty(input.shape)
        if channels_last:
            grad_input = grad_input.contiguous(memory_format=torch.channels_last)
    grad_weight = empty
    if output_mask[1]:
        grad_weight = weight.new_empty(weight.shape)
        # Channels_last like the weight when the op computes in channels_last (as torch
        # returns it); the kernels' rule, grad_weight_channels_last in conv_transpose.h.
        if channels_last and weight.is_contiguous(memory_format=torch.channels_last):
            grad_weight = grad_weight.contiguous(memory_format=torch.channels_last)
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
        if not any(mask):
            return None, None, None, None, None, None, None, None
        gi, gw, gb = ops.conv_transpose2d_backward(grad, input, weight, *ctx.args, mask)
        return (
            gi if mask[0] else None,
            gw if mask[1] else None,
            gb if mask[2] else None,
            None,
            None,
            None,
            None,
            None,
        )

    return backward


register_autograd_per_namespace("conv_transpose2d", _make_backward, _setup_context)


def conv2d_matrix(
    weight: Tensor,
    input_size: Sequence[int],
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
) -> Tensor:
    """The dense matrix ``C`` of a (single-group) 2-D convolution.

    ``weight`` is a conv2d weight ``(C_out, C_in, kH, kW)`` and ``input_size`` is
    ``(C_in, H, W)`` or ``(H, W)`` (then ``C_in`` must be 1). Returns ``C`` of shape
    ``(C_out * H_out * W_out, C_in * H * W)`` such that
    ``conv2d(x, weight, stride=..., padding=..., dilation=...).flatten() == C @ x.flatten()``
    for one image ``x`` of shape ``(C_in, H, W)``. Its transpose is the transposed
    convolution with the same weight (viewed as ``(C_in, C_out, kH, kW)``):
    ``conv_transpose2d(y, weight) == (C.T @ y.flatten())`` reshaped, when the shapes agree
    (``output_padding`` adds rows or columns that no input reaches).

    Each row has one entry per kernel tap that lands inside the (unpadded) input, so the
    matrix is built directly from the tap positions, not by probing conv2d.

    Example: a 2x2 kernel on a 2x2 input; the transposed convolution of
    ``[[0, 1], [2, 3]]`` with the same kernel is ``C.T`` applied to it::

        >>> k = torch.tensor([[[[0., 1.], [2., 3.]]]])
        >>> C = pyseg.ops.conv2d_matrix(k, (3, 3))
        >>> C.shape
        torch.Size([4, 9])
        >>> (C.T @ torch.tensor([0., 1., 2., 3.])).reshape(3, 3)
        tensor([[ 0.,  0.,  1.],
                [ 0.,  4.,  6.],
                [ 4., 12.,  9.]])
    """
    if weight.dim() != 4:
        raise ValueError(f"weight must be (C_out, C_in, kH, kW), got shape {list(weight.shape)}")
    size = list(input_size)
    if len(size) == 2:
        size = [1, *size]
    if len(size) != 3:
        raise ValueError(f"input_size must be (C_in, H, W) or (H, W), got {list(input_size)}")
    c_in, h, w = size
    if c_in != weight.shape[1]:
        raise ValueError(
            f"input_size has {c_in} channels but weight expects {weight.shape[1]} "
            f"(weight shape {list(weight.shape)})"
        )
    sh, sw = pair(stride, "stride")
    ph, pw = pair(padding, "padding")
    dh, dw = pair(dilation, "dilation")
    c_out, _, kh, kw = weight.shape
    out_h = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"the convolution output would be empty ({out_h} x {out_w})")
    matrix = weight.new_zeros(c_out * out_h * out_w, c_in * h * w)
    dev = weight.device
    # Every (output pixel, tap) pair: output row index and input column index.
    oy, ox, ty, tx = torch.meshgrid(
        torch.arange(out_h, device=dev),
        torch.arange(out_w, device=dev),
        torch.arange(kh, device=dev),
        torch.arange(kw, device=dev),
        indexing="ij",
    )
    iy = oy * sh - ph + ty * dh
    ix = ox * sw - pw + tx * dw
    inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    oy, ox, ty, tx, iy, ix = (t[inside] for t in (oy, ox, ty, tx, iy, ix))
    for co in range(c_out):
        for ci in range(c_in):
            rows = (co * out_h + oy) * out_w + ox
            cols = (ci * h + iy) * w + ix
            matrix[rows, cols] = weight[co, ci, ty, tx]
    return matrix
