"""predictions.png and mask overlays with more classes than a trimap has."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from pyseg.engine.plots import overlay, plot_predictions
from pyseg.interpret.overlay import draw_segmentation


class _Constant(torch.nn.Module):
    """Predicts class ``(x + y) % num_classes`` at pixel (y, x): every class appears."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x):
        h, w = x.shape[-2:]
        cls = (torch.arange(h)[:, None] + torch.arange(w)[None]) % self.num_classes
        return torch.nn.functional.one_hot(cls, self.num_classes).permute(2, 0, 1)[None].float()


def test_predictions_png_with_seven_classes(tmp_path):
    g = torch.Generator().manual_seed(0)
    data = [(torch.rand(3, 12, 12, generator=g), torch.randint(0, 7, (12, 12), generator=g))
            for _ in range(2)]
    data[0][1][:2] = 255  # ignored pixels in a target
    path = tmp_path / "predictions.png"
    plot_predictions(_Constant(7), data, path, n=2)
    with Image.open(path) as im:
        assert im.size[0] > 100 and im.size[1] > 100


def test_overlay_any_number_of_classes():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (9, 8, 3), dtype=np.uint8)
    mask = rng.integers(0, 40, (9, 8))
    out = overlay(img, mask)
    assert out.shape == (9, 8, 3) and np.array_equal(out, draw_segmentation(img, mask, 0.45))
