"""deform_conv2d: deformable convolution v1 (offsets) and v2 (offsets and a modulation mask)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from pyseg.ops._library import (
    INT64_MAX,
    check_int64,
    check_same_device,
    checked_shape,
    op,
    pair,
    register_autograd_per_namespace,
    register_fake,
)

__all__ = ["deform_conv2d"]


def deform_conv2d(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | tuple[int, int] = (1, 1),
    padding: int | tuple[int, int] = (0, 0),
    dilation: int | tuple[int, int] = (1, 1),
    mask: Tensor | None = None,
) -> Tensor:
    """Deformable convolution, a drop-in for :func:`torchvision.ops.deform_conv2d`.

    v2 (Zhu et al., 2019) when ``mask`` is given, v1 (Dai et al., 2017) otherwise.

    Args:
        input: ``(N, C, H, W)``.
        offset: ``(N, 2 * offset_groups * kh * kw, Ho, Wo)``: per output pixel and tap the
            (dy, dx) added to the tap's sampling position. ``offset_groups`` is read from
            the channel count.
        weight: ``(O, C / groups, kh, kw)``; ``groups`` is read from the shapes.
        bias: ``(O,)`` or None.
        stride, padding, dilation: int or pair, as in ``conv2d``.
        mask: ``(N, offset_groups * kh * kw, Ho, Wo)`` modulation scalars, or None.

    Samples are bilinear; a sample at (y, x) is zero when y <= -1, y >= H, x <= -1 or
    x >= W, and corners outside the image count as zero (torchvision's rule). With zero
    offsets and a mask of ones the result is ``F.conv2d``'s.

    Example::

        >>> x = torch.rand(1, 3, 8, 8)
        >>> w = torch.rand(5, 3, 3, 3)
        >>> offset = torch.zeros(1, 18, 6, 6)
        >>> pyseg.ops.deform_conv2d(x, offset, w).shape
        torch.Size([1, 5, 6, 6])
    """
    for name, t in (("input", input), ("offset", offset), ("weight", weight)):
        if not isinstance(t, Tensor):
            raise TypeError(f"deform_conv2d: {name} must be a Tensor, got {type(t).__name__}")
    # Before the defaults below are made on input's device.
    check_same_device("deform_conv2d", ("input", input), ("offset", offset), ("weight", weight),
                      ("bias", bias), ("mask", mask))
    out_channels = weight.shape[0]
    use_mask = mask is not None
    if mask is None:
        mask = torch.zeros((input.shape[0], 1), device=input.device, dtype=input.dtype)
    if bias is None:
        bias = torch.zeros(out_channels, device=input.device, dtype=input.dtype)
    stride_h, stride_w = pair(stride, "stride")
    pad_h, pad_w = pair(padding, "padding")
    dil_h, dil_w = pair(dilation, "dilation")
    for value, name in ((stride, "stride"), (padding, "padding"), (dilation, "dilation")):
        check_int64(value, name)
    weights_h, weights_w = weight.shape[-2:]
    _, n_in_channels, _, _ = input.shape
    n_offset_grps = offset.shape[1] // (2 * weights_h * weights_w)
    n_weight_grps = n_in_channels // weight.shape[1]
    if n_offset_grps == 0:
        raise RuntimeError(
            "the shape of the offset tensor at dimension 1 is not valid. It should "
            "be a multiple of 2 * weight.size[2] * weight.size[3].\n"
            f"Got offset.shape[1]={offset.shape[1]}, while 2 * weight.size[2] * "
            f"weight.size[3]={2 * weights_h * weights_w}"
        )
    out: Tensor = op("deform_conv2d")(
        input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
        n_weight_grps, n_offset_grps, use_mask,
    )
    return out


def _out_size(size: int, k: int, stride: int, pad: int, dil: int) -> int:
    # Division truncating toward zero, as the C++ kernels (and torchvision) compute it.
    span = size + 2 * pad - (dil * (k - 1) + 1)
    return (span // stride if span >= 0 else -(-span // stride)) + 1


@register_fake("deform_conv2d")
def _deform_conv2d_fake(
    input: Tensor, weight: Tensor, offset: Tensor, mask: Tensor, bias: Tensor, stride_h: int,
    stride_w: int, pad_h: int, pad_w: int, dil_h: int, dil_w: int, groups: int,
    offset_groups: int, use_mask: bool,
) -> Tensor:
    torch._check(input.dim() == 4, lambda: "deform_conv2d: input must be a 4-D tensor")
    torch._check(weight.dim() == 4, lambda: "deform_conv2d: weight must be a 4-D tensor")
    torch._check(offset.dim() == 4, lambda: "deform_conv2d: offset must be a 4-D tensor")
    check_same_device("deform_conv2d", ("input", input), ("offset", offset), ("weight", weight),
                      ("bias", bias), ("mask", mask))
    kh, kw = weight.shape[-2:]
    # The C++ side computes in + 2 * pad and dil * (k - 1) in int64 (deform_conv.h).
    for extent in (input.shape[2] + 2 * pad_h, input.shape[3] + 2 * pad_w, dil_h * (kh - 1),
                   dil_w * (kw - 1)):
        if isinstance(extent, int) and extent > INT64_MAX:
            raise ValueError("deform_conv2d: the output shape does not fit in int64 "
                             "(padding, dilation or kernel size too large)")
    out_h = _out_size(input.shape[2], kh, stride_h, pad_h, dil_h)
    out_w = _out_size(input.shape[3], kw, stride_w, pad_w, dil_w)
    torch._check(offset.shape[2] == out_h and offset.shape[3] == out_w,
                 lambda: f"offset output dims: ({offset.shape[2]}, {offset.shape[3]}) - computed "
                         f"output height and width: ({out_h}, {out_w})")
    shape = checked_shape("deform_conv2d", [input.shape[0], weight.shape[0], out_h, out_w],
                          "padding, dilation or kernel size")
    return input.new_empty(shape)


@register_fake("_deform_conv2d_backward")
def _deform_conv2d_backward_fake(
    grad: Tensor, input: Tensor, weight: Tensor, offset: Tensor, mask: Tensor, bias: Tensor,
    *args: Any,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    check_same_device("deform_conv2d_backward", ("input", input), ("grad", grad),
                      ("weight", weight), ("offset", offset), ("mask", mask), ("bias", bias))
    return (
        torch.empty_like(input, memory_format=torch.contiguous_format),
        torch.empty_like(weight, memory_format=torch.contiguous_format),
        torch.empty_like(offset, memory_format=torch.contiguous_format),
        torch.empty_like(mask, memory_format=torch.contiguous_format),
        bias.new_empty(bias.shape),
    )


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    input, weight, offset, mask, bias, *params = inputs
    ctx.save_for_backward(input, weight, offset, mask, bias)
    ctx.params = params


def _make_backward(ops: Any) -> Callable[[Any, Tensor], tuple[Tensor | None, ...]]:
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        input, weight, offset, mask, bias = ctx.saved_tensors
        use_mask = ctx.params[-1]
        gi, gw, go, gm, gb = ops._deform_conv2d_backward(
            grad.contiguous(), input, weight, offset, mask, bias, *ctx.params
        )
        return (gi, gw, go, gm if use_mask else None, gb) + (None,) * 9

    return backward


register_autograd_per_namespace("deform_conv2d", _make_backward, _setup_context)
