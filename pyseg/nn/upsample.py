"""Upsampling modules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from pyseg.ops.upsample import interpolate

__all__ = ["Upsample"]


class Upsample(nn.Module):
    """Drop-in for :class:`torch.nn.Upsample` backed by :func:`pyseg.ops.interpolate`.

    Same constructor arguments, attributes and repr as torch's module, and every mode of
    :func:`pyseg.ops.interpolate` (``"nearest"``, ``"nearest-exact"``, ``"linear"``,
    ``"bilinear"``, ``"bicubic"``, ``"trilinear"``, ``"area"``) on 3-D, 4-D and 5-D input.

    Args:
        size: the output's spatial size (int or one per spatial dimension).
        scale_factor: the multiplier of the spatial size (float or one per dimension).
        mode: the interpolation mode (default ``"nearest"``).
        align_corners: for the interpolating modes only, as torch.
        recompute_scale_factor: as torch.

    Forward returns ``pyseg.ops.interpolate(input, ...)`` with these arguments and raises
    what it raises (torch's errors for bad arguments or a mode that does not fit the rank).

    Example::

        >>> up = pyseg.nn.Upsample(scale_factor=2, mode="bilinear")
        >>> up(torch.randn(1, 3, 8, 8)).shape
        torch.Size([1, 3, 16, 16])
        >>> pyseg.nn.Upsample(size=(2, 3, 4), mode="trilinear")(torch.randn(1, 1, 4, 4, 4)).shape
        torch.Size([1, 1, 2, 3, 4])
    """

    def __init__(
        self,
        size: int | Sequence[int] | None = None,
        scale_factor: float | Sequence[float] | None = None,
        mode: str = "nearest",
        align_corners: bool | None = None,
        recompute_scale_factor: bool | None = None,
    ) -> None:
        super().__init__()
        self.name = type(self).__name__
        self.size = size
        self.scale_factor: float | tuple[float, ...] | None
        if isinstance(scale_factor, tuple):
            self.scale_factor = tuple(float(factor) for factor in scale_factor)
        else:
            # a list fails here with torch's TypeError, as in torch.nn.Upsample
            self.scale_factor = float(scale_factor) if scale_factor else None  # type: ignore[arg-type]
        self.mode = mode
        self.align_corners = align_corners
        self.recompute_scale_factor = recompute_scale_factor

    def forward(self, input: Tensor) -> Tensor:
        return interpolate(
            input,
            self.size,
            self.scale_factor,
            self.mode,
            self.align_corners,
            recompute_scale_factor=self.recompute_scale_factor,
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "recompute_scale_factor" not in state:
            state["recompute_scale_factor"] = True
        super().__setstate__(state)  # type: ignore[no-untyped-call]

    def extra_repr(self) -> str:
        if self.scale_factor is not None:
            info = "scale_factor=" + repr(self.scale_factor)
        else:
            info = "size=" + repr(self.size)
        info += ", mode=" + repr(self.mode)
        return info
