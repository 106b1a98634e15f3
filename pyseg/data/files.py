"""Reading dataset folders safely: only regular files, pairs matched by stem, every
problem reported by file name.

Shared by the Oxford-IIIT Pets loader and the generic folder dataset, so that both follow
the same rules:

* Only regular files are opened. A FIFO, socket or device named ``x.jpg`` is reported and
  skipped (opening a FIFO for reading would block forever); the check is made on the
  opened descriptor (``O_NONBLOCK`` + ``fstat``), so a file swapped after listing cannot
  slip through.
* Hidden files (``.x``, e.g. the AppleDouble ``._x.png`` of archives made on macOS) are
  ignored.
* Two files of one folder with the same stem (``a.jpg`` and ``a.png``) make that stem
  ambiguous: it is reported, naming both, and skipped, never guessed.
* An image without a mask, or a mask without an image, is reported.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
MAX_FILE_BYTES = 256 * 2**20  # larger than any real photo or mask; bounds what is read


def read_regular_file(path: str | os.PathLike, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``max_bytes``; ``OSError``
    (``ValueError`` for the size) otherwise. Never blocks on a FIFO."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"not a regular file: {path}")
        if info.st_size > max_bytes:
            raise ValueError(f"{info.st_size} bytes, more than the limit of {max_bytes}")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(max_bytes + 1)
    finally:
        os.close(fd)


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode the regular file ``path`` with PIL (truncated files raise)."""
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    im = Image.open(io.BytesIO(read_regular_file(path)))
    im.load()
    return im


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode the image at ``path`` as RGB (transparent parts on white);
    raises ``OSError`` / ``ValueError`` if it is damaged or not a regular file.

    Example: a fully transparent pixel comes out white::

        >>> import os, tempfile
        >>> from PIL import Image
        >>> from pyseg.data.oxford import load_rgb
        >>> path = os.path.join(tempfile.mkdtemp(), "dot.png")
        >>> Image.new("RGBA", (1, 1), (255, 0, 0, 0)).save(path)
        >>> pic = load_rgb(path)
        >>> pic.mode, pic.getpixel((0, 0))
        ('RGB', (255, 255, 255))
    """
    im = open_image(path)
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGB", im.size, (255, 255, 255))
        bg.paste(im, mask=im.getchannel("A"))
        return bg
    return im.convert("RGB")


def files_by_stem(folder: Path, suffixes: Iterable[str]
                  ) -> tuple[dict[str, Path | None], list[str]]:
    """``{stem: path}`` of the regular files in ``folder`` with one of ``suffixes``
    (case-insensitive), and the problems found: non-regular files, ambiguous stems. An
    ambiguous stem maps to ``None`` (reported here, skipped by :func:`pair_by_stem`)."""
    suffixes = tuple(s.lower() for s in suffixes)
    found: dict[str, list[Path]] = {}
    problems: list[str] = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.suffix.lower() not in suffixes:
            continue
        if not p.is_file():  # stat only: does not open, so a FIFO cannot block here
            problems.append(f"{p.name}: not a regular file")
            continue
        found.setdefault(p.stem, []).append(p)
    by_stem: dict[str, Path | None] = {}
    for stem, paths in found.items():
        if len(paths) > 1:
            names = " and ".join(p.name for p in paths)
            problems.append(f"{stem}: ambiguous, {names} in {folder.name}/ (keep one)")
            by_stem[stem] = None
        else:
            by_stem[stem] = paths[0]
    return by_stem, problems


def pair_by_stem(images: dict[str, Path | None], masks: dict[str, Path | None],
                 mask_kind: str = "mask") -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """``(stem, image, mask)`` sorted by stem for the stems with exactly one image and one
    mask, and the problems: an image without a mask or the reverse. Ambiguous stems
    (``None``, already reported by :func:`files_by_stem`) are left out silently."""
    problems: list[str] = []
    pairs: list[tuple[str, Path, Path]] = []
    for stem in sorted(set(images) | set(masks)):
        image, mask = images.get(stem), masks.get(stem)
        if image is not None and mask is not None:
            pairs.append((stem, image, mask))
        elif image is not None and stem not in masks:
            problems.append(f"{image.name}: no {mask_kind} {stem}.png")
        elif mask is not None and stem not in images:
            problems.append(f"{mask.name}: no image for this {mask_kind}")
    return pairs, problems


def read_index_mask(path: str | os.PathLike, convert: bool = False) -> np.ndarray:
    """``uint8[H, W]`` class indices from an 8-bit PNG in mode ``L`` or ``P`` (the palette
    of a ``P`` image is ignored: its pixel values are the indices, as in VOC's
    ``SegmentationClass``). Other modes raise ``ValueError``, or with ``convert=True`` are
    converted to grayscale first."""
    with open_image(path) as m:
        if m.mode not in ("L", "P"):
            if not convert:
                raise ValueError(f"mode {m.mode}, expected class indices in an 8-bit "
                                 "grayscale (L) or palette (P) PNG")
            m = m.convert("L")
        return np.asarray(m, dtype=np.uint8)


def load_pairs(pairs: Iterable[tuple[str, Path, Path]], img_size: int,
               check_mask: Callable[[np.ndarray], str | None], mask_kind: str = "mask",
               convert_masks: bool = False) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """Decode, check and resize every ``(stem, image, mask)`` pair.

    Returns ``(stems, images uint8[N, S, S, 3], masks uint8[N, S, S], problems)`` with
    ``S = img_size``: images resized bilinearly, masks with nearest neighbors (no new
    values). A pair is skipped, with a problem naming its file, when either file cannot be
    decoded, their sizes differ or ``check_mask(mask)`` returns a message.
    """
    stems: list[str] = []
    images: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    problems: list[str] = []
    s = int(img_size)
    for stem, image_path, mask_path in pairs:
        try:
            img = load_rgb(image_path)
        except Exception as e:  # noqa: BLE001 - PIL raises many types on damaged files
            problems.append(f"{image_path.name}: unreadable image ({type(e).__name__}: {e})")
            continue
        try:
            mask = read_index_mask(mask_path, convert=convert_masks)
        except Exception as e:  # noqa: BLE001
            problems.append(f"{mask_path.name}: unreadable {mask_kind} ({type(e).__name__}: {e})")
            continue
        if mask.shape != (img.height, img.width):
            problems.append(f"{stem}: image is {img.width}x{img.height} but {mask_kind} is "
                            f"{mask.shape[1]}x{mask.shape[0]}")
            continue
        message = check_mask(mask)
        if message:
            problems.append(f"{mask_path.name}: {message}")
            continue
        images.append(np.asarray(img.resize((s, s), Image.BILINEAR), dtype=np.uint8))
        masks.append(np.asarray(Image.fromarray(mask).resize((s, s), Image.NEAREST)))
        stems.append(stem)
    return (stems,
            np.stack(images) if images else np.zeros((0, s, s, 3), np.uint8),
            np.stack(masks) if masks else np.zeros((0, s, s), np.uint8),
            problems)
