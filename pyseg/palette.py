"""Class colors and class-index PNGs, the PASCAL VOC way.

The VOC palette gives class ``i`` the color whose bits interleave the bits of ``i``: bit
``3k`` of the index becomes bit ``7 - k`` of red, bit ``3k + 1`` of green, bit ``3k + 2``
of blue (the ``bitget`` loop of the VOC development kit's ``VOClabelcolormap.m``). Class 0 is
black, 1 (128, 0, 0), 2 (0, 128, 0), 3 (128, 128, 0), ..., and index 255, the ignore label
of VOC, Cityscapes and mmseg, comes out as the cream (224, 224, 192) of VOC's boundary
pixels. Every one of the 256 colors is distinct, so any number of classes up to 255 (plus
the ignore label) can be told apart.

Class-index PNGs are written in mode ``P`` with that palette: viewers show colors, while
``np.asarray(Image.open(path))`` gives back the class indices, as with VOC's
``SegmentationClass`` files.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["IGNORE_INDEX", "VOC_PALETTE", "colorize_mask", "index_array", "index_image",
           "palette_array", "save_index_png", "voc_palette"]

IGNORE_INDEX = 255


def voc_palette(n: int = 256) -> np.ndarray:
    """``uint8[n, 3]``: the first ``n`` colors of the PASCAL VOC colormap.

    Raises ``ValueError`` unless ``0 <= n <= 256``.

    Example::

        >>> from pyseg.palette import voc_palette
        >>> voc_palette(4).tolist()
        [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
        >>> voc_palette()[255].tolist()     # the ignore label: VOC's cream
        [224, 224, 192]
    """
    if not 0 <= n <= 256:
        raise ValueError(f"n must be in [0, 256], got {n}")
    index = np.arange(n)
    colors = np.zeros((n, 3), dtype=np.int64)
    for k in range(8):  # 8 groups of 3 bits cover indices up to 2^24; 256 needs only 3
        for channel in range(3):
            bit = (index >> (3 * k + channel)) & 1
            colors[:, channel] |= bit << (7 - k)
    return colors.astype(np.uint8)


VOC_PALETTE = voc_palette()
VOC_PALETTE.setflags(write=False)


def index_array(mask: Any, name: str = "mask") -> np.ndarray:
    """``mask`` (a tensor or array of ``(H, W)`` integer class indices in [0, 255]) as a
    ``uint8`` array; ``ValueError`` / ``TypeError`` naming ``name`` otherwise.

    Example::

        >>> from pyseg.palette import index_array
        >>> index_array(torch.tensor([[0, 1], [2, 255]])).dtype
        dtype('uint8')
        >>> index_array(torch.zeros(2, 2), name="target")
        Traceback (most recent call last):
        ...
        TypeError: target must hold integer class indices, got dtype float32
    """
    if hasattr(mask, "detach"):  # a torch tensor, on any device
        mask = mask.detach().cpu().numpy()
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (H, W) class indices, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise ValueError(f"{name} values must be in [0, 255] for an 8-bit palette image, "
                         f"got [{arr.min()}, {arr.max()}]")
    return arr.astype(np.uint8, copy=False)


def palette_array(palette: Any) -> np.ndarray:
    """``palette`` (``(n, 3)`` colors in [0, 255], ``n <= 256``; None: :data:`VOC_PALETTE`)
    as a ``uint8`` array, checked: ``ValueError`` for another shape or a color outside.

    Example::

        >>> from pyseg.palette import palette_array
        >>> palette_array([[255, 0, 0], [0, 0, 255]]).tolist()
        [[255, 0, 0], [0, 0, 255]]
        >>> palette_array(None).shape
        (256, 3)
    """
    if palette is None:
        return VOC_PALETTE
    pal = np.asarray(palette)
    if pal.ndim != 2 or pal.shape[1] != 3 or not 1 <= pal.shape[0] <= 256:
        raise ValueError(f"palette must have shape (n, 3) with 1 <= n <= 256, got {pal.shape}")
    if pal.size and (pal.min() < 0 or pal.max() > 255):
        raise ValueError("palette colors must be in [0, 255]")
    return pal.astype(np.uint8)


def colorize_mask(mask: Any, palette: Any = None) -> np.ndarray:
    """``uint8[H, W, 3]``: each class index of ``mask`` replaced by its palette color
    (default: :data:`VOC_PALETTE`, where 255 is the ignore color).

    ``mask`` is a 2-D array or tensor of class indices; ``palette`` an ``(n, 3)`` array of
    colors (see :func:`palette_array`). Raises ``ValueError`` for a class the palette has no
    color for (and as :func:`index_array` for a bad mask).

    Example::

        >>> import numpy as np
        >>> from pyseg.palette import colorize_mask
        >>> colorize_mask(np.array([[0, 1], [2, 255]])).tolist()
        [[[0, 0, 0], [128, 0, 0]], [[0, 128, 0], [224, 224, 192]]]
    """
    arr = index_array(mask)
    pal = palette_array(palette)
    if arr.size and arr.max() >= len(pal):
        raise ValueError(f"mask has class {arr.max()} but the palette has {len(pal)} colors")
    return pal[arr]


def index_image(mask: Any, palette: Any = None):
    """A PIL image in mode ``P``: the class indices of ``mask`` (as for :func:`index_array`)
    with ``palette`` attached (as for :func:`palette_array`; None: :data:`VOC_PALETTE`).

    Example::

        >>> import numpy as np
        >>> from pyseg.palette import index_image
        >>> pic = index_image(np.array([[0, 1], [2, 255]]))
        >>> pic.mode, np.asarray(pic).tolist(), pic.convert("RGB").getpixel((1, 0))
        ('P', [[0, 1], [2, 255]], (128, 0, 0))
    """
    from PIL import Image

    pic = Image.fromarray(index_array(mask))  # mode L: the indices, unchanged
    pic.putpalette(palette_array(palette).reshape(-1).tolist())  # L + palette -> mode P
    return pic


def save_index_png(path: str | os.PathLike, mask: Any, palette: Any = None) -> None:
    """Write ``mask`` (``(H, W)`` class indices in [0, 255]) to ``path`` as a palette PNG with
    ``palette`` (see :func:`index_image`, which raises for a bad mask or palette).

    Example::

        >>> import os, tempfile
        >>> import numpy as np
        >>> from PIL import Image
        >>> from pyseg.palette import save_index_png
        >>> path = os.path.join(tempfile.mkdtemp(), "mask.png")
        >>> save_index_png(path, np.array([[0, 1], [2, 255]]))
        >>> np.asarray(Image.open(path)).tolist()
        [[0, 1], [2, 255]]
    """
    index_image(mask, palette).save(path, format="PNG")
