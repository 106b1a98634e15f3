"""Faithfulness metrics of heatmaps: does the model's score depend on the pixels a map ranks
first?

* **deletion** / **insertion** (Petsiuk et al. 2018): remove (deletion: set to ``baseline``,
  0 by default) or insert (insertion: into a blurred copy of the image) the pixels in the
  map's order, ``steps`` equal chunks, and record the score after each; the area under the
  curve (x in [0, 1]) is the metric: low for deletion, high for insertion is good.
* **ROAD** (remove and debias, Rong et al. 2022): remove the most relevant (MoRF) or least
  relevant (LeRF) ``q`` % of the pixels for each ``q`` in ``percentiles`` and fill them by
  noisy linear imputation (each removed pixel the weighted mean of its 8 neighbours, solved
  as one linear system, plus Gaussian noise), which leaks no shape of the removed region to
  the model. ``morf`` (low is good), ``lerf`` (high is good) are the mean scores over the
  percentiles and ``road = (lerf - morf) / 2`` (high is good), as pytorch-grad-cam's
  ``ROADCombined``.
* the pointing game: :func:`pyseg.interpret.pointing.pointing_hits`.

The score (:func:`confidence`) is the class probability for classifiers (as Petsiuk et al.)
and the class's logits summed over the target mask for segmentation models; ``score=``
chooses ``"probability"`` or ``"logit"`` explicitly. Pixels are ranked by the map values,
ties broken by position (row-major), so every metric is deterministic given ``seed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pyseg.interpret.core import ModelGuard, logits_of, resolve_targets, target_scores

__all__ = ["auc", "confidence", "deletion", "faithfulness", "gaussian_blur", "insertion",
           "noisy_linear_impute", "road"]

SCORES = ("probability", "logit")


def confidence(logits: Tensor, classes: Tensor, mask: Tensor | None = None,
               score: str | None = None) -> Tensor:
    """Per-image score ``(N,)`` of ``classes``: ``"probability"`` (softmax over classes; for
    segmentation the mean probability over ``mask``) or ``"logit"`` (the class logit, or the
    class's logits summed over ``mask``). ``None``: probability for ``(N, K)`` logits, logit
    for ``(N, K, H, W)``.

    ``classes`` holds one class per image; ``mask`` (bool ``(N, H, W)``) the pixels that count
    for segmentation (None: all).

    Raises:
        ValueError: an unknown ``score``.

    Example::

        >>> from pyseg.interpret.metrics import confidence
        >>> confidence(torch.tensor([[0.0, 0.0], [2.0, 0.0]]), torch.tensor([0, 1]))
        tensor([0.5000, 0.1192])
        >>> confidence(torch.tensor([[0.0, 3.0]]), torch.tensor([1]), score="logit")
        tensor([3.])
    """
    if score is None:
        score = "probability" if logits.dim() == 2 else "logit"
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    if score == "logit":
        return target_scores(logits, classes, mask)
    prob = torch.softmax(logits.float(), 1)
    if logits.dim() == 2:
        return prob[torch.arange(len(classes), device=prob.device), classes]
    per_pixel = prob[torch.arange(len(classes), device=prob.device), classes]  # (N, H, W)
    if mask is None:
        return per_pixel.flatten(1).mean(1)
    m = mask.to(per_pixel.dtype)
    return (per_pixel * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1)


def auc(curve: Tensor) -> Tensor:
    """Area under ``(..., T + 1)`` curves sampled at x = 0, 1/T, ..., 1 (trapezoid rule), one
    per curve of ``curve``. Raises ``ValueError`` for fewer than 2 points.

    Example::

        >>> from pyseg.interpret.metrics import auc
        >>> auc(torch.tensor([[0.0, 0.5, 1.0], [1.0, 1.0, 1.0]]))
        tensor([0.5000, 1.0000])
    """
    if curve.shape[-1] < 2:
        raise ValueError(f"a curve needs at least 2 points, got {curve.shape[-1]}")
    return (curve[..., 1:] + curve[..., :-1]).sum(-1) / (2 * (curve.shape[-1] - 1))


def gaussian_blur(images: Tensor, kernel_size: int = 11, sigma: float = 5.0) -> Tensor:
    """Separable Gaussian blur of ``(N, C, H, W)`` ``images``, reflected borders (the
    insertion metric's starting canvas; Petsiuk et al. use ``kernel_size=11, sigma=5``, the
    defaults). ``kernel_size`` should be odd; ``sigma`` is in pixels.

    Example: a constant image stays constant, a point spreads and keeps its mass::

        >>> from pyseg.interpret.metrics import gaussian_blur
        >>> torch.allclose(gaussian_blur(torch.ones(1, 3, 8, 8)), torch.ones(1, 3, 8, 8))
        True
        >>> point = torch.zeros(1, 1, 15, 15)
        >>> point[0, 0, 7, 7] = 1
        >>> out = gaussian_blur(point, kernel_size=5, sigma=1.0)
        >>> round(out.sum().item(), 4), bool(out[0, 0, 7, 7] < 1)
        (1.0, True)
    """
    r = kernel_size // 2
    x = torch.arange(kernel_size, dtype=torch.float32, device=images.device) - r
    k = torch.exp(-(x**2) / (2 * sigma**2))
    k = (k / k.sum()).to(images.dtype)
    c = images.shape[1]
    mode = "reflect" if min(images.shape[-2:]) > r else "replicate"
    out = F.pad(images, (r, r, r, r), mode=mode)
    out = F.conv2d(out, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _check(images: Tensor, saliency: Tensor) -> None:
    if images.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W), got {tuple(images.shape)}")
    if saliency.shape != (images.shape[0], *images.shape[-2:]):
        raise ValueError(f"saliency has shape {tuple(saliency.shape)}, expected "
                         f"{(images.shape[0], *images.shape[-2:])} (one map per image)")


def _order(saliency: Tensor) -> Tensor:
    """Pixel indices ``(N, H*W)``, most salient first, ties by position."""
    return torch.sort(saliency.flatten(1).float(), dim=1, descending=True, stable=True).indices


def _targets(model: nn.Module, images: Tensor, target: Any) -> tuple[Tensor, Tensor | None]:
    with torch.no_grad():
        return resolve_targets(logits_of(model(images)), target)


def _scores(model: nn.Module, batch: Tensor, cls: Tensor, mask: Tensor | None,
            score: str | None) -> Tensor:
    k = batch.shape[0]
    m = None if mask is None else mask.expand(k, *mask.shape[1:])
    return confidence(logits_of(model(batch)), cls.expand(k), m, score).float()


def _curve(model: nn.Module, images: Tensor, saliency: Tensor, target: Any, start: Tensor,
           finish: Tensor, steps: int, batch_size: int, score: str | None) -> Tensor:
    """Scores ``(N, steps + 1)`` as the pixels in ``saliency``'s order go from ``start`` to
    ``finish`` (the first image of the curve is ``start``, the last is ``finish``)."""
    _check(images, saliency)
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive, got {steps}, {batch_size}")
    n, _, h, w = images.shape
    order = _order(saliency)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w, device=order.device).expand(n, -1))
    counts = torch.round(torch.linspace(0, h * w, steps + 1)).long().to(images.device)
    curve = torch.empty(n, steps + 1)
    with ModelGuard(model), torch.no_grad():
        classes, mask = _targets(model, images, target)
        for i in range(n):
            for t0 in range(0, steps + 1, batch_size):
                cnt = counts[t0:t0 + batch_size]
                moved = (rank[i][None] < cnt[:, None]).view(-1, 1, h, w)  # (k, 1, H, W)
                batch = torch.where(moved, finish[i][None], start[i][None])
                m = None if mask is None else mask[i:i + 1]
                curve[i, t0:t0 + len(cnt)] = _scores(model, batch, classes[i], m, score).cpu()
    return curve


def deletion(model: nn.Module, images: Tensor, saliency: Tensor, target: Any = None, *,
             steps: int = 32, baseline: float | Tensor = 0.0, batch_size: int = 33,
             score: str | None = None) -> tuple[Tensor, Tensor]:
    """Deletion curves and their areas: ``(curves (N, steps + 1), auc (N,))``; lower is better.

    Args:
        model: the model whose score is measured (left as it was found).
        images: ``(N, C, H, W)`` inputs.
        saliency: ``(N, H, W)`` maps (any scale; only the order of the pixels matters).
        target: as for the interpreters (class, or class + pixel mask for segmentation).
        steps: number of equal chunks of pixels removed.
        baseline: value of removed pixels (a float or a tensor broadcastable to the images).
        batch_size: perturbed images per forward pass.
        score: see :func:`confidence`.

    Raises:
        ValueError: shapes that do not match, non-positive ``steps`` / ``batch_size``.

    Example: removing a quarter of a white image at a time lowers its brightness linearly::

        >>> class Bright(nn.Module):          # class 0's logit: the mean brightness
        ...     def forward(self, x):
        ...         m = x.mean((1, 2, 3))
        ...         return torch.stack([m, -m], 1)
        >>> from pyseg.interpret.metrics import deletion
        >>> curves, area = deletion(Bright(), torch.ones(1, 3, 2, 2), torch.rand(1, 2, 2),
        ...                         target=0, steps=4, score="logit")
        >>> curves, area
        (tensor([[1.0000, 0.7500, 0.5000, 0.2500, 0.0000]]), tensor([0.5000]))
    """
    base = torch.as_tensor(baseline, dtype=images.dtype, device=images.device)
    curve = _curve(model, images, saliency, target, images, base.expand_as(images), steps,
                   batch_size, score)
    return curve, auc(curve)


def insertion(model: nn.Module, images: Tensor, saliency: Tensor, target: Any = None, *,
              steps: int = 32, canvas: Tensor | None = None, batch_size: int = 33,
              score: str | None = None) -> tuple[Tensor, Tensor]:
    """Insertion curves and their areas: ``(curves (N, steps + 1), auc (N,))``; higher is
    better. The pixels are inserted into ``canvas`` (default: :func:`gaussian_blur` of the
    images, as Petsiuk et al.); ``model``, ``images``, ``saliency``, ``target``, ``steps``,
    ``batch_size`` and ``score`` as for :func:`deletion`, which raises the same errors.

    Example: a white image inserted into a black canvas, a quarter at a time::

        >>> class Bright(nn.Module):          # class 0's logit: the mean brightness
        ...     def forward(self, x):
        ...         m = x.mean((1, 2, 3))
        ...         return torch.stack([m, -m], 1)
        >>> from pyseg.interpret.metrics import insertion
        >>> curves, area = insertion(Bright(), torch.ones(1, 3, 2, 2), torch.rand(1, 2, 2),
        ...                          target=0, steps=4, canvas=torch.zeros(1, 3, 2, 2),
        ...                          score="logit")
        >>> curves, area
        (tensor([[0.0000, 0.2500, 0.5000, 0.7500, 1.0000]]), tensor([0.5000]))
    """
    if canvas is None:
        canvas = gaussian_blur(images)
    canvas = torch.as_tensor(canvas, dtype=images.dtype, device=images.device).expand_as(images)
    curve = _curve(model, images, saliency, target, canvas, images, steps, batch_size, score)
    return curve, auc(curve)


# --------------------------------------------------------------------------------------------
# ROAD
# --------------------------------------------------------------------------------------------

# (dy, dx, weight) of the 8 neighbours in the imputation (Rong et al. 2022).
_NEIGHBOURS = [(dy, dx, 1 / 12 if dy and dx else 1 / 6)
               for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]


def _neighbour_sum(x: Tensor, weights: Sequence[tuple[int, int, float]]) -> Tensor:
    """``sum_j w_j x[p + offset_j]`` for ``(B, H, W)`` x, zero outside the image."""
    padded = F.pad(x, (1, 1, 1, 1))
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    for dy, dx, wt in weights:
        out = out + wt * padded[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
    return out


def noisy_linear_impute(images: Tensor, removed: Tensor, noise: float = 0.01,
                        generator: torch.Generator | None = None, tol: float = 1e-6,
                        max_iter: int = 2000) -> Tensor:
    """Fill the ``removed`` pixels (bool ``(N, H, W)``) of ``(N, C, H, W)`` images: each
    removed value is the weighted mean of its in-image neighbours (weights 1/6 for the 4
    direct, 1/12 for the 4 diagonal ones), which gives one sparse symmetric positive-definite
    system per image and channel, solved by conjugate gradients; then Gaussian noise of
    standard deviation ``noise`` is added to the filled pixels (ROAD's imputation), drawn
    from ``generator``. Conjugate gradients stop at a residual of ``tol`` relative to the
    right-hand side, or after ``max_iter`` iterations.

    Example: the middle of ``[0, ?, 2]`` is the mean of its two neighbours::

        >>> from pyseg.interpret.metrics import noisy_linear_impute
        >>> out = noisy_linear_impute(torch.tensor([[[[0.0, 9.0, 2.0]]]]),
        ...                           torch.tensor([[[False, True, False]]]), noise=0.0)
        >>> out.round(decimals=4)
        tensor([[[[0., 1., 2.]]]])

    Raises:
        ValueError: a mask of the wrong shape, or an image with every pixel removed.
    """
    n, c, h, w = images.shape
    if removed.shape != (n, h, w):
        raise ValueError(f"removed must be (N, H, W) = {(n, h, w)}, got {tuple(removed.shape)}")
    removed = removed.bool()
    if removed.flatten(1).all(1).any():
        raise ValueError("noisy_linear_impute: an image has every pixel removed")
    x = images.double().flatten(0, 1)  # (B, H, W), B = N*C
    unk = removed.repeat_interleave(c, 0).double()
    known = 1.0 - unk
    # Row i of the system, for a removed pixel i:  s_i x_i - sum_{j removed} w_ij x_j
    #   = sum_{j known} w_ij v_j,  s_i = the sum of the weights of i's in-image neighbours.
    s = _neighbour_sum(torch.ones(1, h, w, dtype=x.dtype, device=x.device), _NEIGHBOURS)

    def apply(v: Tensor) -> Tensor:
        v = v * unk
        return (s * v - _neighbour_sum(v, _NEIGHBOURS)) * unk

    b = _neighbour_sum(x * known, _NEIGHBOURS) * unk
    sol = (x * unk).clone()
    r = b - apply(sol)
    pdir = r.clone()
    rr = (r * r).flatten(1).sum(1)
    b_norm = b.flatten(1).norm(dim=1).clamp_min(1e-30)
    for _ in range(max_iter):
        if (rr.sqrt() <= tol * b_norm).all():
            break
        ap = apply(pdir)
        denom = (pdir * ap).flatten(1).sum(1)
        alpha = torch.where(denom > 0, rr / denom.clamp_min(1e-300), torch.zeros_like(rr))
        sol = sol + alpha[:, None, None] * pdir
        r = r - alpha[:, None, None] * ap
        rr_new = (r * r).flatten(1).sum(1)
        beta = torch.where(rr > 0, rr_new / rr.clamp_min(1e-300), torch.zeros_like(rr))
        pdir = r + beta[:, None, None] * pdir
        rr = rr_new
    filled = x * known + sol * unk
    if noise > 0:
        eps = torch.randn(filled.shape, generator=generator, dtype=filled.dtype)
        filled = filled + noise * eps.to(filled.device) * unk
    return filled.view(n, c, h, w).to(images.dtype)


def road(model: nn.Module, images: Tensor, saliency: Tensor, target: Any = None, *,
         percentiles: Sequence[float] = (10, 20, 30, 40, 50, 60, 70, 80, 90),
         noise: float = 0.01, seed: int = 0, score: str | None = None) -> dict[str, Tensor]:
    """ROAD scores per image: ``{"morf": (N,), "lerf": (N,), "road": (N,), "morf_curve":
    (N, P), "lerf_curve": (N, P)}`` (see the module docstring). The ``q`` % removed are the
    first ``round(q / 100 * H * W)`` pixels in the map's order (MoRF) or in the reverse order
    (LeRF). ``seed`` seeds the imputation noise.

    ``model``, ``images``, ``saliency``, ``target`` and ``score`` are as for
    :func:`deletion`; ``noise`` as for :func:`noisy_linear_impute`.

    Raises:
        ValueError: shapes that do not match, a percentile outside [0, 100).

    Example: a constant image is filled with its constant, so no removal changes the score::

        >>> class Bright(nn.Module):          # class 0's logit: the mean brightness
        ...     def forward(self, x):
        ...         m = x.mean((1, 2, 3))
        ...         return torch.stack([m, -m], 1)
        >>> from pyseg.interpret.metrics import road
        >>> r = road(Bright(), torch.ones(1, 3, 4, 4), torch.rand(1, 4, 4), target=0,
        ...          percentiles=(25, 50), noise=0.0, score="logit")
        >>> r["morf_curve"].round(decimals=4), r["road"].abs().item() < 1e-4
        (tensor([[1., 1.]]), True)
    """
    _check(images, saliency)
    if not percentiles or any(not 0 <= q < 100 for q in percentiles):
        raise ValueError(f"percentiles must be in [0, 100), got {list(percentiles)}")
    n, _, h, w = images.shape
    order = _order(saliency)
    gen = torch.Generator().manual_seed(int(seed))
    curves = {"morf": torch.empty(n, len(percentiles)), "lerf": torch.empty(n, len(percentiles))}
    with ModelGuard(model), torch.no_grad():
        classes, mask = _targets(model, images, target)
        for j, q in enumerate(percentiles):
            count = round(q / 100 * h * w)
            for kind, idx in (("morf", order[:, :count]),
                              ("lerf", order[:, h * w - count:] if count else order[:, :0])):
                removed = torch.zeros(n, h * w, dtype=torch.bool, device=images.device)
                removed.scatter_(1, idx, True)
                filled = noisy_linear_impute(images, removed.view(n, h, w), noise, gen)
                out = logits_of(model(filled))
                curves[kind][:, j] = confidence(out, classes, mask, score).float().cpu()
    morf, lerf = curves["morf"].mean(1), curves["lerf"].mean(1)
    return {"morf": morf, "lerf": lerf, "road": (lerf - morf) / 2,
            "morf_curve": curves["morf"], "lerf_curve": curves["lerf"]}


def faithfulness(model: nn.Module, images: Tensor, saliency: Tensor, target: Any = None, *,
                 steps: int = 32, score: str | None = None, seed: int = 0,
                 object_mask: Tensor | None = None) -> dict[str, Tensor]:
    """All metrics per image: ``deletion`` and ``insertion`` (areas), ``road`` (and
    ``morf``, ``lerf``), and with ``object_mask`` (bool ``(N, H, W)``) the pointing game
    ``pointing`` (1.0 hit, 0.0 miss). ``model``, ``images``, ``saliency``, ``target``,
    ``steps`` and ``score`` are as for :func:`deletion` (which raises the same errors),
    ``seed`` as for :func:`road`.

    Example::

        >>> class Bright(nn.Module):          # class 0's logit: the mean brightness
        ...     def forward(self, x):
        ...         m = x.mean((1, 2, 3))
        ...         return torch.stack([m, -m], 1)
        >>> from pyseg.interpret.metrics import faithfulness
        >>> saliency = torch.zeros(1, 4, 4)
        >>> saliency[0, 1, 2] = 1
        >>> out = faithfulness(Bright(), torch.ones(1, 3, 4, 4), saliency, target=0, steps=4,
        ...                    score="logit", object_mask=saliency > 0)
        >>> sorted(out), out["deletion"], out["pointing"]
        (['deletion', 'insertion', 'lerf', 'morf', 'pointing', 'road'], tensor([0.5000]), tensor([1.]))
    """
    from pyseg.interpret.pointing import pointing_hits

    out: dict[str, Tensor] = {}
    out["deletion"] = deletion(model, images, saliency, target, steps=steps, score=score)[1]
    out["insertion"] = insertion(model, images, saliency, target, steps=steps, score=score)[1]
    r = road(model, images, saliency, target, seed=seed, score=score)
    out.update(road=r["road"], morf=r["morf"], lerf=r["lerf"])
    if object_mask is not None:
        out["pointing"] = pointing_hits(saliency.cpu(), object_mask.cpu()).float()
    return out
