"""benchmarks/pointing_game.py's training augmentation: random whole-pixel shifts with mirror
padding (translate_batch), trimaps shifted with their images."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("pointing_game",
                                                  ROOT / "benchmarks" / "pointing_game.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _shift_of(out: np.ndarray, img: np.ndarray, m: int) -> tuple[int, int] | None:
    """The (dy, dx) in [-m, m]^2 for which ``out`` is ``img`` shifted by it, the pixels
    shifted in taken from the mirror image (numpy's "reflect" padding), or None."""
    pad = np.pad(img, ((0, 0), (m, m), (m, m)), mode="reflect")
    h, w = img.shape[-2:]
    for dy in range(-m, m + 1):
        for dx in range(-m, m + 1):
            if np.array_equal(out, pad[:, m + dy:m + dy + h, m + dx:m + dx + w]):
                return dy, dx
    return None


def test_translate_batch_shifts_each_image_by_its_own_offset():
    pg = _bench()
    x = torch.arange(6 * 2 * 9 * 11, dtype=torch.float32).reshape(6, 2, 9, 11)  # all distinct
    trimap = torch.randint(0, 3, (6, 9, 11), generator=torch.Generator().manual_seed(0))
    xs, ts = pg.translate_batch(x, 3, torch.Generator().manual_seed(1), trimap)
    assert xs.shape == x.shape and ts.shape == trimap.shape and ts.dtype == trimap.dtype
    shifts = []
    for i in range(6):
        s = _shift_of(xs[i].numpy(), x[i].numpy(), 3)
        assert s is not None, i
        # the trimap moved with its image
        np.testing.assert_array_equal(
            ts[i].numpy(),
            np.pad(trimap[i].numpy(), 3, mode="reflect")[3 + s[0]:12 + s[0], 3 + s[1]:14 + s[1]])
        shifts.append(s)
    assert len(set(shifts)) > 1  # drawn per image
    # seeded: the same generator state gives the same shifts; no shift is the identity
    again = pg.translate_batch(x, 3, torch.Generator().manual_seed(1))
    torch.testing.assert_close(again, xs)
    assert pg.translate_batch(x, 0, torch.Generator()) is x


def test_train_with_translation_leaves_the_labels_alone():
    """A classifier trains with shifts (labels are class indices, not shifted)."""
    pg = _bench()
    torch.manual_seed(0)
    model = pg.SmallGapNet(width=4)
    x = torch.rand(8, 3, 16, 16)
    y = torch.tensor([0, 1] * 4)
    losses = pg.train(model, x, y, epochs=2, batch=4, seed=0, translate=0.25)
    assert len(losses) == 2 and all(np.isfinite(losses))
