"""The pointing game (Zhang et al. 2016): does a heatmap's maximum fall on the object?"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["pointing_hits"]


def pointing_hits(heatmaps: Tensor, masks: Tensor, tolerance: int = 0) -> Tensor:
    """``bool[N]``: whether the maximum of each ``heatmaps[i] (H, W)`` lies within
    ``tolerance`` pixels (Chebyshev distance) of ``masks[i]`` (bool object mask).

    With ties, every pixel attaining the maximum counts as a point and a hit needs all of them
    on the object (a constant map never hits unless the object covers the image). Raises
    ``ValueError`` unless ``heatmaps`` and ``masks`` are both ``(N, H, W)``.

    Example: the peak at (0, 0) misses an object at (0, 2), unless two pixels off may count::

        >>> import torch
        >>> from pyseg.interpret.pointing import pointing_hits
        >>> heat = torch.tensor([[[1.0, 0.5, 0.0]]])
        >>> obj = torch.tensor([[[False, False, True]]])
        >>> pointing_hits(heat, obj), pointing_hits(heat, obj, tolerance=2)
        (tensor([False]), tensor([True]))
    """
    if heatmaps.shape != masks.shape or heatmaps.dim() != 3:
        raise ValueError(f"heatmaps {tuple(heatmaps.shape)} and masks {tuple(masks.shape)} "
                         "must both be (N, H, W)")
    m = masks.bool()
    if tolerance > 0:
        k = 2 * tolerance + 1
        m = F.max_pool2d(m[:, None].float(), k, stride=1, padding=tolerance)[:, 0] > 0
    peak = heatmaps == heatmaps.flatten(1).amax(1)[:, None, None]
    return ~(peak & ~m).flatten(1).any(1)
