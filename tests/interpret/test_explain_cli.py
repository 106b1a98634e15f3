"""``pyseg explain`` end to end on a tiny checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from interp_models import GapNet
from PIL import Image

from pyseg import registry
from pyseg.cli import main


@pytest.fixture
def ckpt(tmp_path, monkeypatch):
    def create_model(name, num_classes=3, in_channels=3, **kwargs):
        assert name == "toy-gap"
        return GapNet(num_classes=num_classes, **kwargs)

    monkeypatch.setattr(registry, "create_model", create_model, raising=False)
    torch.manual_seed(0)
    model = GapNet(num_classes=2, width=4)
    path = tmp_path / "model.pt"
    torch.save({"arch": "toy-gap", "arch_kwargs": {"num_classes": 2, "width": 4},
                "model": model.state_dict(), "class_names": ["cat", "dog"], "img_size": 32}, path)
    return path


@pytest.fixture
def image_files(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i, size in enumerate((32, 48)):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


def test_explain_writes_overlays_and_panel(ckpt, image_files, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["explain", "--checkpoint", str(ckpt), "--method", "gradcam,cam",
               "--method", "excitation-backprop", "--method", "hide-and-seek",
               "--target", "dog", "--out", str(out), *image_files])
    assert rc == 0
    for stem in ("img0", "img1"):
        for m in ("gradcam", "cam", "excitation-backprop", "hide-and-seek"):
            with Image.open(out / f"{stem}_{m}.png") as im:
                assert im.size == (32, 32) and im.mode == "RGB"  # resized to the training size
        assert (out / f"{stem}_panel.png").stat().st_size > 0
    assert "img1_panel.png" in capsys.readouterr().out


def test_overlay_is_jet_at_alpha(ckpt, image_files, tmp_path):
    from matplotlib import colormaps

    from pyseg.interpret.overlay import overlay

    img = torch.rand(3, 8, 8)
    heat = torch.rand(8, 8)
    got = overlay(img, heat, alpha=0.4).astype(np.float32)
    jet = colormaps["jet"](heat.numpy())[..., :3] * 255
    base = img.permute(1, 2, 0).numpy() * 255
    np.testing.assert_allclose(got, 0.6 * base + 0.4 * jet, atol=1.01)


def test_explain_user_errors(ckpt, image_files, tmp_path, capsys):
    assert main(["explain", "--checkpoint", str(tmp_path / "nope.pt"), "--method", "gradcam",
                 *image_files]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["explain", "--checkpoint", str(ckpt), "--method", "nosuch", *image_files]) == 2
    assert "unknown method 'nosuch'" in capsys.readouterr().err
    assert main(["explain", "--checkpoint", str(ckpt), "--method", "gradcam", "--target",
                 "horse", *image_files]) == 2
    assert "horse" in capsys.readouterr().err
    assert main(["explain", "--checkpoint", str(ckpt), "--method", "gradcam",
                 str(tmp_path / "missing.png")]) == 2
    assert "cannot read image" in capsys.readouterr().err
