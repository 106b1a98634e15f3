"""Pictures: heatmaps as a jet-colored overlay and a side-by-side panel, and class masks
drawn over the image (:func:`draw_segmentation`, any number of classes)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from torch import Tensor

__all__ = ["colorize", "draw_segmentation", "overlay", "save_overlay", "save_panel",
           "to_uint8_image"]


def to_uint8_image(image: Tensor | np.ndarray) -> np.ndarray:
    """``image``, a ``(3, H, W)`` (or ``(1, H, W)``) tensor or an ``(H, W, 3)`` / ``(H, W)``
    array with values in [0, 1], as ``uint8[H, W, 3]`` (values outside are clipped).

    Example::

        >>> import torch
        >>> from pyseg.interpret.overlay import to_uint8_image
        >>> to_uint8_image(torch.tensor([[[0.0, 1.0]], [[0.5, 1.0]], [[1.0, 2.0]]])).tolist()
        [[[0, 128, 255], [255, 255, 255]]]
    """
    if isinstance(image, Tensor):
        image = image.detach().float().cpu()
        if image.dim() == 3 and image.shape[0] in (1, 3):
            image = image.permute(1, 2, 0)
        image = image.numpy()
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def colorize(heatmap: Tensor | np.ndarray, cmap: str = "jet") -> np.ndarray:
    """``heatmap``, ``(H, W)`` values in [0, 1], as ``uint8[H, W, 3]`` through the matplotlib
    colormap named ``cmap`` (``KeyError`` for an unknown name).

    Example::

        >>> import torch
        >>> from pyseg.interpret.overlay import colorize
        >>> colorize(torch.tensor([[0.0, 1.0]]), cmap="gray").tolist()
        [[[0, 0, 0], [255, 255, 255]]]
    """
    from matplotlib import colormaps

    h = heatmap.detach().float().cpu().numpy() if isinstance(heatmap, Tensor) else heatmap
    rgba = colormaps[cmap](np.clip(np.asarray(h, dtype=np.float32), 0.0, 1.0))
    return (rgba[..., :3] * 255.0 + 0.5).astype(np.uint8)


def overlay(image: Tensor | np.ndarray, heatmap: Tensor | np.ndarray, alpha: float = 0.4,
            cmap: str = "jet") -> np.ndarray:
    """Blend the colored ``heatmap`` (see :func:`colorize`, with ``cmap``) over ``image`` (see
    :func:`to_uint8_image`): ``(1 - alpha) * image + alpha * color``; returns
    ``uint8[H, W, 3]``. Raises ``ValueError`` when their sizes differ.

    Example: a black image under a white (``gray`` colormap) map, half and half::

        >>> import torch
        >>> from pyseg.interpret.overlay import overlay
        >>> overlay(torch.zeros(3, 1, 1), torch.ones(1, 1), alpha=0.5, cmap="gray").tolist()
        [[[128, 128, 128]]]
    """
    img = to_uint8_image(image).astype(np.float32)
    col = colorize(heatmap, cmap).astype(np.float32)
    if img.shape[:2] != col.shape[:2]:
        raise ValueError(f"image is {img.shape[:2]} but heatmap is {col.shape[:2]}")
    return ((1.0 - alpha) * img + alpha * col + 0.5).clip(0, 255).astype(np.uint8)


def draw_segmentation(image: Tensor | np.ndarray, mask: Tensor | np.ndarray, alpha: float = 0.5,
                      palette: np.ndarray | None = None, ignore_index: int | None = 255
                      ) -> np.ndarray:
    """The class mask drawn over the image: ``uint8[H, W, 3]``.

    Each pixel of class ``c`` becomes ``(1 - alpha) * image + alpha * palette[c]``
    (default palette: the PASCAL VOC colors of :mod:`pyseg.palette`, so any number of
    classes up to 255 is drawn); pixels equal to ``ignore_index`` keep the image's color.
    The same result as torchvision's ``draw_segmentation_masks(image, masks, alpha, colors)``
    with one boolean mask and color per class, truncated to ``uint8`` as it does.
    ``image`` is an ``(H, W, 3)`` uint8 array, or a tensor / array in [0, 1] (see
    :func:`to_uint8_image`); ``mask`` holds ``(H, W)`` class indices.

    Raises ``ValueError`` for ``alpha`` outside [0, 1], sizes that differ or a class without
    a palette color (and as :func:`pyseg.palette.index_array` for a bad mask).

    Example: class 1 is VOC's dark red, 255 is left alone::

        >>> import numpy as np
        >>> from pyseg.interpret.overlay import draw_segmentation
        >>> image = np.zeros((1, 2, 3), dtype=np.uint8)
        >>> draw_segmentation(image, np.array([[1, 255]]), alpha=0.5).tolist()
        [[[64, 0, 0], [0, 0, 0]]]
    """
    from pyseg.palette import index_array, palette_array

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3:
        img = image
    else:
        img = to_uint8_image(image)
    labels = index_array(mask)
    if img.shape[:2] != labels.shape:
        raise ValueError(f"image is {img.shape[:2]} but mask is {labels.shape}")
    pal = palette_array(palette)
    drawn = labels != ignore_index if ignore_index is not None else np.ones(labels.shape, bool)
    if drawn.any() and labels[drawn].max() >= len(pal):
        raise ValueError(f"mask has class {labels[drawn].max()} but the palette has "
                         f"{len(pal)} colors")
    colored = img.copy()
    colored[drawn] = pal[labels[drawn]]
    out = img.astype(np.float32) * np.float32(1.0 - alpha) + colored.astype(np.float32) * np.float32(alpha)
    return out.astype(np.uint8)


def save_overlay(path: str | os.PathLike, image, heatmap, alpha: float = 0.4) -> None:
    """Write :func:`overlay` of ``image`` and ``heatmap`` (with ``alpha``) to ``path`` as a PNG.

    Example::

        >>> import os, tempfile
        >>> from PIL import Image
        >>> import torch
        >>> from pyseg.interpret.overlay import save_overlay
        >>> path = os.path.join(tempfile.mkdtemp(), "overlay.png")
        >>> save_overlay(path, torch.rand(3, 8, 8), torch.rand(8, 8))
        >>> Image.open(path).size
        (8, 8)
    """
    from PIL import Image

    Image.fromarray(overlay(image, heatmap, alpha)).save(path)


def save_panel(path: str | os.PathLike, image, heatmaps: Sequence, titles: Sequence[str],
               alpha: float = 0.4, suptitle: str | None = None) -> None:
    """Write ``image`` followed by one overlay (see :func:`overlay`, with ``alpha``) per map
    of ``heatmaps``, side by side, each under its title of ``titles`` and all under
    ``suptitle`` (None: none), as a PNG at ``path``.

    Example::

        >>> import os, tempfile
        >>> import torch
        >>> from pyseg.interpret.overlay import save_panel
        >>> path = os.path.join(tempfile.mkdtemp(), "panel.png")
        >>> save_panel(path, torch.rand(3, 8, 8), [torch.rand(8, 8)], ["random"])
        >>> os.path.getsize(path) > 0
        True
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = len(heatmaps) + 1
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.9), squeeze=False)
    panels = [to_uint8_image(image)] + [overlay(image, h, alpha) for h in heatmaps]
    for ax, pic, title in zip(axes[0], panels, ["image", *titles]):
        ax.imshow(pic, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
