"""The synthetic pets generator: determinism, target conventions, difficulty."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pyseg.data.synthetic import SyntheticPets, make_trimap, render, synthetic_pets


def test_deterministic_and_split_dependent():
    a = render(3, "train", 5, 32)
    b = render(3, "train", 5, 32)
    assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["trimap"], b["trimap"])
    c = render(3, "val", 5, 32)
    d = render(4, "train", 5, 32)
    assert not np.array_equal(a["image"], c["image"])
    assert not np.array_equal(a["image"], d["image"])


@pytest.mark.parametrize("size", [32, 48, 80])
def test_sample_format(size):
    ds = SyntheticPets(split="train", img_size=size, length=6, seed=1)
    assert len(ds) == 6
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.shape == (3, size, size) and x.dtype == torch.float32
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert y.shape == (size, size) and y.dtype == torch.long
        assert set(y.unique().tolist()) <= {0, 1, 2}
        # Every image has an animal, a background and a contour.
        assert {0, 1, 2} <= set(y.unique().tolist())
    with pytest.raises(IndexError):
        ds[6]


def test_contour_band_separates_foreground_from_background():
    for i in range(8):
        tri = render(0, "train", i, 48)["trimap"]
        fg, bg = tri == 0, tri == 1
        # No foreground pixel touches a background pixel (8-neighborhood).
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                shifted = np.roll(np.roll(fg, dy, 0), dx, 1)
                shifted[0 if dy == 1 else -1 if dy == -1 else slice(0, 0), :] = False
                shifted[:, 0 if dx == 1 else -1 if dx == -1 else slice(0, 0)] = False
                assert not (shifted & bg).any()


def test_make_trimap_band_width():
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    tri = make_trimap(mask, 2)
    row = tri[10]
    # 1 px outside + 1 px inside the square's left edge at column 5.
    assert row[3] == 1 and row[4] == 2 and row[5] == 2 and row[6] == 0
    tri4 = make_trimap(mask, 4)
    assert list(tri4[10, 2:9]) == [1, 2, 2, 2, 2, 0, 0]


def test_classification_task_and_species_balance():
    ds = synthetic_pets(split="train", img_size=32, task="classification", length=40)
    labels = [ds[i][1] for i in range(len(ds))]
    assert set(labels) == {0, 1}
    assert 10 <= sum(labels) <= 30
    seg = synthetic_pets(split="train", img_size=32, length=40)
    for i in range(len(ds)):
        assert torch.equal(ds[i][0], seg[i][0])  # same pictures, other target


def test_species_are_visibly_different_in_size():
    # Dogs are drawn larger than cats: the mean foreground area differs clearly.
    areas = {0: [], 1: []}
    for i in range(60):
        s = render(0, "train", i, 48)
        areas[s["species"]].append(s["mask"].mean())
    assert np.mean(areas[1]) > 1.2 * np.mean(areas[0])


def test_disk_cache_roundtrip(tmp_path):
    a = SyntheticPets(split="val", img_size=32, length=4, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp*"))
    b = SyntheticPets(split="val", img_size=32, length=4, cache_dir=tmp_path)
    c = SyntheticPets(split="val", img_size=32, length=4, cache=False)
    for i in range(4):
        assert torch.equal(a[i][0], b[i][0]) and torch.equal(b[i][0], c[i][0])
        assert torch.equal(b[i][1], c[i][1])


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        SyntheticPets(split="nope")
    with pytest.raises(ValueError, match="task"):
        SyntheticPets(task="detection")


def _miou(pred, target, n=3):
    ious = []
    for c in range(n):
        inter = ((pred == c) & (target == c)).sum().item()
        union = ((pred == c) | (target == c)).sum().item()
        if union:
            ious.append(inter / union)
    return sum(ious) / len(ious)


def test_a_1x1_conv_cannot_solve_it():
    """Per-pixel color alone is not enough: a 1x1 conv (per-pixel linear classifier,
    trained to convergence on the training images) stays far from a usable mIoU, and
    it does barely better than always predicting 'background'."""
    torch.manual_seed(0)
    train = SyntheticPets("train", img_size=32, length=32)
    val = SyntheticPets("val", img_size=32, length=16)
    x = torch.stack([train[i][0] for i in range(len(train))])
    y = torch.stack([train[i][1] for i in range(len(train))])
    xv = torch.stack([val[i][0] for i in range(len(val))])
    yv = torch.stack([val[i][1] for i in range(len(val))])

    def feats(t):  # quadratic color features are still per-pixel: give the 1x1 conv them too
        return torch.cat([t, t * t, t[:, [0]] * t[:, [1]], t[:, [1]] * t[:, [2]]], 1)

    # A 1x1 conv is a linear map over channels at each pixel: fit it on (pixels, channels).
    f = feats(x).permute(0, 2, 3, 1).reshape(-1, 8)[::2]
    t = y.reshape(-1)[::2]
    w = torch.zeros(8, 3, requires_grad=True)
    b = torch.zeros(3, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=0.1)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(f @ w + b, t).backward()
        opt.step()
    with torch.no_grad():
        pred = (feats(xv).permute(0, 2, 3, 1) @ w + b).argmax(-1)
    miou = _miou(pred, yv)
    baseline = _miou(torch.ones_like(yv), yv)
    print(f"1x1 conv mIoU {miou:.3f}, all-background {baseline:.3f}")
    assert miou < 0.45, miou
    assert miou < baseline + 0.15, (miou, baseline)
