"""The spatial transformer (Jaderberg et al., "Spatial Transformer Networks", 2015)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from pyseg.ops.grid_sample import affine_grid, grid_sample

__all__ = ["SpatialTransformer"]


def _localization(in_channels: int, dims: int) -> nn.Sequential:
    conv = nn.Conv2d if dims == 2 else nn.Conv3d
    pool = nn.MaxPool2d if dims == 2 else nn.MaxPool3d
    avg = nn.AdaptiveAvgPool2d if dims == 2 else nn.AdaptiveAvgPool3d
    return nn.Sequential(
        conv(in_channels, 8, 5, padding=2), pool(2), nn.ReLU(inplace=True),
        conv(8, 16, 3, padding=1), pool(2), nn.ReLU(inplace=True),
        avg(3), nn.Flatten(), nn.Linear(16 * 3**dims, 32), nn.ReLU(inplace=True),
    )


class SpatialTransformer(nn.Module):
    """A localization network predicts an affine transform per image, which resamples the
    image: ``grid_sample(x, affine_grid(theta(x), size))``.

    The last layer (``self.fc_theta``) starts with zero weights and the identity as its
    bias, so an untrained transformer passes its input through unchanged (up to
    resampling) and training moves it away from the identity only where the loss asks.

    Args:
        in_channels: channels of the input images.
        dims: 2 for ``(N, C, H, W)`` images (6 parameters, a 2x3 matrix), 3 for volumes
            ``(N, C, D, H, W)`` (12 parameters, 3x4).
        localization: a module mapping the input to ``(N, features)``; default: two
            conv / max-pool / ReLU stages, an adaptive average pool to 3 per axis and a
            32-unit hidden layer (``features=32``).
        features: the localization network's output width (needed with a custom one).
        output_size: spatial size of the output; default: the input's.
        mode, padding_mode, align_corners: passed to :func:`pyseg.ops.grid_sample` (and
            ``align_corners`` to :func:`pyseg.ops.affine_grid`).

    Raises:
        ValueError: ``dims`` not 2 or 3, or a custom ``localization`` without ``features``.

    Example::

        >>> stn = pyseg.nn.SpatialTransformer(3)
        >>> x = torch.rand(2, 3, 16, 16)
        >>> torch.allclose(stn(x), x, atol=1e-6)  # the identity at initialization
        True
        >>> stn.theta(x).shape
        torch.Size([2, 2, 3])
    """

    def __init__(
        self,
        in_channels: int,
        dims: int = 2,
        localization: nn.Module | None = None,
        features: int | None = None,
        output_size: Sequence[int] | None = None,
        mode: str = "bilinear",
        padding_mode: str = "zeros",
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        if dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, got {dims!r}")
        if localization is None:
            localization, features = _localization(in_channels, dims), 32
        elif features is None:
            raise ValueError("a custom localization network needs its output width: features=")
        self.dims = dims
        self.localization = localization
        self.fc_theta = nn.Linear(features, dims * (dims + 1))
        nn.init.zeros_(self.fc_theta.weight)
        with torch.no_grad():
            self.fc_theta.bias.copy_(torch.eye(dims, dims + 1).flatten())
        self.output_size = None if output_size is None else tuple(output_size)
        self.mode, self.padding_mode, self.align_corners = mode, padding_mode, align_corners

    def theta(self, x: Tensor) -> Tensor:
        """The predicted transforms, ``(N, 2, 3)`` (or ``(N, 3, 4)``), mapping output
        coordinates to input coordinates in [-1, 1]."""
        theta: Tensor = self.fc_theta(self.localization(x))
        return theta.view(-1, self.dims, self.dims + 1)

    def forward(self, x: Tensor) -> Tensor:
        """Resamples ``x`` with its predicted transform."""
        spatial = self.output_size or tuple(x.shape[2:])
        grid = affine_grid(self.theta(x), [x.shape[0], x.shape[1], *spatial], self.align_corners)
        out: Tensor = grid_sample(x, grid.to(x.dtype), self.mode, self.padding_mode,
                                  self.align_corners)
        return out
