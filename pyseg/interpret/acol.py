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

The registered architecture ``acol`` (:func:`acol_classifier`) puts the head on a registered
classifier's convolutional features (``small-convnet``, ``mini-xception``, or any classifier
with a ``features`` module); ``pyseg train --arch mini-xception --acol`` trains it, and the
checkpoint names ``acol`` with its backbone, so ``pyseg explain --method acol`` loads it.
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

__all__ = ["ACoL", "acol_classifier", "acol_loss", "acol_maps", "mask_coverage"]


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
        cls = a.mean((2, 3)).argmax(1)
        if labels is not None:  # a label no class has (an ignored target): the prediction
            labels = labels.to(cls.device)
            cls = torch.where((labels >= 0) & (labels < a.shape[1]), labels, cls)
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


def _backbone_features(net: nn.Module, stages: int | None) -> nn.Module:
    """The convolutional part of a built-in classifier, its first ``stages`` stages (a stage
    ends where the resolution is halved next; None: all)."""
    from pyseg_plugins.architectures.classifiers import MiniXception, SmallConvNet

    if isinstance(net, MiniXception):
        n = len(net.blocks)
        return nn.Sequential(net.rescale, net.stem, net.blocks[:n if stages is None else stages])
    if isinstance(net, SmallConvNet):
        layers: list[nn.Module] = []
        convs = 0
        for layer in net.features:  # conv, ReLU, max pool per stage (no pool after the last)
            if isinstance(layer, nn.Conv2d):
                if stages is not None and convs == stages:
                    break
                convs += 1
            layers.append(layer)
        if isinstance(layers[-1], nn.MaxPool2d):
            layers.pop()
        return nn.Sequential(net.rescale, *layers)
    features = getattr(net, "features", None)
    if not isinstance(features, nn.Module) or stages is not None:
        raise ValueError(f"acol: backbone {type(net).__name__} has no 'features' module to "
                         "put the head on (small-convnet and mini-xception work, and stages= "
                         "only for those)")
    return features


def _out_channels(features: nn.Module) -> int:
    convs = [m for m in features.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("acol: the backbone's features have no convolution")
    return convs[-1].out_channels


def acol_classifier(num_classes: int = 2, in_channels: int = 3,
                    backbone: str = "mini-xception", backbone_kwargs: dict | None = None,
                    threshold: float = 0.6, hidden: int = 64,
                    stages: int | None = None) -> ACoL:
    """The registered architecture ``acol``: an :class:`ACoL` head on the convolutional
    features of the registered classifier ``backbone`` (its own classifier layer is left out).

    Args:
        num_classes: classes. in_channels: input channels.
        backbone: a registered classifier name (``small-convnet``, ``mini-xception`` or a
            plugin's classifier with a ``features`` module); never an import path.
        backbone_kwargs: keyword arguments of the backbone.
        threshold: erasing threshold of :class:`ACoL`. hidden: channels of the branches.
        stages: keep only the backbone's first ``stages`` stages (finer maps: mini-xception
            at 64 px gives 2x2 maps with all 5 blocks, 8x8 with 3); default all.

    Returns:
        The :class:`ACoL` model; ``model(x)`` gives ``(N, num_classes)`` logits in eval mode.

    Raises:
        ValueError: an unknown or unsuitable backbone, bad ``stages`` or ``threshold``.

    >>> model = acol_classifier(2, backbone="mini-xception", stages=3).eval()
    >>> model(torch.rand(1, 3, 64, 64)).shape
    torch.Size([1, 2])
    """
    from pyseg import registry

    if ":" in backbone:
        raise ValueError(f"acol: backbone must be a registered classifier name, got {backbone!r}")
    if stages is not None and (not isinstance(stages, int) or stages < 1):
        raise ValueError(f"acol: stages must be a positive integer, got {stages!r}")
    try:
        spec = registry.get_architecture(backbone)
    except KeyError as e:
        raise ValueError(f"acol: unknown backbone {backbone!r} ({e})") from None
    if "classification" not in spec.tasks or backbone == "acol":
        raise ValueError(f"acol: backbone {backbone!r} is not a classifier")
    net = registry.create_model(backbone, num_classes=num_classes, in_channels=in_channels,
                                **(backbone_kwargs or {}))
    features = _backbone_features(net, stages)
    return ACoL(features, _out_channels(features), num_classes, threshold=threshold,
                hidden=hidden)


def mask_coverage(maps: Tensor, masks: Tensor, threshold: float = 0.5
                  ) -> tuple[Tensor, Tensor]:
    """How much of an object a localization map covers: per image, the fraction of the
    object's pixels where the map exceeds ``threshold``, and the IoU of that region with
    the object (maps in [0, 1], e.g. min-max normalized).

    Args:
        maps: ``(N, H, W)`` maps. masks: ``(N, H, W)`` bool object masks.
        threshold: the level that makes a map pixel count as "on".

    Returns:
        ``(coverage, iou)``, two float ``(N,)`` tensors (0 for an empty mask).

    Raises:
        ValueError: shapes that differ or are not ``(N, H, W)``.

    >>> maps = torch.tensor([[[1.0, 0.6], [0.2, 0.0]]])
    >>> masks = torch.tensor([[[True, True], [True, False]]])
    >>> coverage, iou = mask_coverage(maps, masks)  # 2 of the 3 object pixels are above 0.5
    >>> round(coverage.item(), 4), round(iou.item(), 4)
    (0.6667, 0.6667)
    """
    if maps.dim() != 3 or maps.shape != masks.shape:
        raise ValueError(f"maps and masks must both be (N, H, W), got {tuple(maps.shape)} and "
                         f"{tuple(masks.shape)}")
    on, obj = maps > threshold, masks.bool()
    inter = (on & obj).flatten(1).sum(1).float()
    coverage = inter / obj.flatten(1).sum(1).clamp(min=1)
    iou = inter / (on | obj).flatten(1).sum(1).clamp(min=1)
    return coverage, iou
