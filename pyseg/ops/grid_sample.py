"""Spatial sampling: ``grid_sample`` and ``affine_grid``.

``grid_sample`` reproduces :func:`torch.nn.functional.grid_sample` (modes, padding modes,
``align_corners``, 4-D and 5-D input, errors) on ``torch.ops.pyseg.grid_sample``, whose
kernels follow ATen's sampling arithmetic step by step (csrc/ops/grid_sample). Its backward
is deterministic on every device (see :func:`grid_sample`).

``affine_grid`` is a composite of torch operators: the same base grid and batched matrix
product as ATen's ``affine_grid_generator``, so it is exact (bitwise equal to torch) and
autograd differentiates it without a kernel of its own.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch._prims_common import suggest_memory_format

from pyseg.ops._library import op, register_autograd_per_namespace, register_fake

__all__ = ["affine_grid", "grid_sample"]

MODES = {"bilinear": 0, "nearest": 1, "bicubic": 2}
PADDING_MODES = {"zeros": 0, "border": 1, "reflection": 2}


def grid_sample(
    input: Tensor,
    grid: Tensor,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
    align_corners: bool | None = False,
) -> Tensor:
    """Samples ``input`` at the locations of ``grid``; a drop-in for
    :func:`torch.nn.functional.grid_sample`.

    Args:
        input: ``(N, C, H_in, W_in)`` or ``(N, C, D_in, H_in, W_in)``, floating point.
        grid: ``(N, H_out, W_out, 2)`` or ``(N, D_out, H_out, W_out, 3)`` of the same dtype
            and device; the last dimension holds (x, y[, z]) normalized to [-1, 1] (points
            outside read the padding).
        mode: ``"bilinear"`` (default), ``"nearest"`` (ties round half to even, as torch)
            or ``"bicubic"`` (4-D only, A = -0.75).
        padding_mode: ``"zeros"`` (default), ``"border"`` or ``"reflection"``.
        align_corners: whether -1 and 1 are the centers (True) or the outer edges (False,
            default) of the corner pixels. ``None`` means False, without torch's warning.

    Returns:
        ``(N, C, H_out, W_out)`` (or ``(N, C, D_out, H_out, W_out)``) in the input's memory
        format: a channels_last input gives a channels_last output.

    Raises:
        ValueError: an unknown ``mode`` or ``padding_mode`` (torch's message).
        RuntimeError: mismatched ranks, batch sizes, devices or dtypes, a grid whose last
            dimension is not 2 (3 for 5-D), an empty spatial input dimension, bicubic on 5-D
            input (torch's messages, prefixed ``grid_sampler():``).

    The gradient with respect to ``input`` is a scatter. pyseg computes it deterministically
    (bitwise identical results on every run, whatever the number of threads): on the CPU
    each image's points are split into a fixed number of chunks that depends only on the
    shapes, each accumulating into its own buffer in point order, and the chunks are added
    in a fixed order; on CUDA the contributions are accumulated as 64-bit fixed-point
    integers (integer addition is associative) with a scale chosen on the device from
    ``max |grad_output|``. The gradient with respect to ``grid`` is a gather. Double
    backward is not implemented (as in torch).

    Example::

        >>> x = torch.arange(4.).view(1, 1, 2, 2)
        >>> grid = torch.tensor([[[[0., 0.], [1., 1.]]]])
        >>> pyseg.ops.grid_sample(x, grid, align_corners=True)
        tensor([[[[1.5000, 3.0000]]]])
    """
    if not isinstance(input, Tensor):
        raise TypeError(f"input must be a Tensor, got {type(input).__name__}")
    if not isinstance(grid, Tensor):
        raise TypeError(f"grid must be a Tensor, got {type(grid).__name__}")
    if mode not in MODES:
        raise ValueError(
            "nn.functional.grid_sample(): expected mode to be 'bilinear', 'nearest' or "
            f"'bicubic', but got: '{mode}'"
        )
    if padding_mode not in PADDING_MODES:
        raise ValueError(
            "nn.functional.grid_sample(): expected padding_mode to be 'zeros', 'border', or "
            f"'reflection', but got: '{padding_mode}'"
        )
    out: Tensor = op("grid_sample")(
        input, grid, MODES[mode], PADDING_MODES[padding_mode], bool(align_corners)
    )
    return out


def _linspace_from_neg_one(theta: Tensor, steps: int, align_corners: bool) -> Tensor:
    # ATen's linspace_from_neg_one (AffineGridGenerator.cpp).
    if steps <= 1:
        return torch.tensor(0, dtype=theta.dtype, device=theta.device)
    r = torch.linspace(-1, 1, steps, dtype=theta.dtype, device=theta.device)
    if not align_corners:
        r = r * (steps - 1) / steps
    return r


def affine_grid(theta: Tensor, size: Sequence[int], align_corners: bool | None = False) -> Tensor:
    """The sampling grid of a batch of affine transforms; a drop-in for
    :func:`torch.nn.functional.affine_grid`.

    A composite of torch operators (a base grid of normalized pixel centers, then one
    batched matrix product with ``theta``), the same steps as ATen's
    ``affine_grid_generator``: the result is bitwise equal to torch's, and autograd
    differentiates it through ``theta``, so no kernel of its own is needed.

    Args:
        theta: ``(N, 2, 3)`` for 2-D or ``(N, 3, 4)`` for 3-D affine matrices (floating
            point), mapping output coordinates to input coordinates, both in [-1, 1].
        size: the target output size, ``(N, C, H, W)`` or ``(N, C, D, H, W)``.
        align_corners: as in :func:`grid_sample` (use the same value for both); ``None``
            means False.

    Returns:
        The grid, ``(N, H, W, 2)`` or ``(N, D, H, W, 3)``, for :func:`grid_sample`.

    Raises:
        ValueError: a non-floating ``theta``, a ``theta`` of the wrong shape for ``size``,
            or a size that is not positive (torch's messages).
        NotImplementedError: ``size`` of a length other than 4 or 5.

    Example::

        >>> theta = torch.tensor([[[1., 0., 0.], [0., 1., 0.]]])
        >>> pyseg.ops.affine_grid(theta, (1, 1, 1, 2))
        tensor([[[[-0.5000,  0.0000],
                  [ 0.5000,  0.0000]]]])
    """
    align = bool(align_corners)
    if not isinstance(theta, Tensor):
        raise TypeError(f"theta must be a Tensor, got {type(theta).__name__}")
    if not theta.is_floating_point():
        raise ValueError(f"Expected theta to have floating point type, but got {theta.dtype}")
    dims = list(size)
    if len(dims) == 4:
        if theta.dim() != 3 or theta.shape[-2] != 2 or theta.shape[-1] != 3:
            raise ValueError(
                f"Expected a batch of 2D affine matrices of shape Nx2x3 for size {size}. "
                f"Got {theta.shape}."
            )
        spatial = dims[-2:]
    elif len(dims) == 5:
        if theta.dim() != 3 or theta.shape[-2] != 3 or theta.shape[-1] != 4:
            raise ValueError(
                f"Expected a batch of 3D affine matrices of shape Nx3x4 for size {size}. "
                f"Got {theta.shape}."
            )
        spatial = dims[-3:]
    else:
        raise NotImplementedError(
            "affine_grid only supports 4D and 5D sizes, for 2D and 3D affine transforms, "
            f"respectively. Got size {size}."
        )
    if align and min(spatial) == 1:
        warnings.warn(
            "Since version 1.3.0, affine_grid behavior has changed for unit-size grids when "
            "align_corners=True. This is not an intended use case of affine_grid. See the "
            "documentation of affine_grid for details.",
            stacklevel=2,
        )
    elif min(dims) <= 0:
        raise ValueError(f"Expected non-zero, positive output size. Got {size}")
    n = dims[0]
    if theta.shape[0] != n:
        raise ValueError(
            f"Expected theta of batch size {n} (size[0]) but got theta with shape {tuple(theta.shape)}"
        )
    d = len(spatial)
    base = theta.new_empty([n, *spatial, d + 1])
    # x varies along the last spatial dimension, y along the one before, z before that.
    for axis in range(d):
        steps = spatial[d - 1 - axis]
        line = _linspace_from_neg_one(theta, steps, align)
        view = [1] * d
        view[d - 1 - axis] = line.numel()
        base.select(-1, axis).copy_(line.view(view) if line.dim() else line)
    base.select(-1, d).fill_(1)
    points = 1
    for s in spatial:
        points *= s
    grid = base.view(n, points, d + 1).bmm(theta.transpose(1, 2))
    return grid.view(n, *spatial, d)


# ---- fake kernels --------------------------------------------------------------------------


def _check_fake(input: Tensor, grid: Tensor, mode: int, padding_mode: int) -> None:
    torch._check(input.device == grid.device,
                 lambda: "grid_sampler(): expected input and grid to be on same device")
    torch._check(input.dim() == grid.dim() and input.dim() in (4, 5),
                 lambda: "grid_sampler(): expected 4D or 5D input and grid with same number of "
                         f"dimensions, but got input with sizes {list(input.shape)} and grid "
                         f"with sizes {list(grid.shape)}")
    torch._check(input.shape[0] == grid.shape[0],
                 lambda: "grid_sampler(): expected grid and input to have same batch size")
    torch._check(grid.shape[-1] == input.dim() - 2,
                 lambda: f"grid_sampler(): expected grid to have size {input.dim() - 2} in "
                         "last dimension")
    torch._check(input.dtype.is_floating_point and input.dtype == grid.dtype,
                 lambda: "grid_sampler(): expected input and grid to have the same floating "
                         "point dtype")
    torch._check(0 <= mode <= 2 and 0 <= padding_mode <= 2,
                 lambda: "grid_sampler(): mode and padding_mode must be 0, 1 or 2")
    torch._check(not (mode == 2 and input.dim() == 5),
                 lambda: "grid_sampler(): bicubic interpolation only supports 4D input")


@register_fake("grid_sample")
def _grid_sample_fake(
    input: Tensor, grid: Tensor, mode: int, padding_mode: int, align_corners: bool
) -> Tensor:
    _check_fake(input, grid, mode, padding_mode)
    shape = [input.shape[0], input.shape[1], *grid.shape[1:-1]]
    return torch.empty(shape, dtype=input.dtype, device=input.device,
                       memory_format=suggest_memory_format(input))


@register_fake("grid_sample_backward")
def _grid_sample_backward_fake(
    grad_output: Tensor, input: Tensor, grid: Tensor, mode: int, padding_mode: int,
    align_corners: bool, output_mask: Sequence[bool],
) -> tuple[Tensor, Tensor]:
    _check_fake(input, grid, mode, padding_mode)
    grad_input = (
        torch.empty(input.shape, dtype=input.dtype, device=input.device,
                    memory_format=suggest_memory_format(input))
        if output_mask[0] else input.new_empty(0)
    )
    grad_grid = grid.new_empty(grid.shape) if output_mask[1] else grid.new_empty(0)
    return grad_input, grad_grid


# ---- autograd ------------------------------------------------------------------------------


def _setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    input, grid, mode, padding_mode, align_corners = inputs
    ctx.save_for_backward(input, grid)
    ctx.args = (mode, padding_mode, align_corners)


def _make_backward(ops: Any) -> Callable[[Any, Tensor], tuple[Tensor | None, ...]]:
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        input, grid = ctx.saved_tensors
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1]]
        if not any(mask):
            return None, None, None, None, None
        gi, gg = ops.grid_sample_backward(grad, input, grid, *ctx.args, mask)
        return (gi if mask[0] else None, gg if mask[1] else None, None, None, None)

    return backward


register_autograd_per_namespace("grid_sample", _make_backward, _setup)

