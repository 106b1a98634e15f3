"""A generic segmentation dataset from a folder of images and class-index masks::

    ROOT/classes.txt               one class name per line: line 1 is class 0, line 2 class 1...
    ROOT/images/<stem>.jpg         (or .jpeg, .png, .bmp, .webp)
    ROOT/masks/<stem>.png          8-bit class indices, grayscale (L) or palette (P) PNG
    ROOT/train.txt, ROOT/val.txt   optional: the stems of each split, one per line

Any number of classes (up to 255: mask pixels are 8-bit and 255 is the ignore label). A
mask pixel equal to ``ignore_index`` (default 255, as VOC, Cityscapes and mmseg use; None:
no ignore label) marks "do not score this pixel"; it is kept in the targets for the loss
and the metrics to skip. VOC's ``SegmentationClass`` PNGs can be used as they are.

Pairing and damage follow the rules of the Oxford-IIIT Pets loader (see
:mod:`pyseg.data.files`): images and masks are paired by stem; unreadable files, files that
are not regular files, ambiguous stems, images without masks (and the reverse), pairs of
different sizes, masks that are not 8-bit index images and masks with values that are
neither a class nor ``ignore_index`` are reported by name (``warnings`` and
:attr:`SegmentationFolder.skipped`) and skipped. Images are resized to
``img_size x img_size`` bilinearly, masks with nearest neighbors.

Splits: with ``train.txt`` / ``val.txt`` the listed stems (a listed stem without a usable
pair is reported); without them the pairs, sorted by stem, are shuffled with
``random.Random(1337)`` and the last ``val_fraction`` form the validation split (as the
Oxford loader's ``"fraction"`` split). ``split="all"`` takes every pair.
"""

from __future__ import annotations

import os
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
    pair_by_stem,
    read_regular_file,
)
from pyseg.data.oxford import DatasetError, split_pairs

__all__ = ["SegmentationFolder", "folder_dataset", "read_class_names"]

MAX_LIST_BYTES = 2**20  # classes.txt, train.txt, val.txt: text, never large


def _read_lines(path: Path) -> list[str]:
    """The stripped lines of a small UTF-8 text file, trailing blank lines dropped."""
    try:
        text = read_regular_file(path, MAX_LIST_BYTES).decode("utf-8-sig")
    except (OSError, ValueError) as e:
        raise DatasetError(f"cannot read {path}: {e}") from None
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def read_class_names(path: str | os.PathLike, max_classes: int = 256) -> list[str]:
    """Class names from a text file, one per line (line ``i + 1`` names class ``i``).

    Raises :class:`DatasetError` for an empty or unreadable file, a blank line between
    names, a name given twice or more than ``max_classes`` names.

    Example::

        >>> import os, tempfile
        >>> from pyseg.data.folder import read_class_names
        >>> path = os.path.join(tempfile.mkdtemp(), "classes.txt")
        >>> with open(path, "w") as f:
        ...     _ = f.write("background\\ncat\\ndog\\n\\n")
        >>> read_class_names(path)
        ['background', 'cat', 'dog']
        >>> read_class_names(path, max_classes=2)
        Traceback (most recent call last):
        ...
        pyseg.data.oxford.DatasetError: ... names 3 classes; 8-bit masks allow at most 2 here
    """
    path = Path(path)
    names = _read_lines(path)
    if not names:
        raise DatasetError(f"{path} names no classes (one class name per line)")
    for i, name in enumerate(names):
        if not name:
            raise DatasetError(f"{path}: line {i + 1} is blank (class {i} needs a name)")
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise DatasetError(f"{path}: class name {name!r} on lines {seen[name] + 1} "
                               f"and {i + 1}")
        seen[name] = i
    if len(names) > max_classes:
        raise DatasetError(f"{path} names {len(names)} classes; 8-bit masks allow at most "
                           f"{max_classes} here")
    return names


