"""Segmentation / classification metrics from a confusion matrix (all-reducible).

Pixels whose target is ``ignore_index`` (default 255, the VOC / Cityscapes / mmseg
convention; None: no ignore label) are not counted anywhere, as in torchmetrics and mmseg.
Every other target must be a class in ``[0, num_classes)``: a value outside is an error, not
silently dropped, because it means the labels and the class list disagree.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["confusion_matrix", "metrics_from_confusion", "segmentation_metrics"]


def _check_classes(values: torch.Tensor, num_classes: int, name: str, hint: str = "") -> None:
    if values.numel() == 0:
        return
    low, high = values.min().item(), values.max().item()
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise ValueError(f"{name} has value {bad} outside the classes [0, {num_classes}){hint}")


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int | None = 255) -> torch.Tensor:
    """``int64[num_classes, num_classes]`` counts, rows = true class, columns = predicted.

    ``pred`` and ``target`` are integer class indices of the same shape (e.g. ``(N, H, W)``:
    ``logits.argmax(1)`` and the labels). Pixels whose target is ``ignore_index`` are left
    out; any other target, and any prediction at a counted pixel, must lie in
    ``[0, num_classes)`` (``ValueError`` otherwise; ``TypeError`` for floating tensors).

    Example: one pixel of class 1 predicted as 0, and one ignored pixel::

        >>> from pyseg.engine.metrics import confusion_matrix
        >>> confusion_matrix(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 255]), 2)
        tensor([[1, 0],
                [1, 1]])
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    for name, t in (("pred", pred), ("target", target)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a tensor, got {type(t).__name__}")
        if t.is_floating_point() or t.is_complex():
            raise TypeError(f"{name} must hold integer class indices, got {t.dtype} "
                            "(for logits, pass logits.argmax(1))")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")
    pred = pred.reshape(-1).to(torch.int64)
    target = target.reshape(-1).to(torch.int64)
    if ignore_index is not None:
        keep = target != ignore_index
        pred, target = pred[keep], target[keep]
    hint = "" if ignore_index is None else f" that is not the ignore index {ignore_index}"
    _check_classes(target, num_classes, "target", hint)
    _check_classes(pred, num_classes, "pred")
    idx = target * num_classes + pred
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def metrics_from_confusion(cm: torch.Tensor, class_names: Sequence[str],
                           ignore_index: int | None = 255) -> dict:
    """Pixel (or sample) accuracy, per-class IoU and their mean over classes that occur.

    IoU of a class that is absent from both targets and predictions is ``None`` and is left
    out of the mean (torchmetrics' ``MulticlassJaccardIndex(average="macro")`` and mmseg do
    the same). When ``ignore_index`` is itself a class index, that class's IoU is ``None``
    and it is left out of the mean too. Pixel accuracy is the fraction of counted pixels
    predicted right (ignored pixels were never counted, see :func:`confusion_matrix`).

    Args:
        cm: the square confusion matrix, rows = true class (:func:`confusion_matrix`).
        class_names: one name per row.
        ignore_index: the ignore label; if it is a class index, that class gets no IoU.

    Returns:
        ``{"pixel_acc": float, "iou": {name: float or None}, "miou": float}``.

    Raises:
        ValueError: ``cm`` is not square with one row per class name.

    Example: class 1 has one pixel right and one taken for class 0; class 2 never occurs::

        >>> from pyseg.engine.metrics import metrics_from_confusion
        >>> cm = torch.tensor([[2, 0, 0], [1, 1, 0], [0, 0, 0]])
        >>> m = metrics_from_confusion(cm, ["bg", "cat", "dog"])
        >>> m["pixel_acc"], round(m["iou"]["bg"], 4), m["iou"]["cat"], m["iou"]["dog"]
        (0.75, 0.6667, 0.5, None)
        >>> round(m["miou"], 4)                 # (2/3 + 1/2) / 2: "dog" is left out
        0.5833
    """
    if cm.dim() != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(class_names):
        raise ValueError(f"cm must be a square matrix with one row per class name, got "
                         f"shape {tuple(cm.shape)} for {len(class_names)} names")
    cm = cm.to(torch.float64)
    total = cm.sum().item()
    tp = cm.diag()
    union = cm.sum(0) + cm.sum(1) - tp
    ious: dict[str, float | None] = {}
    for i, name in enumerate(class_names):
        ious[name] = (tp[i] / union[i]).item() if union[i] > 0 and i != ignore_index else None
    present = [v for v in ious.values() if v is not None]
    return {
        "pixel_acc": (tp.sum().item() / total) if total else 0.0,
        "iou": ious,
        "miou": sum(present) / len(present) if present else 0.0,
    }


def segmentation_metrics(pred: torch.Tensor, target: torch.Tensor, class_names: Sequence[str],
                         ignore_index: int | None = 255) -> dict:
    """:func:`metrics_from_confusion` of :func:`confusion_matrix` in one call.

    ``pred`` and ``target`` are integer class indices of one shape, ``class_names`` one name
    per class, ``ignore_index`` the label that is not counted; raises as those two do.

    Example::

        >>> from pyseg.engine.metrics import segmentation_metrics
        >>> m = segmentation_metrics(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 255]),
        ...                          ["bg", "fg"])
        >>> m["pixel_acc"], m["miou"]
        (1.0, 1.0)
    """
    cm = confusion_matrix(pred, target, len(class_names), ignore_index)
    return metrics_from_confusion(cm, class_names, ignore_index)
