"""pyseg.data.HideAndSeek, the training half of hide-and-seek."""

from __future__ import annotations

import pytest
import torch

from pyseg.data import HideAndSeek


def _cells_hidden(out: torch.Tensor, img: torch.Tensor, size: int) -> torch.Tensor:
    changed = (out != img).any(0)  # (H, W)
    h, w = changed.shape
    return changed.view(h // size, size, w // size, size).permute(0, 2, 1, 3).flatten(2)


def test_hides_whole_patches_with_the_mean():
    g = torch.Generator().manual_seed(0)
    aug = HideAndSeek(grid_size=8, p=0.5, mean=(0.1, 0.2, 0.3), generator=g)
    img = torch.rand(3, 64, 64) + 1.0  # never equal to the fill
    out = aug(img)
    cells = _cells_hidden(out, img, 8)
    # each patch is hidden entirely or not at all
    assert ((cells.all(-1)) | (~cells.any(-1))).all()
    hidden = cells.all(-1)
    assert 0 < hidden.sum() < 64
    mask = (out != img).any(0)
    for c, m in enumerate((0.1, 0.2, 0.3)):
        assert torch.allclose(out[c][mask], torch.tensor(m))
        assert torch.equal(out[c][~mask], img[c][~mask])


def test_fraction_close_to_p():
    aug = HideAndSeek(grid_size=4, p=0.3, mean=0.0, generator=torch.Generator().manual_seed(1))
    img = torch.ones(8, 3, 64, 64)
    out = aug(img)
    frac = (out[:, 0] == 0).float().mean().item()
    assert abs(frac - 0.3) < 0.05  # 2048 patches: 5 standard deviations is ~0.05
    # images of a batch get different patches
    assert not torch.equal(out[0], out[1])


def test_seeded_and_target_passthrough():
    img = torch.rand(3, 32, 32)
    target = torch.randint(0, 3, (32, 32))
    a, ta = HideAndSeek(16, generator=torch.Generator().manual_seed(5))(img, target)
    b, _ = HideAndSeek(16, generator=torch.Generator().manual_seed(5))(img, target)
    assert torch.equal(a, b) and ta is target


def test_zero_grid_and_default_mean():
    img = torch.rand(3, 30, 30)
    assert torch.equal(HideAndSeek(grid_size=0)(img), img)
    out = HideAndSeek(grid_size=7, p=1.0)(img)  # partial patches at the edges too
    assert torch.allclose(out, img.mean((1, 2), keepdim=True).expand_as(img))


def test_bad_arguments():
    with pytest.raises(ValueError, match="p must"):
        HideAndSeek(8, p=1.5)
    with pytest.raises(ValueError, match="grid_size"):
        HideAndSeek(-1)
    with pytest.raises(ValueError, match="channels"):
        HideAndSeek(8, p=1.0, mean=(0.1, 0.2))(torch.rand(3, 16, 16))
