"""Oxford-IIIT Pets in its published layout::

    ROOT/images/<stem>.jpg
    ROOT/annotations/trimaps/<stem>.png     (values 1 foreground, 2 background, 3 contour)

Images and trimaps are paired by file stem. Trimap values 1, 2, 3 become classes 0, 1, 2.
Images are converted to RGB (grayscale, RGBA, CMYK, palette) and resized to
``img_size x img_size`` (bilinear); trimaps with nearest-neighbor resampling, so no new
values appear. Files that cannot be decoded, images without a trimap (or the reverse),
trimaps with values outside {1, 2, 3}, image/trimap pairs of different sizes, files that
are not regular files (a FIFO named ``x.jpg``) and ambiguous stems (``a.jpg`` beside
``a.png``: both are named, neither is used) are reported by name (``warnings`` and
:attr:`OxfordPets.skipped`) and skipped, never guessed. See :mod:`pyseg.data.files`.

Splits: ``split_method="book"`` reproduces Deep Learning with Python (ch. 9): the pairs
(sorted by stem) are shuffled with ``random.Random(1337)`` and the last 1000 are the
validation set. ``split_method="fraction"`` keeps the same shuffle and puts the last
``val_fraction`` in validation. ``"auto"`` (default) uses the book split when there are more
than 2000 pairs and the fraction split otherwise.
"""

from __future__ import annotations

import os
import random
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pyseg.data.files import (
    IMAGE_SUFFIXES,
    files_by_stem,
    load_pairs,
    load_rgb,
    pair_by_stem,
)
from pyseg.data.synthetic import SEGMENTATION_CLASSES

__all__ = [
    "IMAGE_SUFFIXES",
    "DatasetError",
    "OxfordPets",
    "load_rgb",
    "oxford_pets",
    "split_pairs",
]
BOOK_SEED = 1337
BOOK_VAL_COUNT = 1000


class DatasetError(ValueError):
    """The dataset folder cannot be used at all (missing, empty, wrong layout): a
    ``ValueError`` whose message names the folder or file.

    Example::

        >>> from pyseg.data.oxford import DatasetError, OxfordPets
        >>> try:
        ...     OxfordPets("no/such/folder")
        ... except DatasetError as e:
        ...     print(e)
        dataset folder not found: no/such/folder
    """


def _pairs(root: Path) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """``(stem, image, trimap)`` for stems present in both folders, and problems found."""
    img_dir, tri_dir = root / "images", root / "annotations" / "trimaps"
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    if not img_dir.is_dir() or not tri_dir.is_dir():
        raise DatasetError(f"{root} does not have the Oxford Pets layout "
                           "(images/*.jpg and annotations/trimaps/*.png)")
    images, problems = files_by_stem(img_dir, IMAGE_SUFFIXES)
    trimaps, tri_problems = files_by_stem(tri_dir, (".png",))
    pairs, pair_problems = pair_by_stem(images, trimaps, "trimap")
    return pairs, problems + tri_problems + pair_problems


def split_pairs(pairs: list, split: str, method: str = "auto", val_fraction: float = 0.2) -> list:
    """Select the ``split`` part (``"train"`` / ``"val"`` / ``"all"``) of ``pairs`` (sorted
    by stem), after a fixed shuffle. ``method`` ``"book"`` keeps 1000 pairs for validation,
    ``"fraction"`` a ``val_fraction`` of them, ``"auto"`` the first for more than 2000 pairs.
    Raises ``ValueError`` for an unknown split or method or a fraction outside (0, 1).

    Example: train and val share nothing and cover everything::

        >>> from pyseg.data.oxford import split_pairs
        >>> pairs = [f"pet_{i:02d}" for i in range(10)]
        >>> train, val = split_pairs(pairs, "train"), split_pairs(pairs, "val")
        >>> len(train), len(val), sorted(train + val) == pairs
        (8, 2, True)
    """
    if split == "all":
        return list(pairs)
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
    if method == "auto":
        method = "book" if len(pairs) > 2 * BOOK_VAL_COUNT else "fraction"
    order = list(pairs)
    random.Random(BOOK_SEED).shuffle(order)
    if method == "book":
        n_val = min(BOOK_VAL_COUNT, len(order))
    elif method == "fraction":
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        n_val = max(1, round(len(order) * val_fraction)) if len(order) > 1 else 0
    else:
        raise ValueError(f"split_method must be 'auto', 'book' or 'fraction', got {method!r}")
    return order[len(order) - n_val:] if split == "val" else order[:len(order) - n_val]


def _check_trimap(trimap: np.ndarray) -> str | None:
    bad = np.setdiff1d(np.unique(trimap), [1, 2, 3])
    return f"trimap values {bad.tolist()} outside 1, 2, 3" if bad.size else None


