"""The generic folder dataset (images/ + masks/ + classes.txt) and ``--data FOLDER``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pyseg.data import resolve_dataset
from pyseg.data.folder import SegmentationFolder, read_class_names
from pyseg.data.oxford import DatasetError
from pyseg.palette import save_index_png

CLASSES = ["background", "road", "car", "person", "tree"]


def _mask(h, w, seed, num_classes=5):
    """Blocks of every class, plus a band of ignore (255) pixels."""
    rng = np.random.default_rng(seed)
    m = np.zeros((h, w), np.uint8)
    for c in range(num_classes):
        y, x = rng.integers(0, h - 4), rng.integers(0, w - 4)
        m[y:y + 6, x:x + 6] = c
    m[h // 2, :] = 255
    return m


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "streets"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n\n")
    rng = np.random.default_rng(0)
    for i in range(6):
        h, w = 24 + i, 20 + 2 * i
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
            root / "images" / f"s{i}.jpg", quality=95)
        if i % 2:  # palette masks (as VOC ships them) and grayscale ones
            save_index_png(root / "masks" / f"s{i}.png", _mask(h, w, i))
        else:
            Image.fromarray(_mask(h, w, i)).save(root / "masks" / f"s{i}.png")
    # Damage, each to be reported by name.
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / "images" / "nomask.png")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(root / "masks" / "noimage.png")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / "images" / "badclass.jpg")
    bad = np.zeros((20, 20), np.uint8)
    bad[0, 0], bad[1, 1] = 5, 200  # not classes 0..4, not 255
    Image.fromarray(bad).save(root / "masks" / "badclass.png")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / "images" / "rgbmask.jpg")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / "masks" / "rgbmask.png")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / "images" / "twice.jpg")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / "images" / "twice.png")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(root / "masks" / "twice.png")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / "images" / "size.jpg")
    Image.fromarray(np.zeros((21, 20), np.uint8)).save(root / "masks" / "size.png")
    (root / "images" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(root / "masks" / "broken.png")
    return root


def test_loads_pairs_with_any_number_of_classes_and_reports_damage(folder):
    with pytest.warns(UserWarning) as rec:
        ds = SegmentationFolder(folder, split="all", img_size=16)
    assert ds.class_names == CLASSES and ds.ignore_index == 255
    assert ds.stems == [f"s{i}" for i in range(6)]
    report = "\n".join(ds.skipped)
    for name in ("nomask.png: no mask", "noimage.png: no image", "badclass.png: mask values [5, 200]",
                 "rgbmask.png: unreadable mask", "mode RGB", "twice.jpg and twice.png",
                 "size: image is 20x20 but mask is 20x21", "broken.jpg: unreadable image"):
        assert name in report, name
    assert len(rec) == len(ds.skipped) == 7
    for i, stem in enumerate(ds.stems):
        x, y = ds[i]
        assert x.shape == (3, 16, 16) and x.dtype == torch.float32
        assert y.shape == (16, 16) and y.dtype == torch.int64
        with Image.open(folder / "masks" / f"{stem}.png") as m:
            raw = np.asarray(m)  # the indices, whatever the palette
        expected = np.asarray(Image.fromarray(raw).resize((16, 16), Image.NEAREST))
        assert np.array_equal(y.numpy(), expected)
        assert set(np.unique(expected).tolist()) <= {0, 1, 2, 3, 4, 255}
    assert any(255 in ds[i][1] for i in range(len(ds)))  # ignore pixels are kept


def test_ignore_index_none_reports_255(folder):
    ds = SegmentationFolder(folder, split="all", img_size=16, ignore_index=None, warn=False)
    assert ds.stems == []  # every good mask has a band of 255
    assert any("s0.png: mask values [255]" in p for p in ds.skipped)


def test_splits_by_fraction_and_by_list_files(folder):
    tr = SegmentationFolder(folder, split="train", img_size=8, warn=False, val_fraction=0.34)
    va = SegmentationFolder(folder, split="val", img_size=8, warn=False, val_fraction=0.34)
    assert not set(tr.stems) & set(va.stems) and len(tr) + len(va) == 6 and len(va) == 2
    (folder / "train.txt").write_text("s0\ns1\ns2\nnomask\n")
    (folder / "val.txt").write_text("s5\n")
    tr = SegmentationFolder(folder, split="train", img_size=8, warn=False)
    va = SegmentationFolder(folder, split="val", img_size=8, warn=False)
    assert tr.stems == ["s0", "s1", "s2"] and va.stems == ["s5"]
    assert "nomask: listed in train.txt but has no usable image/mask pair" in tr.skipped


def test_class_names_file(tmp_path):
    f = tmp_path / "classes.txt"
    f.write_text("a\n\nb\n")
    with pytest.raises(DatasetError, match="line 2 is blank"):
        read_class_names(f)
    f.write_text("a\nb\na\n")
    with pytest.raises(DatasetError, match="'a' on lines 1 and 3"):
        read_class_names(f)
    f.write_text("")
    with pytest.raises(DatasetError, match="names no classes"):
        read_class_names(f)
    f.write_text("\n".join(f"c{i}" for i in range(256)))
    with pytest.raises(DatasetError, match="at most 255"):
        read_class_names(f, max_classes=255)
    f.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DatasetError, match="cannot read"):
        read_class_names(f)


def test_bad_folders_and_arguments(folder, tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        SegmentationFolder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="layout"):
        SegmentationFolder(tmp_path / "empty")
    with pytest.raises(ValueError, match="ignore_index 2 is a class index"):
        SegmentationFolder(folder, ignore_index=2)
    if hasattr(os, "mkfifo"):
        (folder / "classes.txt").unlink()
        os.mkfifo(folder / "classes.txt")  # must not block
        with pytest.raises(DatasetError, match="not a regular file"):
            SegmentationFolder(folder)


def test_resolve_dataset_picks_the_layout(folder):
    with pytest.warns(UserWarning, match="skipped"):
        ds, names = resolve_dataset(str(folder), split="all", img_size=8)
    assert isinstance(ds, SegmentationFolder) and names == CLASSES


def test_registered_as_a_dataset_plugin(folder):
    from pyseg import registry

    spec = registry.get_dataset("folder")
    assert spec.tasks == {"segmentation"}
    ds = spec.fn(root=folder, split="all", img_size=8, warn=False)
    assert len(ds) == 6
    with pytest.raises(DatasetError, match="--data PATH"):
        spec.fn(root=None)


def test_train_and_predict_with_five_classes(folder, tmp_path):
    """End to end on a 5-class folder: train writes predictions.png, predict writes
    palette PNGs of class indices and overlays (the trimap code raised IndexError)."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))
    from pyseg.cli import main

    out = tmp_path / "run"
    argv = ["train", "--data", str(folder), "--arch", "tinynet:TinyNet", "--arch-kwargs",
            '{"width": 4}', "--img-size", "16", "--epochs", "1", "--batch-size", "2",
            "--quiet", "--out", str(out)]
    with pytest.warns(UserWarning):
        assert main(argv) == 0
    assert (out / "predictions.png").is_file()
    preds = tmp_path / "preds"
    # The checkpoint names an import path: predict loads it only when told to (--arch).
    assert main(["predict", "--checkpoint", str(out / "best.pt"), "--arch", "tinynet:TinyNet",
                 str(folder / "images" / "s1.jpg"), "--out", str(preds)]) == 0
    with Image.open(preds / "s1_trimap.png") as im:
        assert im.mode == "P" and im.size == (22, 25)
        assert set(np.unique(np.asarray(im)).tolist()) <= set(range(5))
    assert np.asarray(Image.open(preds / "s1_overlay.png")).shape == (25, 22, 3)
