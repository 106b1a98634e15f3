"""Segmentation / classification metrics from a confusion matrix (all-reducible)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int | None = None) -> torch.Tensor:
    """``int64[num_classes, num_classes]`` counts, rows = true class, columns = predicted.

    Targets equal to ``ignore_index`` or outside ``[0, num_classes)`` are not counted.
    """
    pred = pred.reshape(-1).to(torch.int64)
    target = target.reshape(-1).to(torch.int64)
    keep = (target >= 0) & (target < num_classes)
    if ignore_index is not None:
        keep &= target != ignore_index
    idx = target[keep] * num_classes + pred[keep]
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def metrics_from_confusion(cm: torch.Tensor, class_names: Sequence[str]) -> dict:
    """Pixel (or sample) accuracy, per-class IoU and their mean over classes that occur.

    IoU of a class that is absent from both targets and predictions is ``None`` and is left
    out of the mean.
    """
    cm = cm.to(torch.float64)
    total = cm.sum().item()
    tp = cm.diag()
    union = cm.sum(0) + cm.sum(1) - tp
    ious: dict[str, float | None] = {}
    for i, name in enumerate(class_names):
        ious[name] = (tp[i] / union[i]).item() if union[i] > 0 else None
    present = [v for v in ious.values() if v is not None]
    return {
        "pixel_acc": (tp.sum().item() / total) if total else 0.0,
        "iou": ious,
        "miou": sum(present) / len(present) if present else 0.0,
    }
