"""PNG figures written by ``pyseg train``: loss curves and a predictions grid."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from pyseg.engine.outputs import atomic_path
from pyseg.interpret.overlay import draw_segmentation
from pyseg.palette import colorize_mask


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _atomic_savefig(fig, path: Path) -> None:
    with atomic_path(path, ".tmp.png") as tmp:  # the suffix tells matplotlib the format
        fig.savefig(tmp, dpi=100)


def plot_losses(history: list[dict], path: str | os.PathLike) -> None:
    """Training and validation loss per epoch."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="training loss")
    ax.plot(epochs, [h["val_loss"] for h in history], "s-", label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _atomic_savefig(fig, Path(path))
    plt.close(fig)


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """``uint8[H, W, 3]``: the image with the class mask drawn over it in the VOC colors
    (any number of classes; see :func:`pyseg.interpret.overlay.draw_segmentation`)."""
    return draw_segmentation(image, mask, alpha)


@torch.no_grad()
def plot_predictions(model, dataset, path: str | os.PathLike, n: int = 6,
                     device: str | torch.device = "cpu") -> None:
    """A grid: image, true mask, predicted mask, overlay, for the first ``n`` samples.

    Masks are shown in the PASCAL VOC colors (:mod:`pyseg.palette`), so any number of
    classes works; ignored target pixels (255) show in VOC's cream."""
    plt = _pyplot()
    n = min(n, len(dataset))
    model.eval()
    fig, axes = plt.subplots(n, 4, figsize=(8, 2 * n), squeeze=False)
    for i in range(n):
        x, y = dataset[i]
        pred = model(x[None].to(device)).argmax(1)[0].cpu().numpy()
        img = (x.permute(1, 2, 0).numpy() * 255).clip(0, 255).astype(np.uint8)
        panels = [img, colorize_mask(np.asarray(y)), colorize_mask(pred), overlay(img, pred)]
        for j, (ax, p) in enumerate(zip(axes[i], panels)):
            ax.imshow(p, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(["image", "true mask", "predicted", "overlay"][j], fontsize=9)
    fig.tight_layout()
    _atomic_savefig(fig, Path(path))
    plt.close(fig)
