"""ONNX translations of pyseg's operators, for ``torch.onnx.export(..., dynamo=True)``.

While ``torch.onnx.export`` traces a model, :func:`pyseg.ops._library.op` hands the wrappers
the translation below instead of ``torch.ops.pyseg.<name>``. Each translation has the op's
schema signature and emits standard ONNX operators, either directly through
``torch.onnx.ops.symbolic`` (torch's public API for "this becomes that ONNX node", meant to be
used under ``torch.onnx.is_in_onnx_export()``) or as a few plain torch operations that torch's
own ONNX translations cover. So any model built from pyseg's ops exports with no extra
arguments, and ``import pyseg`` does not import onnxscript.

Why not the other ways to teach the exporter a custom op: ``custom_translation_table`` is an
argument every caller would have to pass; onnxscript's torch_lib registry is global state the
exporter reads at each export, with no hook to fill it lazily, and importing onnxscript at
``import pyseg`` costs seconds; decompositions into ATen ops go through private
``torch._decomp`` tables and through torch_lib's Resize settings (``pytorch_half_pixel``,
which differs from torch's own kernels for one-pixel outputs).

What this does not cover: an ``ExportedProgram`` made beforehand with ``torch.export.export``
contains ``pyseg::`` ops and cannot be handed to ``torch.onnx.export``; export the module.

Translations:

* conv_transpose2d, conv_transpose3d: ``ConvTranspose`` (weight layout and output size rule
  are torch's).
* max_unpool2d: ``MaxUnpool`` with its ``output_shape`` input. ONNX indices count over the
  whole tensor, torch's within each (N, C) plane, so each plane's offset is added first; the
  kernel attributes (which the op no longer knows) only serve ONNX's default output shape,
  which ``output_shape`` replaces. max_unpool3d likewise, per (N, C) volume.
* upsample2d: ``Resize`` on axes (2, 3): ``linear`` / ``cubic`` (``cubic_coeff_a`` -0.75,
  ``exclude_outside`` 0, neighbours clamped to the border as in ATen) with
  ``half_pixel`` or ``align_corners``; ``nearest`` with ``asymmetric`` and ``floor`` (torch's
  legacy nearest). When torch was given a scale factor (and not ``align_corners``) its
  kernels sample with ``1 / scale``, so Resize gets ``scales``; otherwise ``sizes``.
* upsample (every mode on 3-D, 4-D and 5-D input): ``Resize`` on the spatial axes, with the
  rules of upsample2d, plus ``nearest-exact`` as ``half_pixel`` with ``round_prefer_ceil``
  (``floor((o + 0.5) * scale)``, ATen's index) and ``antialias`` as Resize's ``antialias``
  attribute (opset 18), with ``exclude_outside`` 1 (torch renormalizes the in-bounds taps)
  and, for bicubic, ``cubic_coeff_a`` -0.5 (torch's antialiased Keys filter). ``area`` is
  adaptive average pooling in torch, and is exported as what torch exports for it: the
  translation calls ``F.adaptive_avg_pool1d`` / ``2d``, which the exporter decomposes (a
  gather of each window and a ReduceMean), so it needs static spatial sizes, as torch's.
  torch cannot export ``adaptive_avg_pool3d``; a 5-D ``area`` is two 2-D poolings instead,
  over (H, W) and then over D (the windows are products of per-axis windows, so the mean
  over a window is the mean over D of the means over (H, W): the same values).
  ``antialias=True`` with ``align_corners=True`` raises ``RuntimeError``: torch centres the
  antialiasing filter at ``(o + 0.5) * (in - 1) / (out - 1)``, which no Resize coordinate
  mode computes (torch's own export of that call runs with other values).
* bed_of_nails: Reshape, Pad, Reshape (each value gets a zero block to its right and below).
* deform_conv2d: ``DeformConv`` (opset 19; the offset layout is torchvision's).
* grid_sample: ``GridSample`` (opset 20 names: ``linear`` / ``nearest`` / ``cubic``; 4-D and
  5-D; the same padding modes and ``align_corners``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["TRANSLATIONS"]


def _symbolic(onnx_op: str, inputs: Sequence[Tensor | None], attrs: dict[str, Any],
              like: Tensor, shape: Sequence[Any]) -> Tensor:
    return torch.onnx.ops.symbolic(onnx_op, list(inputs), attrs, dtype=like.dtype,
                                   shape=list(shape))


def conv_transpose2d(input: Tensor, weight: Tensor, bias: Tensor | None, stride: Sequence[int],
                     padding: Sequence[int], output_padding: Sequence[int], groups: int,
                     dilation: Sequence[int]) -> Tensor:
    kernel = list(weight.shape[2:])
    dims = len(kernel)
    out = [(input.shape[2 + d] - 1) * stride[d] - 2 * padding[d] + dilation[d] * (kernel[d] - 1)
           + output_padding[d] + 1 for d in range(dims)]
    attrs = {
        "kernel_shape": kernel,
        "strides": list(stride),
        "pads": [*padding, *padding],
        "output_padding": list(output_padding),
        "dilations": list(dilation),
        "group": int(groups),
    }
    return _symbolic("ConvTranspose", [input, weight, bias], attrs, input,
                     [input.shape[0], weight.shape[1] * groups, *out])


def max_unpool2d(input: Tensor, indices: Tensor, output_size: Sequence[int]) -> Tensor:
    dims = len(output_size)
    if input.dim() == dims + 1:
        return max_unpool2d(input[None], indices[None], output_size)[0]
    n, c = input.shape[:2]
    plane = 1
    for size in output_size:
        plane = plane * size
    offsets = (torch.arange(n * c, dtype=torch.int64) * plane).reshape(n, c, *[1] * dims)
    # (N, C) from the input at run time, so the batch size may vary.
    batch_and_channels = torch.onnx.ops.symbolic("Shape", [input], {"end": 2},
                                                 dtype=torch.int64, shape=[2])
    output_shape = torch.cat([batch_and_channels, torch.tensor(list(output_size))])
    attrs = {"kernel_shape": [1] * dims, "strides": [1] * dims}
    return _symbolic("MaxUnpool", [input, indices + offsets, output_shape], attrs, input,
                     [n, c, *output_size])


_RESIZE_MODES = {"nearest": "nearest", "bilinear": "linear", "bicubic": "cubic"}


def upsample2d(input: Tensor, output_size: Sequence[int], mode: str, align_corners: bool,
               scale_h: float | None, scale_w: float | None) -> Tensor:
    attrs: dict[str, Any] = {"mode": _RESIZE_MODES[mode], "axes": [2, 3]}
    if mode == "nearest":
        attrs |= {"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    else:
        attrs["coordinate_transformation_mode"] = "align_corners" if align_corners else "half_pixel"
    if mode == "bicubic":
        attrs |= {"cubic_coeff_a": -0.75, "exclude_outside": 0}
    if scale_h is not None and scale_w is not None and not align_corners:
        inputs = [input, None, torch.tensor([scale_h, scale_w], dtype=torch.float32)]
    else:
        inputs = [input, None, None, torch.tensor(list(output_size), dtype=torch.int64)]
    return _symbolic("Resize", inputs, attrs, input, [*input.shape[:2], *output_size])


_ND_RESIZE_MODES = {"nearest": "nearest", "nearest-exact": "nearest", "linear": "linear",
                    "bilinear": "linear", "trilinear": "linear", "bicubic": "cubic"}


def _area(input: Tensor, output_size: list[int]) -> Tensor:
    """Adaptive average pooling, as torch exports it (1-D and 2-D), 3-D as two 2-D steps."""
    if len(output_size) == 1:
        return F.adaptive_avg_pool1d(input, output_size)
    if len(output_size) == 2:
        return F.adaptive_avg_pool2d(input, (output_size[0], output_size[1]))
    n, c, d, h, w = input.shape
    od, oh, ow = output_size
    planes = F.adaptive_avg_pool2d(input.reshape(n, c * d, h, w), (oh, ow))
    # Over D, with the (oh * ow) axis kept: windows of one element there.
    depth = F.adaptive_avg_pool2d(planes.reshape(n, c, d, oh * ow), (od, oh * ow))
    return depth.reshape(n, c, od, oh, ow)


def upsample(input: Tensor, output_size: Sequence[int], mode: str, align_corners: bool,
             antialias: bool, scales: Sequence[float] | None) -> Tensor:
    dims = len(output_size)
    if mode == "area":
        return _area(input, list(output_size))
    if antialias and align_corners:
        raise RuntimeError(
            f"pyseg: interpolate(mode={mode!r}, antialias=True, align_corners=True) has no ONNX "
            "translation: ONNX Resize has no coordinate mode for torch's antialiased "
            "align_corners sampling (use align_corners=False to export)")
    attrs: dict[str, Any] = {"mode": _ND_RESIZE_MODES[mode], "axes": list(range(2, 2 + dims))}
    if mode == "nearest":
        attrs |= {"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    elif mode == "nearest-exact":
        # round_prefer_ceil((o + 0.5) * scale - 0.5) == floor((o + 0.5) * scale)
        attrs |= {"coordinate_transformation_mode": "half_pixel",
                  "nearest_mode": "round_prefer_ceil"}
    else:
        attrs["coordinate_transformation_mode"] = "align_corners" if align_corners else "half_pixel"
    if mode == "bicubic":
        attrs |= {"cubic_coeff_a": -0.5 if antialias else -0.75, "exclude_outside": 0}
    if antialias:
        attrs |= {"antialias": 1, "exclude_outside": 1}
    if scales is not None and not align_corners:
        inputs = [input, None, torch.tensor(list(scales), dtype=torch.float32)]
    else:
        inputs = [input, None, None, torch.tensor(list(output_size), dtype=torch.int64)]
    return _symbolic("Resize", inputs, attrs, input, [*input.shape[:2], *output_size])


def bed_of_nails(input: Tensor, scale_factor: Sequence[int]) -> Tensor:
    n, c, h, w = input.shape
    sh, sw = scale_factor
    cells = F.pad(input.reshape(n, c, h, 1, w, 1), (0, sw - 1, 0, 0, 0, sh - 1))
    return cells.reshape(n, c, h * sh, w * sw)


def deform_conv2d(input: Tensor, weight: Tensor, offset: Tensor, mask: Tensor, bias: Tensor,
                  stride_h: int, stride_w: int, pad_h: int, pad_w: int, dilation_h: int,
                  dilation_w: int, groups: int, offset_groups: int, use_mask: bool) -> Tensor:
    kernel = list(weight.shape[2:])
    attrs = {
        "kernel_shape": kernel,
        "strides": [stride_h, stride_w],
        "pads": [pad_h, pad_w, pad_h, pad_w],
        "dilations": [dilation_h, dilation_w],
        "group": int(groups),
        "offset_group": int(offset_groups),
    }
    shape = [input.shape[0], weight.shape[0], *offset.shape[2:]]
    inputs = [input, weight, offset, bias, mask if use_mask else None]
    return _symbolic("DeformConv", inputs, attrs, input, shape)


_GRID_SAMPLE_MODES = ("linear", "nearest", "cubic")
_GRID_SAMPLE_PADDING = ("zeros", "border", "reflection")


def grid_sample(input: Tensor, grid: Tensor, mode: int, padding_mode: int,
                align_corners: bool) -> Tensor:
    attrs = {"mode": _GRID_SAMPLE_MODES[mode], "padding_mode": _GRID_SAMPLE_PADDING[padding_mode],
             "align_corners": int(align_corners)}
    return _symbolic("GridSample", [input, grid], attrs, input,
                     [*input.shape[:2], *grid.shape[1:-1]])


TRANSLATIONS = {
    "conv_transpose2d": conv_transpose2d,
    "max_unpool2d": max_unpool2d,
    "max_unpool3d": max_unpool2d,  # the same translation, on three axes
    "conv_transpose3d": conv_transpose2d,  # the same translation, on three axes
    "upsample2d": upsample2d,
    "upsample": upsample,
    "bed_of_nails": bed_of_nails,
    "deform_conv2d": deform_conv2d,
    "grid_sample": grid_sample,
}
