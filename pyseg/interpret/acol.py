"""ACoL: adversarial complementary learning (Zhang et al. 2018), a classifier head whose second
branch learns from features where the first branch's most discriminative region is erased, so
that together they localize more of the object than one class activation map.

    f = features(x)
    A = branch_a(f)   (N, K, h, w) class maps;  logits_a = mean over space of A
    m = A[c] min-max scaled to [0, 1] per image  (c: the label while training, else predicted)
    B = branch_b(f * [m <= threshold])           the discriminative region erased
    logits = (logits_a + logits_b) / 2 in eval; training returns (logits_a, logits_b), both
    trained with cross-entropy (:func:`acol_loss`)

The localization map of class ``c`` is ``max(norm(relu(A_c)), norm(relu(B_c)))`` (the fused
map of the paper), the interpreter ``acol``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pyseg.interpret.core import (
    InterpretError,
    ModelGuard,
    finish_map,
    minmax_normalize,
    resolve_targets,
)

__all__ = ["ACoL", "acol_loss", "acol_maps"]


def _branch(channels: int, hidden: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels, hidden, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(hidden, num_classes, 1))


class ACoL(nn.Module):
    """An ACoL classifier: ``features`` (any module giving ``(N, channels, h, w)`` maps) and
    two branches of class maps.

    Args:
        features: the backbone.
        channels: channels of the backbone's output.
        num_classes: number of classes.
        threshold: erase where the first branch's scaled map exceeds this (paper: 0.6-0.9).
        hidden: channels of the branches' convolutions.

    Raises:
        ValueError: ``threshold`` outside (0, 1) or non-positive sizes.
    """

    def __init__(self, features: nn.Module, channels: int, num_classes: int,
                 threshold: float = 0.6, hidden: int = 64) -> None:
        super().__init__()
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        if channels < 1 or num_classes < 1 or hidden < 1:
            raise ValueError("channels, num_classes and hidden must be positive")
        self.features = features
        self.branch_a = _branch(channels, hidden, num_classes)
        self.branch_b = _branch(channels, hidden, num_classes)
        self.threshold = float(threshold)

    def class_maps(self, x: Tensor, labels: Tensor | None = None
                   ) -> tuple[Tensor, Tensor, Tensor]:
        """``(A, B, erased)``: both branches' class maps ``(N, K, h, w)`` and the bool erased
        region ``(N, h, w)``, erased for ``labels`` (default: the first branch's prediction)."""
        f = self.features(x)
        a = self.branch_a(f)
        cls = a.mean((2, 3)).argmax(1) if labels is None else labels
        m = minmax_normalize(a[torch.arange(len(a), device=a.device), cls].detach())
        erased = m > self.threshold
        b = self.branch_b(f * (~erased)[:, None].to(f.dtype))
        return a, b, erased

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Any:
        """Eval: the averaged logits ``(N, K)``. Training: ``(logits_a, logits_b)``, the
        region erased for ``labels`` when given."""
        a, b, _ = self.class_maps(x, labels if self.training else None)
        la, lb = a.mean((2, 3)), b.mean((2, 3))
        return (la, lb) if self.training else (la + lb) / 2


def acol_loss(outputs: tuple[Tensor, Tensor], labels: Tensor) -> Tensor:
    """Cross-entropy of both branches, summed (the paper's objective)."""
    la, lb = outputs
    return F.cross_entropy(la, labels) + F.cross_entropy(lb, labels)


def acol_maps(model: nn.Module, images: Tensor, target: Any = None, *,
              normalize: bool = True, branch: str = "fused") -> Tensor:
    """ACoL localization maps ``(N, H, W)`` in [0, 1]: ``branch="fused"`` (the element-wise
    maximum of both branches' scaled positive class maps, the paper's result), ``"a"`` (the
    first branch alone: a plain CAM) or ``"b"``. The region is erased for the target class.
    With ``normalize=False`` the maps are not scaled again after upsampling (the fused map is
    defined on the branches' scaled maps).

    Raises:
        InterpretError: no :class:`ACoL` in ``model``, a target out of range.
        ValueError: an unknown ``branch``.
    """
    if branch not in ("fused", "a", "b"):
        raise ValueError(f"branch must be 'fused', 'a' or 'b', got {branch!r}")
    if not isinstance(model, ACoL):
        raise InterpretError(f"acol needs a pyseg.interpret.acol.ACoL model, got "
                             f"{type(model).__name__} (use 'cam' or 'gradcam')")
    with ModelGuard(model), torch.no_grad():
        classes, _ = resolve_targets(model(images), target)
        a, b, _ = model.class_maps(images, classes)
        idx = torch.arange(len(classes), device=a.device)
        ma = minmax_normalize(torch.relu(a[idx, classes]))
        mb = minmax_normalize(torch.relu(b[idx, classes]))
    maps = {"a": ma, "b": mb, "fused": torch.maximum(ma, mb)}[branch]
    return finish_map(maps, images, normalize)
