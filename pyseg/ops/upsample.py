"""Upsampling: ``interpolate`` (nearest, bilinear, bicubic on 4-D inputs) and ``bed_of_nails``.

``interpolate`` reproduces :func:`torch.nn.functional.interpolate`'s argument handling
(defaults, errors, warnings, output size rounding, which scale reaches the kernel) and runs
``torch.ops.pyseg.upsample2d``, whose kernels sample the same coordinates with the same
weights as ATen. The backward is a gather (each input element sums the outputs that read it):
deterministic on every device, no atomics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch._prims_common import suggest_memory_format

from pyseg.ops._library import (
    check_int64,
    checked_shape,
    op,
    pair,
    register_autograd_per_namespace,
    register_fake,
)

__all__ = ["bed_of_nails", "interpolate"]

_MODES = ("nearest", "bilinear", "bicubic")


def _is_integer(x: object) -> bool:
    # torch.nn.functional._is_integer
    if isinstance(x, int | torch.SymInt):
        return True
    return isinstance(x, Tensor) and not x.is_floating_point()


def interpolate(
    input: Tensor,
    size: int | Sequence[int] | None = None,
    scale_factor: float | Sequence[float] | None = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
    recompute_scale_factor: bool | None = None,
    antialias: bool = False,
) -> Tensor:
    """Resamples a 4-D ``(N, C, H, W)`` tensor; a drop-in for
    :func:`torch.nn.functional.interpolate` in modes ``"nearest"``, ``"bilinear"`` and
    ``"bicubic"``.

    Same arguments, defaults and errors as torch: exactly one of ``size`` and
    ``scale_factor``; ``align_corners`` only for the interpolating modes (default False);
    with ``scale_factor`` and ``recompute_scale_factor`` not True, the output size is
    ``floor(in * scale_factor)`` and the kernels use ``1 / scale_factor`` as the source
    scale (torch's rule), otherwise ``in / out``. ``align_corners=True`` uses
    ``(in - 1) / (out - 1)``. Bicubic uses A = -0.75 and clamps its neighbours to the
    border. The output keeps the input's memory format (channels_last in, channels_last
    out). float32/float64 everywhere, float16/bfloat16 with float32 accumulation.

    Modes and ranks torch supports but pyseg does not (``"area"``, ``"nearest-exact"``,
    ``"linear"``, ``"trilinear"``, 3-D/5-D nearest, ``antialias=True``) raise
    ``NotImplementedError`` naming what was asked for; nothing silently falls back to torch.

    Example::

        >>> x = torch.arange(4.).view(1, 1, 2, 2)
        >>> pyseg.ops.interpolate(x, scale_factor=2, mode="bilinear")[0, 0, 0]
        tensor([0.0000, 0.2500, 0.7500, 1.0000])
    """
    if not isinstance(input, Tensor):
        raise TypeError(f"input must be a Tensor, got {type(input).__name__}")
    if mode in ("nearest", "area", "nearest-exact"):
        if align_corners is not None:
            raise ValueError(
                "align_corners option can only be set with the "
                "interpolating modes: linear | bilinear | bicubic | trilinear"
            )
    elif align_corners is None:
        align_corners = False

    dim = input.dim() - 2
    if size is not None and scale_factor is not None:
        raise ValueError("only one of size or scale_factor should be defined")
    elif size is not None:
        scale_factors = None
        if isinstance(size, list | tuple):
            if len(size) != dim:
                raise ValueError(
                    "Input and output must have the same number of spatial dimensions, but got "
                    f"input with spatial dimensions of {list(input.shape[2:])} and output size "
                    f"of {size}. Please provide input tensor in (N, C, d1, d2, ...,dK) format "
                    "and output size in (o1, o2, ...,oK) format."
                )
            if not all(_is_integer(x) for x in size):
                raise TypeError(
                    "expected size to be one of int or Tuple[int] or Tuple[int, int] or "
                    f"Tuple[int, int, int], but got size with types {[type(x) for x in size]}"
                )
            output_size = list(size)
        else:
            output_size = [size for _ in range(dim)]
    elif scale_factor is not None:
        output_size = None
        if isinstance(scale_factor, list | tuple):
            if len(scale_factor) != dim:
                raise ValueError(
                    "Input and scale_factor must have the same number of spatial dimensions, "
                    f"but got input with spatial dimensions of {list(input.shape[2:])} and "
                    f"scale_factor of shape {scale_factor}. Please provide input tensor in "
                    "(N, C, d1, d2, ...,dK) format and scale_factor in (s1, s2, ...,sK) format."
                )
            scale_factors = list(scale_factor)
        else:
            scale_factors = [scale_factor for _ in range(dim)]
    else:
        raise ValueError("either size or scale_factor should be defined")

    if recompute_scale_factor is not None and recompute_scale_factor and size is not None:
        raise ValueError("recompute_scale_factor is not meaningful with an explicit size.")

    if mode == "area" and output_size is None:
        recompute_scale_factor = True
    if recompute_scale_factor is not None and recompute_scale_factor:
        # torch computes the size in Python and lets the kernel derive in / out.
        assert scale_factors is not None  # size is None here: scale_factor was given
        output_size = [torch.sym_int(input.size(i + 2) * scale_factors[i]) for i in range(dim)]
        scale_factors = None

    if antialias and not (mode in ("bilinear", "bicubic", "lanczos") and input.ndim == 4):
        raise ValueError(
            "Anti-alias option is restricted to bilinear, bicubic, and lanczos modes and "
            "requires a 4-D tensor as input"
        )

    # torch's own errors for mode / rank mismatches, then ours for what pyseg lacks.
    mismatch = {
        (3, "bilinear"): "Got 3D input, but bilinear mode needs 4D input",
        (3, "trilinear"): "Got 3D input, but trilinear mode needs 5D input",
        (4, "linear"): "Got 4D input, but linear mode needs 3D input",
        (4, "trilinear"): "Got 4D input, but trilinear mode needs 5D input",
        (5, "linear"): "Got 5D input, but linear mode needs 3D input",
        (5, "bilinear"): "Got 5D input, but bilinear mode needs 4D input",
    }
    if (input.dim(), mode) in mismatch:
        raise NotImplementedError(mismatch[(input.dim(), mode)])
    known = ("nearest", "linear", "bilinear", "bicubic", "trilinear", "lanczos", "area",
             "nearest-exact")
    if input.dim() not in (3, 4, 5) or mode not in known:
        raise NotImplementedError(
            "Input Error: Only 3D, 4D and 5D input Tensors supported"
            f" (got {input.dim()}D) for the modes: nearest | linear | bilinear | bicubic | "
            f"trilinear | lanczos | area | nearest-exact (got {mode})"
        )
    if input.dim() != 4 or mode not in _MODES:
        raise NotImplementedError(
            f"pyseg.ops.interpolate implements modes {', '.join(_MODES)} on 4-D input only; "
            f"got mode={mode!r} with a {input.dim()}-D input (use torch.nn.functional.interpolate)"
        )
    if antialias:
        raise NotImplementedError(
            f"pyseg.ops.interpolate does not implement antialias=True (mode={mode!r})"
        )

    scales: list[float | None] = [None, None]
    if output_size is None:
        # ATen: output = (int64) (double(in) * scale), then 1 / scale as the source scale.
        assert scale_factors is not None  # size is None here: scale_factor was given
        for s in scale_factors:
            if not isinstance(s, torch.SymFloat) and not math.isfinite(float(s)):
                raise ValueError(f"interpolate: scale_factor must be finite, got {scale_factor!r}")
        output_size = [torch.sym_int(input.size(i + 2) * float(scale_factors[i])) for i in range(2)]
        scales = [float(s) for s in scale_factors]
        cause = "scale_factor"
    else:
        cause = "size"
    checked_shape("interpolate", [*input.shape[:2], *output_size], cause)
    out: Tensor = op("upsample2d")(
        input, list(output_size), mode, bool(align_corners), scales[0], scales[1]
    )
    return out


def bed_of_nails(input: Tensor, scale_factor: int | Sequence[int]) -> Tensor:
    """Upsamples ``(N, C, H, W)`` to ``(N, C, H * sh, W * sw)`` by putting each value at the
    top-left corner of its ``sh x sw`` cell and zeros everywhere else.

    ``scale_factor`` is a positive int or a pair of positive ints. The gradient picks
    ``grad_output[..., ::sh, ::sw]``. The output keeps the input's memory format.

    Example::

        >>> pyseg.ops.bed_of_nails(torch.tensor([[[[1., 2.]]]]), 2)
        tensor([[[[1., 0., 2., 0.],
                  [0., 0., 0., 0.]]]])
    """
    if not isinstance(input, Tensor):
        raise TypeError(f"input must be a Tensor, got {type(input).__name__}")
    sh, sw = pair(scale_factor, "scale_factor")  # ints (or SymInts), else a TypeError
    for s in (sh, sw):
        if s < 1:
            raise ValueError(f"scale_factor must be positive, got {scale_factor!r}")
    check_int64((sh, sw), "scale_factor")
    if input.dim() != 4:
        raise ValueError(
            f"bed_of_nails: input must be a 4-D (N, C, H, W) tensor, got {input.dim()} dimensions"
        )
    out: Tensor = op("bed_of_nails")(input, [sh, sw])
    return out


# ---- fake kernels --------------------------------------------------------------------------


def _empty(like: Tensor, shape: Sequence[int]) -> Tensor:
    return torch.empty(
        list(shape), dtype=like.dtype, device=like.device, memory_format=suggest_memory_format(like)
    )


@register_fake("upsample2d")
def _upsample2d_fake(
    input: Tensor, output_size: Sequence[int], mode: str, align_corners: bool,
    scale_h: float | None, scale_w: float | None,
) -> Tensor:
    torch._check(input.dim() == 4, lambda: "upsample2d: input must be a 4-D (N, C, H, W) tensor")
    torch._check(len(output_size) == 2, lambda: "upsample2d: output_size must have 2 elements")
    torch._check(mode in _MODES, lambda: f"upsample2d: mode must be one of {_MODES}, got {mode!r}")
    torch._check(input.dtype.is_floating_point,
                 lambda: f"upsample2d: input must be a floating point tensor, got {input.dtype}")
    torch._check(input.shape[2] > 0 and input.shape[3] > 0 and output_size[0] > 0
                 and output_size[1] > 0,
                 lambda: "Input and output sizes should be greater than 0, but got input "
                         f"(H: {input.shape[2]}, W: {input.shape[3]}) output (H: "
                         f"{output_size[0]}, W: {output_size[1]})")
    return _empty(input, checked_shape("upsample2d", [*input.shape[:2], *output_size],
                                       "output_size"))


@register_fake("upsample2d_backward")
def _upsample2d_backward_fake(
    grad_output: Tensor, input_size: Sequence[int], mode: str, align_corners: bool,
    scale_h: float | None, scale_w: float | None,
) -> Tensor:
    torch._check(grad_output.dim() == 4, lambda: "upsample2d_backward: grad_output must be 4-D")
    torch._check(len(input_size) == 4, lambda: "upsample2d_backward: input_size must have 4 elements")
    return _empty(grad_output, input_size)


@register_fake("bed_of_nails")
def _bed_of_nails_fake(input: Tensor, scale_factor: Sequence[int]) -> Tensor:
    torch._check(len(scale_factor) == 2, lambda: "bed_of_nails: scale_factor must have 2 elements")
    torch._check(scale_factor[0] >= 1 and scale_factor[1] >= 1,
                 lambda: "bed_of_nails: scale_factor must be positive integers")
    torch._check(input.dim() == 4, lambda: "bed_of_nails: expected a 4-D tensor")
    torch._check(input.dtype.is_floating_point,
                 lambda: f"bed_of_nails: expected a floating point tensor, got {input.dtype}")
    n, c, h, w = input.shape
    return _empty(input, checked_shape("bed_of_nails",
                                       [n, c, h * scale_factor[0], w * scale_factor[1]],
                                       "scale_factor"))


@register_fake("bed_of_nails_backward")
def _bed_of_nails_backward_fake(grad_output: Tensor, scale_factor: Sequence[int]) -> Tensor:
    torch._check(len(scale_factor) == 2,
                 lambda: "bed_of_nails_backward: scale_factor must have 2 elements")
    torch._check(scale_factor[0] >= 1 and scale_factor[1] >= 1,
                 lambda: "bed_of_nails_backward: scale_factor must be positive integers")
    torch._check(grad_output.dim() == 4, lambda: "bed_of_nails_backward: expected a 4-D tensor")
    n, c, h, w = grad_output.shape
    torch._check(h % scale_factor[0] == 0 and w % scale_factor[1] == 0,
                 lambda: "bed_of_nails_backward: grad_output size is not a multiple of "
                         "scale_factor")
    return _empty(grad_output, [n, c, h // scale_factor[0], w // scale_factor[1]])


# ---- autograd ------------------------------------------------------------------------------


def _setup_upsample(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    input, _output_size, mode, align_corners, scale_h, scale_w = inputs
    ctx.input_size = list(input.shape)
    ctx.args = (mode, align_corners, scale_h, scale_w)


def _make_upsample_backward(ops: Any) -> Callable[[Any, Tensor], tuple[Tensor | None, ...]]:
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        return ops.upsample2d_backward(grad, ctx.input_size, *ctx.args), None, None, None, None, None

    return backward


register_autograd_per_namespace("upsample2d", _make_upsample_backward, _setup_upsample)


def _setup_upsample_backward(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    grad_output, _input_size, mode, align_corners, scale_h, scale_w = inputs
    ctx.output_size = list(grad_output.shape[-2:])
    ctx.args = (mode, align_corners, scale_h, scale_w)


def _make_upsample_double_backward(
    ops: Any,
) -> Callable[[Any, Tensor], tuple[Tensor | None, ...]]:
    # upsample2d_backward is linear in grad_output; its adjoint is the forward resampling.
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        return ops.upsample2d(grad, ctx.output_size, *ctx.args), None, None, None, None, None

    return backward


register_autograd_per_namespace("upsample2d_backward", _make_upsample_double_backward, _setup_upsample_backward)


def _setup_nails(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    ctx.scale_factor = list(inputs[1])


def _make_nails_backward(ops: Any) -> Callable[[Any, Tensor], tuple[Tensor, None]]:
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return ops.bed_of_nails_backward(grad, ctx.scale_factor), None

    return backward


def _make_nails_double_backward(ops: Any) -> Callable[[Any, Tensor], tuple[Tensor, None]]:
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return ops.bed_of_nails(grad, ctx.scale_factor), None

    return backward


register_autograd_per_namespace("bed_of_nails", _make_nails_backward, _setup_nails)
register_autograd_per_namespace("bed_of_nails_backward", _make_nails_double_backward, _setup_nails)

