"""pyseg.palette (VOC colors, class-index PNGs) and class-mask overlays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pyseg.interpret.overlay import draw_segmentation
from pyseg.palette import VOC_PALETTE, colorize_mask, index_image, save_index_png, voc_palette

# The 21 PASCAL VOC 2012 class colors as published with the dataset (background, aeroplane,
# ..., tvmonitor) and the color of its 255 "void" pixels.
VOC_COLORS = {
    0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 3: (128, 128, 0), 4: (0, 0, 128),
    5: (128, 0, 128), 6: (0, 128, 128), 7: (128, 128, 128), 8: (64, 0, 0), 9: (192, 0, 0),
    10: (64, 128, 0), 11: (192, 128, 0), 12: (64, 0, 128), 13: (192, 0, 128),
    14: (64, 128, 128), 15: (192, 128, 128), 16: (0, 64, 0), 17: (128, 64, 0),
    18: (0, 192, 0), 19: (128, 192, 0), 20: (0, 64, 128), 255: (224, 224, 192),
}


def test_voc_palette_matches_the_published_colors():
    assert VOC_PALETTE.shape == (256, 3) and VOC_PALETTE.dtype == np.uint8
    for index, color in VOC_COLORS.items():
        assert tuple(VOC_PALETTE[index].tolist()) == color, index
    assert len({tuple(c) for c in VOC_PALETTE.tolist()}) == 256  # every class distinguishable
    assert np.array_equal(voc_palette(5), VOC_PALETTE[:5])
    with pytest.raises(ValueError, match="n must be"):
        voc_palette(257)


def test_index_png_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 40, (13, 17)).astype(np.uint8)
    mask[2:5, 3:9] = 255
    path = tmp_path / "m.png"
    save_index_png(path, torch.from_numpy(mask.astype(np.int64)))
    with Image.open(path) as im:
        assert im.mode == "P"
        assert np.array_equal(np.asarray(im), mask)  # the file holds the class indices
        assert im.getpalette()[: 3 * 256] == VOC_PALETTE.reshape(-1).tolist()
        rgb = np.asarray(im.convert("RGB"))
    assert np.array_equal(rgb, VOC_PALETTE[mask])
    assert tuple(rgb[3, 4]) == (224, 224, 192)  # ignore pixels in VOC's void color
    assert np.array_equal(colorize_mask(mask), rgb)


@pytest.mark.parametrize("bad, error, match", [
    (np.full((2, 2), 256), ValueError, r"mask values must be in \[0, 255\]"),
    (np.full((2, 2), -1), ValueError, r"mask values must be in \[0, 255\]"),
    (np.zeros((2, 2), np.float32), TypeError, "mask must hold integer"),
    (np.zeros((1, 2, 2), np.uint8), ValueError, "mask must be 2-D"),
])
def test_index_png_bad_masks(bad, error, match, tmp_path):
    with pytest.raises(error, match=match):
        index_image(bad)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("alpha", [0.45, 0.8, 0.0, 1.0])
def test_draw_segmentation_matches_torchvision(alpha):
    tv_utils = pytest.importorskip("torchvision.utils")
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (3, 21, 19), dtype=np.uint8)
    mask = rng.integers(0, 7, (21, 19))  # seven classes: more than the three of a trimap
    mask[::4, ::3] = 255
    classes = sorted(set(np.unique(mask).tolist()) - {255})
    masks = torch.stack([torch.from_numpy(mask == c) for c in classes])
    colors = [tuple(VOC_PALETTE[c].tolist()) for c in classes]
    expected = tv_utils.draw_segmentation_masks(torch.from_numpy(image), masks, alpha, colors)
    ours = draw_segmentation(image.transpose(1, 2, 0).copy(), mask, alpha)
    assert ours.dtype == np.uint8
    assert np.array_equal(ours, expected.permute(1, 2, 0).numpy())
    untouched = mask == 255
    assert np.array_equal(ours[untouched], image.transpose(1, 2, 0)[untouched])


def test_draw_segmentation_bad_input():
    img = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="image is"):
        draw_segmentation(img, np.zeros((4, 5), np.int64))
    with pytest.raises(ValueError, match="alpha"):
        draw_segmentation(img, np.zeros((4, 4), np.int64), alpha=1.5)
    with pytest.raises(ValueError, match="palette has 2 colors"):
        draw_segmentation(img, np.full((4, 4), 3), palette=[[0, 0, 0], [9, 9, 9]])
