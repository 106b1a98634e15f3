"""Upsampling: ``interpolate`` (every mode of torch's, on 3-D, 4-D and 5-D inputs) and
``bed_of_nails``.

``interpolate`` reproduces :func:`torch.nn.functional.interpolate`'s argument handling
(defaults, errors, warnings, output size rounding, which scale reaches the kernel) and runs
``torch.ops.pyseg.upsample2d`` (4-D nearest, bilinear, bicubic) or ``torch.ops.pyseg.upsample``
(everything), whose kernels sample the same coordinates with the same weights as ATen. The backward is a gather (each input element sums the outputs that read it):
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
# The modes torch implements for each input rank (aten::upsample_* / adaptive_avg_pool*d).
_KERNEL_MODES = {
    3: ("nearest", "nearest-exact", "linear", "area"),
    4: ("nearest", "nearest-exact", "bilinear", "bicubic", "area"),
    5: ("nearest", "nearest-exact", "trilinear", "area"),
}
_ND_MODES = ("nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear", "area")
_MISMATCH = {
    (3, "bilinear"): "Got 3D input, but bilinear mode needs 4D input",
    (3, "trilinear"): "Got 3D input, but trilinear mode needs 5D input",
    (4, "linear"): "Got 4D input, but linear mode needs 3D input",
    (4, "trilinear"): "Got 4D input, but trilinear mode needs 5D input",
    (5, "linear"): "Got 5D input, but linear mode needs 3D input",
    (5, "bilinear"): "Got 5D input, but bilinear mode needs 4D input",
}


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
    """Resamples a 3-D ``(N, C, W)``, 4-D ``(N, C, H, W)`` or 5-D ``(N, C, D, H, W)`` tensor;
    a drop-in for :func:`torch.nn.functional.interpolate` in every mode torch has.

    Args:
        input: the tensor to resample (floating point).
        size: the output's spatial size, an int or one int per spatial dimension.
        scale_factor: a float or one float per spatial dimension; exactly one of ``size``
            and ``scale_factor``. With ``recompute_scale_factor`` not True the output size is
            ``floor(in * scale_factor)`` and the kernels sample with ``1 / scale_factor``
            (torch's rule), otherwise with ``in / out``.
        mode: ``"nearest"`` (ATen's legacy index ``floor(o * scale)``), ``"nearest-exact"``
            (``floor((o + 0.5) * scale)``), ``"linear"`` (3-D), ``"bilinear"`` /
            ``"bicubic"`` (4-D, bicubic with A = -0.75 and border-clamped neighbours),
            ``"trilinear"`` (5-D), ``"area"`` (adaptive average pooling, which also accepts
            an output size of 0).
        align_corners: only for the interpolating modes (default False): sample with
            ``(in - 1) / (out - 1)``.
        recompute_scale_factor: as torch (forced for ``"area"`` with ``scale_factor``).
        antialias: bilinear / bicubic on 4-D input only. torch's ``_upsample_*2d_aa``: a
            triangle or Keys cubic (A = -0.5) filter stretched by the scale when
            downsampling, over the in-bounds window, normalized to sum 1. When upsampling,
            bilinear equals the plain mode; bicubic does not (other A, no border clamping).

    Returns:
        The resampled tensor, in the input's dtype and memory format (contiguous,
        channels_last, channels_last_3d; ``"area"`` on 5-D input returns a contiguous
        tensor, as torch's adaptive_avg_pool3d). float32 / float64 everywhere, float16 /
        bfloat16 with float32 accumulation. The backward is a gather: deterministic.

    Raises:
        ValueError, TypeError, NotImplementedError, RuntimeError: torch's, with torch's
            messages, for the same bad arguments (size and scale_factor both or neither,
            lengths that do not match the rank, align_corners with a non-interpolating mode,
            antialias outside bilinear / bicubic 4-D, a mode that does not fit the rank,
            sizes of 0). ``mode="lanczos"`` (torch's antialiased Lanczos) raises
            ``NotImplementedError``: pyseg does not implement it.

    Example::

        >>> x = torch.arange(4.).view(1, 1, 2, 2)
        >>> pyseg.ops.interpolate(x, scale_factor=2, mode="bilinear")[0, 0, 0]
        tensor([0.0000, 0.2500, 0.7500, 1.0000])
        >>> pyseg.ops.interpolate(torch.arange(6.).view(1, 1, 6), size=2, mode="area")
        tensor([[[1., 4.]]])
        >>> pyseg.ops.interpolate(torch.ones(1, 2, 2, 3, 4), scale_factor=2, mode="trilinear").shape
        torch.Size([1, 2, 4, 6, 8])
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

    # torch's own errors for mode / rank mismatches.
    rank = input.dim()
    if mode == "lanczos":
        if not antialias:
            raise ValueError("Lanczos mode requires antialias=True")
        raise NotImplementedError(
            "pyseg.ops.interpolate does not implement mode='lanczos' (use "
            "torch.nn.functional.interpolate)"
        )
    if (rank, mode) in _MISMATCH:
        raise NotImplementedError(_MISMATCH[(rank, mode)])
    if rank not in (3, 4, 5) or mode not in _KERNEL_MODES.get(rank, ()):
        raise NotImplementedError(
            "Input Error: Only 3D, 4D and 5D input Tensors supported"
            f" (got {rank}D) for the modes: nearest | linear | bilinear | bicubic | "
            f"trilinear | lanczos | area | nearest-exact (got {mode})"
        )

    scales: list[float] | None = None
    if output_size is None:
        # ATen: output = (int64) (double(in) * scale), then 1 / scale as the source scale.
        assert scale_factors is not None  # size is None here: scale_factor was given
        for s in scale_factors:
            if not isinstance(s, torch.SymFloat) and not math.isfinite(float(s)):
                raise ValueError(f"interpolate: scale_factor must be finite, got {scale_factor!r}")
        output_size = [torch.sym_int(input.size(i + 2) * float(scale_factors[i]))
                       for i in range(dim)]
        scales = [float(s) for s in scale_factors]
        cause = "scale_factor"
    else:
        cause = "size"
    checked_shape("interpolate", [*input.shape[:2], *output_size], cause)
    if rank == 4 and mode in _MODES and not antialias:
        # The original 4-D operator (its ONNX translation and autocast rule predate the N-d one).
        h, w = scales if scales is not None else (None, None)
        out: Tensor = op("upsample2d")(input, list(output_size), mode, bool(align_corners), h, w)
        return out
    if mode == "area" and rank == 5:
        # adaptive_avg_pool3d returns a contiguous tensor whatever the input's layout.
        input = input.contiguous()
    out = op("upsample")(
        input, list(output_size), mode, bool(align_corners), bool(antialias), scales
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
    torch._check(mode in _MODES,
                 lambda: f"upsample2d: mode must be one of {_MODES}, got {mode!r}")
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


@register_fake("upsample")
def _upsample_fake(
    input: Tensor, output_size: Sequence[int], mode: str, align_corners: bool, antialias: bool,
    scales: Sequence[float] | None,
) -> Tensor:
    rank = input.dim() - 2
    torch._check(1 <= rank <= 3, lambda: "upsample: input must be a 3-D, 4-D or 5-D tensor")
    torch._check(len(output_size) == rank,
                 lambda: f"upsample: output_size must have {rank} elements")
    torch._check(mode in _ND_MODES, lambda: f"upsample: mode must be one of {_ND_MODES}")
    torch._check(input.dtype.is_floating_point,
                 lambda: f"upsample: input must be a floating point tensor, got {input.dtype}")
    torch._check(not antialias or (rank == 2 and mode in ("bilinear", "bicubic")),
                 lambda: "upsample: antialias=True needs mode 'bilinear' or 'bicubic' on 4-D input")
    torch._check(scales is None or len(scales) == rank,
                 lambda: f"upsample: scales must have {rank} elements")
    if mode == "area":
        torch._check(all(s > 0 for s in input.shape[2:]),
                     lambda: "adaptive_avg_pool: Expected input to have non-zero size for "
                             "non-batch dimensions")
    else:
        torch._check(all(s > 0 for s in input.shape[2:]) and all(s > 0 for s in output_size),
                     lambda: "Input and output sizes should be greater than 0")
    return _empty(input, checked_shape("upsample", [*input.shape[:2], *output_size],
                                       "output_size"))


@register_fake("upsample_backward")
def _upsample_backward_fake(
    grad_output: Tensor, input_size: Sequence[int], mode: str, align_corners: bool,
    antialias: bool, scales: Sequence[float] | None,
) -> Tensor:
    torch._check(3 <= grad_output.dim() <= 5,
                 lambda: "upsample_backward: grad_output must be a 3-D, 4-D or 5-D tensor")
    torch._check(len(input_size) == grad_output.dim(),
                 lambda: f"upsample_backward: input_size must have {grad_output.dim()} elements")
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


def _setup_upsample_nd(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    input, _output_size, *args = inputs
    ctx.input_size = list(input.shape)
    ctx.args = tuple(args)


def _make_upsample_nd_backward(ops: Any) -> Callable[[Any, Tensor], tuple[Tensor | None, ...]]:
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        grad_input = ops.upsample_backward(grad, ctx.input_size, *ctx.args)
        return grad_input, None, None, None, None, None

    return backward


register_autograd_per_namespace("upsample", _make_upsample_nd_backward, _setup_upsample_nd)


def _setup_upsample_nd_backward(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    grad_output, _input_size, *args = inputs
    ctx.output_size = list(grad_output.shape[2:])
    ctx.args = tuple(args)


def _make_upsample_nd_double_backward(
    ops: Any,
) -> Callable[[Any, Tensor], tuple[Tensor | None, ...]]:
    # upsample_backward is linear in grad_output; its adjoint is the forward resampling.
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        return ops.upsample(grad, ctx.output_size, *ctx.args), None, None, None, None, None

    return backward


register_autograd_per_namespace(
    "upsample_backward", _make_upsample_nd_double_backward, _setup_upsample_nd_backward
)


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