class OxfordPets(torch.utils.data.Dataset):
    """Oxford-IIIT Pets segmentation (see the module docstring).

    Decodes and resizes the selected split once, at construction (64 px: about 12 KB per
    sample), so damaged files are found and reported up front. Items are ``(image float[3,
    S, S] in [0, 1], target long[S, S])`` with 0 pet, 1 background, 2 contour.

    Args:
        root: the folder holding ``images/*.jpg`` and ``annotations/trimaps/*.png``.
        split: ``"train"``, ``"val"`` or ``"all"`` (see :func:`split_pairs`).
        img_size: the side images and trimaps are resized to.
        split_method: ``"auto"``, ``"book"`` or ``"fraction"`` (see :func:`split_pairs`).
        val_fraction: the validation share for ``"fraction"``.
        transform: optional callable ``(image, target) -> (image, target)`` on tensors.
        warn: warn about each skipped file (they are listed in ``skipped`` either way).

    Raises:
        DatasetError: a missing folder, another layout, or no usable pair.
        ValueError: a bad ``split``, ``split_method`` or ``val_fraction``.

    Example: three pets in the Oxford layout, made here::

        >>> import os, tempfile
        >>> import numpy as np
        >>> from PIL import Image
        >>> root = tempfile.mkdtemp()
        >>> os.makedirs(os.path.join(root, "images"))
        >>> os.makedirs(os.path.join(root, "annotations", "trimaps"))
        >>> for stem in ("Abyssinian_1", "beagle_1", "beagle_2"):
        ...     Image.new("RGB", (8, 8), (90, 60, 30)).save(f"{root}/images/{stem}.jpg")
        ...     trimap = np.full((8, 8), 2, np.uint8)      # 1 pet, 2 background, 3 contour
        ...     trimap[2:6, 2:6] = 1
        ...     Image.fromarray(trimap).save(f"{root}/annotations/trimaps/{stem}.png")
        >>> from pyseg.data.oxford import OxfordPets
        >>> ds = OxfordPets(root, split="all", img_size=4)
        >>> len(ds), ds.stems[0], ds[0][1].unique().tolist()
        (3, 'Abyssinian_1', [0, 1])
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", img_size: int = 64,
                 split_method: str = "auto", val_fraction: float = 0.2,
                 transform: Callable | None = None, warn: bool = True) -> None:
        self.root = Path(root)
        self.img_size = int(img_size)
        self.class_names = SEGMENTATION_CLASSES
        self.transform = transform
        pairs, problems = _pairs(self.root)
        if not pairs:
            raise DatasetError(f"no image/trimap pairs found in {self.root}")
        selected = split_pairs(pairs, split, split_method, val_fraction)
        self.stems, self._images, trimaps, bad_pairs = load_pairs(
            selected, self.img_size, _check_trimap, "trimap", convert_masks=True)
        self._trimaps = trimaps - 1  # 1, 2, 3 -> 0, 1, 2
        problems += bad_pairs
        self.skipped = problems
        if warn:
            for p in problems:
                warnings.warn(f"oxford-pets: skipped {p}", stacklevel=2)

    def __len__(self) -> int:
        return len(self.stems)

    def __getitem__(self, index: int):
        x = torch.from_numpy(self._images[index]).permute(2, 0, 1).float().div_(255.0)
        y = torch.from_numpy(self._trimaps[index].astype(np.int64))
        if self.transform is not None:
            x, y = self.transform(x, y)
        return x, y


def default_root() -> Path:
    """Where ``--data oxford-pets`` looks: ``$PYSEG_DATA_DIR/oxford-pets`` (default
    ``~/.cache/pyseg/oxford-pets``). No arguments.

    Example::

        >>> from pyseg.data.oxford import default_root
        >>> default_root().name
        'oxford-pets'
    """
    base = os.environ.get("PYSEG_DATA_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "pyseg")
    return Path(base) / "oxford-pets"


def oxford_pets(root: str | os.PathLike | None = None, split: str = "train", img_size: int = 64,
                task: str = "segmentation", **kwargs: Any) -> OxfordPets:
    """Dataset factory for the registry (segmentation only): :class:`OxfordPets` of ``root``
    (None: :func:`default_root`) with ``split``, ``img_size`` and the keyword arguments
    ``kwargs`` (a ``seed`` is dropped). Another ``task`` is a ``ValueError``.

    Example::

        >>> import os, tempfile
        >>> import numpy as np
        >>> from PIL import Image
        >>> root = tempfile.mkdtemp()
        >>> os.makedirs(os.path.join(root, "images"))
        >>> os.makedirs(os.path.join(root, "annotations", "trimaps"))
        >>> for stem in ("Abyssinian_1", "beagle_1", "beagle_2"):
        ...     Image.new("RGB", (8, 8), (90, 60, 30)).save(f"{root}/images/{stem}.jpg")
        ...     trimap = np.full((8, 8), 2, np.uint8)      # 1 pet, 2 background, 3 contour
        ...     trimap[2:6, 2:6] = 1
        ...     Image.fromarray(trimap).save(f"{root}/annotations/trimaps/{stem}.png")
        >>> from pyseg.data.oxford import oxford_pets
        >>> len(oxford_pets(root, split="val", img_size=4, split_method="fraction",
        ...                 val_fraction=0.34))
        1
    """
    if task != "segmentation":
        raise ValueError("oxford-pets provides segmentation targets only")
    kwargs.pop("seed", None)
    return OxfordPets(root if root is not None else default_root(), split=split,
                      img_size=img_size, **kwargs)
