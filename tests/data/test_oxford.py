"""The Oxford Pets loader on a tiny fixture in the published layout."""

from __future__ import annotations

import os
import random
import threading

import numpy as np
import pytest
from PIL import Image

from pyseg.data.oxford import DatasetError, OxfordPets, split_pairs


def _trimap(h, w, seed):
    rng = np.random.default_rng(seed)
    t = np.full((h, w), 2, np.uint8)  # background
    t[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 3  # contour ring...
    t[h // 4 + 2: 3 * h // 4 - 2, w // 4 + 2: 3 * w // 4 - 2] = 1  # ...around foreground
    t[0, 0] = rng.integers(1, 4)
    return t


@pytest.fixture
def pets(tmp_path):
    root = tmp_path / "pets"
    (root / "images").mkdir(parents=True)
    (root / "annotations" / "trimaps").mkdir(parents=True)
    rng = np.random.default_rng(0)
    modes = ["RGB", "L", "CMYK", "RGB", "RGB", "RGB"]
    for i, mode in enumerate(modes):
        stem = f"Pet_{i}"
        h, w = 40 + i, 30 + 2 * i  # every pair has its own size
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        img = Image.fromarray(arr).convert(mode)
        img.save(root / "images" / f"{stem}.jpg", quality=95)
        Image.fromarray(_trimap(h, w, i)).save(root / "annotations" / "trimaps" / f"{stem}.png")
    # RGBA and palette images (PNG files also occur in the wild).
    for stem, mode in (("Pet_rgba", "RGBA"), ("Pet_pal", "P")):
        arr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(arr).convert(mode).save(root / "images" / f"{stem}.png")
        Image.fromarray(_trimap(32, 32, 9)).save(root / "annotations" / "trimaps" / f"{stem}.png")
    # A corrupt (truncated) JPEG with a valid trimap.
    good = (root / "images" / "Pet_0.jpg").read_bytes()
    (root / "images" / "Broken_1.jpg").write_bytes(good[: len(good) // 3])
    Image.fromarray(_trimap(40, 30, 1)).save(root / "annotations" / "trimaps" / "Broken_1.png")
    # An image without a trimap, a trimap without an image, a size mismatch, bad values.
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(
        root / "images" / "NoMask_1.jpg")
    Image.fromarray(_trimap(20, 20, 2)).save(root / "annotations" / "trimaps" / "Orphan_1.png")
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(
        root / "images" / "Mismatch_1.jpg")
    Image.fromarray(_trimap(21, 20, 3)).save(root / "annotations" / "trimaps" / "Mismatch_1.png")
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(
        root / "images" / "BadValues_1.jpg")
    Image.fromarray(np.full((20, 20), 7, np.uint8)).save(
        root / "annotations" / "trimaps" / "BadValues_1.png")
    return root


def test_loads_good_pairs_and_reports_bad_ones(pets):
    with pytest.warns(UserWarning) as rec:
        ds = OxfordPets(pets, split="all", img_size=24)
    assert sorted(ds.stems) == sorted([f"Pet_{i}" for i in range(6)] + ["Pet_rgba", "Pet_pal"])
    report = "\n".join(ds.skipped)
    for name in ("Broken_1.jpg", "NoMask_1.jpg", "Orphan_1.png", "Mismatch_1", "BadValues_1.png"):
        assert name in report
    assert len(rec) == len(ds.skipped) == 5
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.shape == (3, 24, 24) and 0 <= x.min() and x.max() <= 1
        assert y.shape == (24, 24) and set(y.unique().tolist()) <= {0, 1, 2}


def test_pairing_by_stem_and_nearest_resize(pets):
    ds = OxfordPets(pets, split="all", img_size=16, warn=False)
    for i, stem in enumerate(ds.stems):
        tri = np.asarray(Image.open(pets / "annotations" / "trimaps" / f"{stem}.png"))
        expected = np.asarray(Image.fromarray(tri).resize((16, 16), Image.NEAREST)).astype(int) - 1
        assert np.array_equal(ds[i][1].numpy(), expected)
        img = Image.open(next((pets / "images").glob(f"{stem}.*"))).convert("RGB")
        assert img.size == (tri.shape[1], tri.shape[0])  # the pair of that stem, not a neighbor


def test_book_split_reproduces_the_book():
    pairs = [(f"s{i:04d}", None, None) for i in range(2500)]
    order = list(pairs)
    random.Random(1337).shuffle(order)
    val = split_pairs(pairs, "val", "book")
    train = split_pairs(pairs, "train", "book")
    assert val == order[-1000:] and train == order[:-1000]


def test_fraction_split_partitions(pets):
    tr = OxfordPets(pets, split="train", img_size=16, warn=False, split_method="fraction",
                    val_fraction=0.25)
    va = OxfordPets(pets, split="val", img_size=16, warn=False, split_method="fraction",
                    val_fraction=0.25)
    assert not set(tr.stems) & set(va.stems)
    assert len(va) >= 1 and len(tr) >= 4


def test_bad_folders(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        OxfordPets(tmp_path / "nope")
    (tmp_path / "x").mkdir()
    with pytest.raises(DatasetError, match="layout"):
        OxfordPets(tmp_path / "x")


def _without_hanging(fn, fifos, timeout=60.0):
    """``fn()`` in a thread; if it is still running after ``timeout`` (blocked opening a
    FIFO), release it by opening the FIFOs for writing, and fail."""
    result: dict = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the test thread
            result["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        for fifo in fifos:
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # EOF for the reader
            except OSError:
                pass
        thread.join(10)
        pytest.fail(f"loading blocked on a FIFO for more than {timeout} s")
    if "error" in result:
        raise result["error"]
    return result["value"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo (POSIX)")
def test_fifo_is_reported_not_opened(pets):
    fifo_image = pets / "images" / "Fifo_1.jpg"
    fifo_trimap = pets / "annotations" / "trimaps" / "Fifo_2.png"
    os.mkfifo(fifo_image)
    os.mkfifo(fifo_trimap)
    Image.fromarray(_trimap(20, 20, 4)).save(pets / "annotations" / "trimaps" / "Fifo_1.png")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(pets / "images" / "Fifo_2.jpg")
    ds = _without_hanging(lambda: OxfordPets(pets, split="all", img_size=16, warn=False),
                          [fifo_image, fifo_trimap])
    assert "Fifo_1" not in ds.stems and "Fifo_2" not in ds.stems
    assert "Fifo_1.jpg: not a regular file" in ds.skipped
    assert "Fifo_2.png: not a regular file" in ds.skipped
    assert len(ds) == 8


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo (POSIX)")
def test_fifo_swapped_in_after_listing_is_refused(tmp_path):
    from pyseg.data.files import load_rgb

    fifo = tmp_path / "late.jpg"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        _without_hanging(lambda: load_rgb(fifo), [fifo])


def test_same_stem_twice_is_reported_and_skipped(pets):
    # Pet_0.jpg exists; a Pet_0.png beside it makes "Pet_0" ambiguous.
    Image.fromarray(np.zeros((40, 30, 3), np.uint8)).save(pets / "images" / "Pet_0.png")
    with pytest.warns(UserWarning) as rec:
        ds = OxfordPets(pets, split="all", img_size=16)
    assert any("Pet_0.jpg and Pet_0.png" in str(w.message) for w in rec)
    assert "Pet_0" not in ds.stems and "Pet_1" in ds.stems
    (message,) = [p for p in ds.skipped if p.startswith("Pet_0")]
    assert "ambiguous" in message and "Pet_0.jpg" in message and "Pet_0.png" in message
    # The trimap of the ambiguous stem is not reported a second time as an orphan.
    assert not any("Pet_0.png: no image" in p for p in ds.skipped)
