"""Hide-and-Seek (Singh & Lee, ICCV 2017) training augmentation.

The image is divided into a grid of ``grid_size x grid_size``-pixel patches and each patch is
hidden with probability ``p``: its pixels are replaced by the dataset mean, so that hidden
patches have, in expectation, the same first-layer activations as at test time (when nothing
is hidden). The network then cannot rely on the single most discriminative part of an object.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["HideAndSeek", "hide_patches", "patch_grid_masks"]


def patch_grid_masks(
    num: int, height: int, width: int, grid_size: int, p: float,
    generator: torch.Generator | None = None, device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Draw ``num`` random patch masks.

    Returns ``(hidden_cells bool[num, gh, gw], hidden_pixels bool[num, height, width])`` where
    ``gh = ceil(height / grid_size)``, ``gw = ceil(width / grid_size)``; each cell is hidden
    independently with probability ``p`` (cells at the right/bottom edge may be partial),
    drawn from ``generator``; the masks are put on ``device`` (None: the CPU).

    Raises ``ValueError`` for ``grid_size < 1`` or ``p`` outside [0, 1].

    Example::

        >>> from pyseg.data.patch_hiding import patch_grid_masks
        >>> cells, pixels = patch_grid_masks(2, 5, 8, grid_size=4, p=1.0)
        >>> cells.shape, pixels.shape, bool(pixels.all())
        (torch.Size([2, 2, 2]), torch.Size([2, 5, 8]), True)
    """
    if grid_size < 1:
        raise ValueError(f"grid_size must be a positive number of pixels, got {grid_size}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    gh = -(-height // grid_size)
    gw = -(-width // grid_size)
    cells = torch.rand(num, gh, gw, generator=generator) < p
    cells = cells.to(device) if device is not None else cells
    pixels = cells.repeat_interleave(grid_size, 1).repeat_interleave(grid_size, 2)
    return cells, pixels[:, :height, :width]


def hide_patches(images: Tensor, hidden: Tensor, fill: Tensor) -> Tensor:
    """Replace the pixels of ``images (..., C, H, W)`` where ``hidden (..., H, W)`` is true by
    ``fill`` (broadcastable to ``(..., C, 1, 1)``); returns a new tensor.

    Example::

        >>> from pyseg.data.patch_hiding import hide_patches
        >>> hidden = torch.tensor([[True, False]])
        >>> hide_patches(torch.ones(2, 1, 2), hidden, torch.tensor([0.5, 0.0])[:, None, None])
        tensor([[[0.5000, 1.0000]],
        <BLANKLINE>
                [[0.0000, 1.0000]]])
    """
    return torch.where(hidden.unsqueeze(-3), fill.to(images.dtype), images)


class HideAndSeek:
    """Hide random patches of an image (training augmentation).

    Args:
        grid_size: patch side in pixels, or a sequence of sizes of which one is drawn per call
            (the paper draws from ``(0, 16, 32, 44, 56)``; ``0`` means "hide nothing").
        p: probability of hiding each patch (0.5 in the paper).
        mean: the fill value: the dataset's per-channel mean (a float or ``C`` floats). ``None``
            uses each image's own per-channel mean.
        generator: optional ``torch.Generator`` for reproducible patches.

    Call it on an image ``(C, H, W)`` or a batch ``(N, C, H, W)`` (each image gets its own
    patches); ``transform(image, target)`` returns ``(hidden_image, target)`` unchanged target,
    so it fits a segmentation dataset's joint transforms too.

    Example::

        >>> aug = HideAndSeek(grid_size=16, p=0.5, mean=(0.48, 0.45, 0.40))
        >>> aug(torch.rand(3, 64, 64)).shape
        torch.Size([3, 64, 64])
    """

    def __init__(
        self,
        grid_size: int | Sequence[int] = 16,
        p: float = 0.5,
        mean: float | Sequence[float] | Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        sizes = [grid_size] if isinstance(grid_size, int) else list(grid_size)
        if not sizes or any(not isinstance(s, int) or s < 0 for s in sizes):
            raise ValueError(
                f"grid_size must be a non-negative int or a sequence of them, got {grid_size!r}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.grid_sizes = sizes
        self.p = float(p)
        self.mean = None if mean is None else torch.as_tensor(mean, dtype=torch.float32)
        self.generator = generator

    def __repr__(self) -> str:
        sizes = self.grid_sizes[0] if len(self.grid_sizes) == 1 else tuple(self.grid_sizes)
        mean = None if self.mean is None else self.mean.tolist()
        return f"HideAndSeek(grid_size={sizes}, p={self.p}, mean={mean})"

    def _fill(self, image: Tensor) -> Tensor:
        if self.mean is None:
            return image.mean(dim=(-2, -1), keepdim=True)
        m = self.mean.to(image.device)
        if m.dim() == 0:
            return m.expand(image.shape[-3]).reshape(-1, 1, 1)
        if m.numel() != image.shape[-3]:
            raise ValueError(f"mean has {m.numel()} values for {image.shape[-3]} channels")
        return m.reshape(-1, 1, 1)

    def _one(self, image: Tensor) -> Tensor:
        i = int(torch.randint(len(self.grid_sizes), (1,), generator=self.generator))
        size = self.grid_sizes[i]
        if size == 0 or self.p == 0.0:
            return image
        _, hidden = patch_grid_masks(
            1, image.shape[-2], image.shape[-1], size, self.p, self.generator, image.device
        )
        return hide_patches(image, hidden[0], self._fill(image))

    def __call__(self, image: Tensor, target: Any = None) -> Any:
        if not isinstance(image, Tensor) or image.dim() not in (3, 4):
            raise ValueError("HideAndSeek expects a (C, H, W) or (N, C, H, W) tensor")
        out = self._one(image) if image.dim() == 3 else torch.stack([self._one(x) for x in image])
        return out if target is None else (out, target)