class SegmentationFolder(torch.utils.data.Dataset):
    """Images and class-index masks from a folder (see the module docstring).

    Items are ``(image float[3, S, S] in [0, 1], target long[S, S])``; target pixels are
    class indices or ``ignore_index``. Like :class:`~pyseg.data.oxford.OxfordPets`, the
    split is decoded and resized once, at construction, so damage is reported up front.

    Args:
        root: the folder: ``classes.txt``, ``images/``, ``masks/`` (class-index PNGs), and
            optionally ``train.txt`` / ``val.txt`` (one stem a line) that fix the split.
        split: ``"train"``, ``"val"`` or ``"all"``.
        img_size: the side images and masks are resized to (masks: nearest).
        ignore_index: the mask value that is not a class (None: every value is a class).
        val_fraction: without split files, the share of the pairs that is validation.
        transform: optional callable ``(image, target) -> (image, target)`` on tensors.
        warn: warn about each skipped file (they are listed in ``skipped`` either way).

    Raises:
        DatasetError: a missing folder, another layout, no usable pair, a bad classes.txt.
        ValueError: an ``ignore_index`` that is a class, a bad ``split`` or ``img_size``.

    Example: five 8x8 pictures, four of them for training::

        >>> import os, tempfile
        >>> import numpy as np
        >>> from PIL import Image
        >>> from pyseg.palette import save_index_png
        >>> root = tempfile.mkdtemp()
        >>> for sub in ("images", "masks"):
        ...     os.makedirs(os.path.join(root, sub))
        >>> with open(os.path.join(root, "classes.txt"), "w") as f:
        ...     _ = f.write("background\\ncat\\n")
        >>> for stem in "abcde":
        ...     Image.new("RGB", (8, 8), (200, 0, 0)).save(f"{root}/images/{stem}.png")
        ...     save_index_png(f"{root}/masks/{stem}.png", np.eye(8, dtype=np.uint8))
        >>> from pyseg.data.folder import SegmentationFolder
        >>> ds = SegmentationFolder(root, split="train", img_size=4)
        >>> len(ds), ds.class_names, ds[0][0].shape, ds[0][1].dtype
        (4, ['background', 'cat'], torch.Size([3, 4, 4]), torch.int64)
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", img_size: int = 64,
                 ignore_index: int | None = 255, val_fraction: float = 0.2,
                 transform: Callable | None = None, warn: bool = True) -> None:
        self.root = Path(root)
        self.img_size = int(img_size)
        if self.img_size < 1:
            raise ValueError(f"img_size must be positive, got {img_size}")
        if ignore_index is not None and not isinstance(ignore_index, int):
            raise TypeError(f"ignore_index must be an int or None, got {ignore_index!r}")
        self.ignore_index = ignore_index
        self.transform = transform
        if not self.root.is_dir():
            raise DatasetError(f"dataset folder not found: {self.root}")
        img_dir, mask_dir = self.root / "images", self.root / "masks"
        if not (self.root / "classes.txt").exists() or not img_dir.is_dir() \
                or not mask_dir.is_dir():
            raise DatasetError(f"{self.root} does not have the folder dataset layout "
                               "(classes.txt, images/, masks/)")
        room = 255 if ignore_index is not None and 0 <= ignore_index <= 255 else 256
        self.class_names = read_class_names(self.root / "classes.txt", max_classes=room)
        num_classes = len(self.class_names)
        if ignore_index is not None and 0 <= ignore_index < num_classes:
            raise ValueError(f"ignore_index {ignore_index} is a class index "
                             f"({self.root / 'classes.txt'} names {num_classes} classes)")

        images, problems = files_by_stem(img_dir, IMAGE_SUFFIXES)
        masks, mask_problems = files_by_stem(mask_dir, (".png",))
        pairs, pair_problems = pair_by_stem(images, masks, "mask")
        problems += mask_problems + pair_problems
        if not pairs:
            raise DatasetError(f"no image/mask pairs found in {self.root}")
        selected = self._select(pairs, split, val_fraction, problems)

        allowed = np.arange(num_classes)
        if ignore_index is not None:
            allowed = np.append(allowed, ignore_index)

        def check_mask(mask: np.ndarray) -> str | None:
            bad = np.setdiff1d(np.unique(mask), allowed)
            if not bad.size:
                return None
            ignore = "" if ignore_index is None else f" nor the ignore index {ignore_index}"
            return (f"mask values {bad.tolist()} are neither classes 0..{num_classes - 1} "
                    f"(classes.txt){ignore}")

        self.stems, self._images, self._masks, bad_pairs = load_pairs(
            selected, self.img_size, check_mask, "mask")
        self.skipped = problems + bad_pairs
        if warn:
            for p in self.skipped:
                warnings.warn(f"folder dataset {self.root.name}: skipped {p}", stacklevel=2)

    def _select(self, pairs: list, split: str, val_fraction: float,
                problems: list[str]) -> list:
        lists = {name: self.root / f"{name}.txt" for name in ("train", "val")}
        if split == "all" or not any(p.exists() for p in lists.values()):
            return split_pairs(pairs, split, "fraction", val_fraction)
        if split not in lists:
            raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
        if not lists[split].exists():
            raise DatasetError(f"{self.root} has split files but no {split}.txt")
        by_stem = {pair[0]: pair for pair in pairs}
        selected = []
        for stem in dict.fromkeys(s for s in _read_lines(lists[split]) if s):
            if stem in by_stem:
                selected.append(by_stem[stem])
            else:
                problems.append(f"{stem}: listed in {split}.txt but has no usable "
                                "image/mask pair")
        return selected

    def __len__(self) -> int:
        return len(self.stems)

    def __getitem__(self, index: int):
        x = torch.from_numpy(self._images[index]).permute(2, 0, 1).float().div_(255.0)
        y = torch.from_numpy(self._masks[index].astype(np.int64))
        if self.transform is not None:
            x, y = self.transform(x, y)
        return x, y


def folder_dataset(root: str | os.PathLike | None = None, split: str = "train",
                   img_size: int = 64, task: str = "segmentation", **kwargs: Any
                   ) -> SegmentationFolder:
    """Dataset factory for the registry (segmentation only; ``root`` is required): a
    :class:`SegmentationFolder` of ``root`` with ``split``, ``img_size`` and the keyword
    arguments ``kwargs`` (a ``seed`` is dropped). ``task`` must be ``"segmentation"``
    (``ValueError`` otherwise); no ``root`` is a :class:`DatasetError`.

    Example::

        >>> from pyseg.data.folder import folder_dataset
        >>> folder_dataset(None)
        Traceback (most recent call last):
        ...
        pyseg.data.oxford.DatasetError: the folder dataset needs a folder: pass --data PATH ...
    """
    if task != "segmentation":
        raise ValueError("the folder dataset provides segmentation targets only")
    if root is None:
        raise DatasetError("the folder dataset needs a folder: pass --data PATH "
                           "(with classes.txt, images/, masks/)")
    kwargs.pop("seed", None)
    return SegmentationFolder(root, split=split, img_size=img_size, **kwargs)
