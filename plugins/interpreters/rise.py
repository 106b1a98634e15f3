"""RISE: randomized input sampling for explanation (Petsiuk et al. 2018).

``S`` random masks ``M_i`` in [0, 1] (a coarse ``grid x grid`` binary grid, each cell kept with
probability ``p``, upsampled bilinearly to ``(grid + 1) * cell`` and cropped at a random shift
of up to one cell, as in the paper) multiply the image; the saliency of pixel ``x`` is the
paper's ``E[score(I * M) | M(x) = 1] = E[score(I * M) M(x)] / E[M(x)]``, the mask-weighted
mean of the scores. By default (``normalization="mask_sum"``) the denominator is each pixel's
own mask sum::

    S(x) = sum_i score(I * M_i) * M_i(x) / sum_i M_i(x)

``normalization="p"`` divides by its expectation instead, ``S * p``, as the paper's
Monte Carlo formula (eq. 6) and its code do::

    S(x) = 1 / (S * p) * sum_i score(I * M_i) * M_i(x)

Both estimate the same expectation, but the second carries the term ``mean score x (sum_i
M_i(x) / (S p) - 1)``: with a confident classifier (scores near 1) and few masks it outweighs
the evidence, and since every image gets the same seeded masks it puts the same peak in every
map (where the masks happen to be densest: the image border, whose pixels are the least
averaged by the bilinear upsampling). The per-pixel sum removes that term exactly: a model
whose score does not depend on the input gets a constant map.

``score`` is the class probability for a classifier (as in the paper) or, for a segmentation
target, the class's logits summed over the target mask (``score="logit"`` / ``"probability"``
to choose). The masks come from a seeded generator, the same for every image; forward passes
are batched and run without gradients.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pyseg.interpret.core import ModelGuard, logits_of, minmax_normalize, resolve_targets
from pyseg.interpret.metrics import confidence

__all__ = ["rise", "rise_masks"]


def rise_masks(num: int, height: int, width: int, grid: int, p: float,
               generator: torch.Generator, device: torch.device | str = "cpu") -> Tensor:
    """``float[num, height, width]`` RISE masks in [0, 1] (see the module docstring).

    Raises:
        ValueError: ``num`` or ``grid`` below 1, ``p`` outside (0, 1].
    """
    if num < 1 or grid < 1:
        raise ValueError(f"num and grid must be positive, got num={num}, grid={grid}")
    if not 0.0 < p <= 1.0:
        raise ValueError(f"p must be in (0, 1], got {p}")
    cell_h, cell_w = math.ceil(height / grid), math.ceil(width / grid)
    cells = (torch.rand(num, 1, grid, grid, generator=generator) < p).float()
    up = F.interpolate(cells, size=((grid + 1) * cell_h, (grid + 1) * cell_w), mode="bilinear",
                       align_corners=False)[:, 0].clamp(0.0, 1.0)  # no rounding past 1
    dy = torch.randint(0, cell_h, (num,), generator=generator)
    dx = torch.randint(0, cell_w, (num,), generator=generator)
    out = torch.stack([up[i, dy[i]:dy[i] + height, dx[i]:dx[i] + width] for i in range(num)])
    return out.to(device)


def rise(
    model: nn.Module,
    images: Tensor,
    target: Any = None,
    *,
    num_samples: int = 1000,
    grid: int = 8,
    p: float = 0.5,
    batch_size: int = 64,
    seed: int = 0,
    score: str | None = None,
    normalization: str = "mask_sum",
    normalize: bool = True,
) -> Tensor:
    """RISE heatmaps ``(N, H, W)`` in [0, 1].

    Args:
        num_samples: number of random masks (the paper uses 4000-8000 for ImageNet models).
        grid: cells per side of the coarse grid.
        p: probability that a cell is kept.
        batch_size: masked images per forward pass (memory: about ``batch_size`` times one
            image's forward activations; time: ``num_samples / batch_size`` passes per image).
        seed: seed of the mask generator (reproducible; independent of ``batch_size``).
        score: ``"probability"`` or ``"logit"``; default: probability for classifiers, the
            summed logits over the target mask for segmentation models.
        normalization: ``"mask_sum"`` (default) divides each pixel's sum by its own mask sum
            ``sum_i M_i(x)``; ``"p"`` by ``num_samples * p``, the paper's formula (see the
            module docstring). A pixel that no mask covers gets 0 with ``"mask_sum"``.
        normalize: ``False`` returns ``S(x)`` itself (in score units).

    Raises:
        ValueError: a non-positive ``num_samples`` or ``batch_size``, an unknown
            ``normalization``.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if normalization not in ("mask_sum", "p"):
        raise ValueError(f"normalization must be 'mask_sum' or 'p', got {normalization!r}")
    n, _, h, w = images.shape
    gen = torch.Generator().manual_seed(int(seed))
    masks = rise_masks(num_samples, h, w, grid, p, gen, images.device).to(images.dtype)
    sal = torch.zeros(n, h * w, device=images.device, dtype=torch.float32)
    with ModelGuard(model), torch.no_grad():
        logits = logits_of(model(images))
        classes, mask = resolve_targets(logits, target)
        for i in range(n):
            for s0 in range(0, num_samples, batch_size):
                m = masks[s0:s0 + batch_size]
                k = m.shape[0]
                out = logits_of(model(images[i:i + 1] * m[:, None]))
                sc = confidence(out, classes[i].expand(k),
                                None if mask is None else mask[i:i + 1].expand(k, *mask.shape[1:]),
                                score)
                sal[i] += sc.float() @ m.flatten(1).float()
    if normalization == "p":
        sal = sal / (num_samples * p)
    else:
        total = masks.flatten(1).float().sum(0)
        sal = torch.where(total > 0, sal / total.clamp(min=1e-12), torch.zeros_like(sal))
    sal = sal.view(n, h, w)
    return (minmax_normalize(sal) if normalize else sal).to(images.dtype)
