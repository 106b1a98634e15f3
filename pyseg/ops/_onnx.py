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
    "bed_of_nails": bed_of_nails,
    "deform_conv2d": deform_conv2d,
    "grid_sample": grid_sample,
}
