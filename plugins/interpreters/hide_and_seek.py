"""Hide-and-seek saliency (after Singh & Lee 2017): hide random subsets of a grid of patches
many times and measure how the target score depends on each patch.

For ``S`` random masks (each patch hidden independently with probability ``p``; the same masks
for every image, drawn from a seeded generator) the importance of patch ``k`` is::

    I_k = mean(score | k visible) - mean(score | k hidden)

Negative importance (hiding the patch raises the score) is dropped by default
(``positive_only``). The patch map is upsampled bilinearly to the input and min-max
normalized. Forward passes are batched (``batch_size`` masked images per pass) and run
without gradients.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from pyseg.data.patch_hiding import hide_patches, patch_grid_masks
from pyseg.interpret.core import (
    ModelGuard,
    logits_of,
    minmax_normalize,
    resolve_targets,
    target_scores,
    upsample_to,
)

__all__ = ["hide_and_seek"]


def hide_and_seek(
    model: nn.Module,
    images: Tensor,
    target: Any = None,
    *,
    grid_size: int | None = None,
    num_samples: int = 256,
    p: float = 0.5,
    fill: float | Any | None = None,
    batch_size: int = 64,
    seed: int = 0,
    positive_only: bool = True,
    normalize: bool = True,
) -> Tensor:
    """Hide-and-seek heatmaps ``(N, H, W)`` in [0, 1].

    Args:
        grid_size: patch side in pixels (default: 1/8 of the shorter image side).
        num_samples: number of random masks.
        p: probability of hiding a patch.
        fill: value of hidden pixels: a float, per-channel values, or ``None`` for each
            image's per-channel mean (pass the training set's mean when known, as in the paper).
        batch_size: masked images per forward pass.
        seed: seed of the mask generator (results are reproducible).
        positive_only: keep only patches whose hiding lowers the score (negative importance
            becomes 0 before normalization, as Grad-CAM keeps only positive evidence);
            ``False`` normalizes the signed importance.
        normalize: ``False`` returns the importance itself (score units), not scaled.
    """
    n, _, h, w = images.shape
    if grid_size is None:
        grid_size = max(1, min(h, w) // 8)
    if num_samples < 2:
        raise ValueError(f"num_samples must be at least 2, got {num_samples}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    gen = torch.Generator().manual_seed(int(seed))
    cells, pixels = patch_grid_masks(num_samples, h, w, int(grid_size), p, gen, images.device)
    if fill is None:
        fill_t = images.mean(dim=(2, 3), keepdim=True)  # (N, C, 1, 1)
    else:
        fill_t = torch.as_tensor(fill, dtype=images.dtype, device=images.device)
        fill_t = fill_t.reshape(1, -1, 1, 1) if fill_t.dim() else fill_t.reshape(1, 1, 1, 1)

    scores = torch.empty(n, num_samples, device=images.device, dtype=torch.float32)
    with ModelGuard(model), torch.no_grad():
        logits = logits_of(model(images))
        classes, mask = resolve_targets(logits, target)
        per_batch = max(1, batch_size // n) if batch_size >= n else 1
        for s0 in range(0, num_samples, per_batch):
            s1 = min(num_samples, s0 + per_batch)
            hidden = pixels[s0:s1]  # (s, H, W)
            # (N, s, C, H, W) -> (N*s, C, H, W); image-major so that target rows repeat
            batch = hide_patches(images[:, None], hidden[None], fill_t[:, None])
            out = logits_of(model(batch.flatten(0, 1)))
            k = s1 - s0
            sc = target_scores(
                out,
                classes.repeat_interleave(k),
                None if mask is None else mask.repeat_interleave(k, 0),
            )
            scores[:, s0:s1] = sc.view(n, k).float()

    visible = (~cells).flatten(1).float()  # (S, K)
    hidden_f = 1.0 - visible
    nv = visible.sum(0)
    nh = hidden_f.sum(0)
    mean_vis = scores @ visible / nv.clamp_min(1)
    mean_hid = scores @ hidden_f / nh.clamp_min(1)
    importance = torch.where((nv > 0) & (nh > 0), mean_vis - mean_hid, torch.zeros_like(mean_vis))
    if positive_only:
        importance = importance.clamp_min(0)
    gh, gw = cells.shape[1:]
    maps = importance.view(n, gh, gw)
    # Patches at the right/bottom edge may be partial: upsample the padded grid and crop.
    full = upsample_to(maps, (gh * grid_size, gw * grid_size))[:, :h, :w]
    return (minmax_normalize(full) if normalize else full).to(images.dtype)
