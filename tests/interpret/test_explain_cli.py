"""``pyseg explain`` end to end on a tiny checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from interp_models import GapNet
from PIL import Image

from pyseg import registry
from pyseg.cli import main
from pyseg.engine import save_checkpoint
from pyseg.engine.checkpoint import model_fields


def _state(model, arch="toy-gap"):
    return model_fields(arch=arch, arch_kwargs={"width": 4}, class_names=["cat", "dog"],
                        task="classification", img_size=32, weights=model.state_dict())


@pytest.fixture
def ckpt(tmp_path, monkeypatch):
    real_create_model = registry.create_model

    def create_model(name, num_classes=3, in_channels=3, **kwargs):
        if name != "toy-gap":  # a registered architecture standing in for a plugin's
            return real_create_model(name, num_classes, in_channels, **kwargs)
        return GapNet(num_classes=num_classes, **kwargs)

    monkeypatch.setattr(registry, "create_model", create_model)
    torch.manual_seed(0)
    path = tmp_path / "model.pt"
    save_checkpoint(path, _state(GapNet(num_classes=2, width=4)))
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
    assert "not found" in capsys.readouterr().err
    assert main(["explain", "--checkpoint", str(ckpt), "--method", "nosuch", *image_files]) == 2
    assert "unknown method 'nosuch'" in capsys.readouterr().err
    assert main(["explain", "--checkpoint", str(ckpt), "--method", "gradcam", "--target",
                 "horse", *image_files]) == 2
    assert "horse" in capsys.readouterr().err
    assert main(["explain", "--checkpoint", str(ckpt), "--method", "gradcam",
                 str(tmp_path / "missing.png")]) == 2
    assert "cannot read image" in capsys.readouterr().err


class _WritesMarker:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"echo PWNED > {self.marker}",))


def test_explain_never_runs_code_from_a_checkpoint(ckpt, image_files, tmp_path, capsys):
    marker = tmp_path / "pwned.txt"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "x", "e": _WritesMarker(marker)}, evil)
    assert main(["explain", "--checkpoint", str(evil), "--method", "gradcam", *image_files]) == 2
    err = capsys.readouterr().err
    assert "cannot read checkpoint" in err and len(err.strip().splitlines()) == 1
    assert not marker.exists()
    # A pickled module is code too: refused like any pickle.
    torch.save(GapNet(num_classes=2, width=4), tmp_path / "module.pt")
    assert main(["explain", "--checkpoint", str(tmp_path / "module.pt"), "--method", "gradcam",
                 *image_files]) == 2
    assert "cannot read checkpoint" in capsys.readouterr().err
    # An import path from the file is refused; the command line may name one on purpose.
    torch.save(dict(torch.load(ckpt, weights_only=True), arch="os:system"), tmp_path / "os.pt")
    assert main(["explain", "--checkpoint", str(tmp_path / "os.pt"), "--method", "gradcam",
                 *image_files]) == 2
    assert "--arch os:system" in capsys.readouterr().err
    assert main(["explain", "--checkpoint", str(tmp_path / "os.pt"), "--arch", "toy-gap",
                 "--method", "gradcam", "--out", str(tmp_path / "o"), *image_files]) == 0


# ---------------------------------------------------------------------------------------------
# Segmentation targets, several layers, metrics
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def seg_ckpt(tmp_path, monkeypatch):
    from interp_models import PixelSegNet

    real_create_model = registry.create_model

    def create_model(name, num_classes=3, in_channels=3, **kwargs):
        if name != "toy-seg":
            return real_create_model(name, num_classes, in_channels, **kwargs)
        return PixelSegNet(num_classes=num_classes)

    monkeypatch.setattr(registry, "create_model", create_model)
    torch.manual_seed(0)
    path = tmp_path / "seg.pt"
    save_checkpoint(path, model_fields(arch="toy-seg", arch_kwargs={},
                                       class_names=["pet", "background", "border"],
                                       task="segmentation", img_size=32,
                                       weights=PixelSegNet(num_classes=3).state_dict()))
    return path


def test_explain_metrics_and_layers(ckpt, image_files, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["explain", "--checkpoint", str(ckpt), "--method", "gradcam,layercam",
               "--method", "cam", "--layer", "features.3", "--layer", "features.4",
               "--metrics", "--target-class", "dog", "--out", str(out), image_files[0]])
    assert rc == 0
    text = capsys.readouterr().out
    lines = [ln for ln in text.splitlines() if ln.startswith("img0.png")]
    assert [ln.split()[1] for ln in lines] == ["gradcam", "layercam", "cam"]
    assert "deletion" in text and "pointing" not in text
    for ln in lines:
        values = [float(v) for v in ln.split()[2:]]
        assert len(values) == 5 and all(np.isfinite(values))
    # two layers give another map than one
    with Image.open(out / "img0_gradcam.png") as im:
        two = np.asarray(im).copy()
    assert main(["explain", "--checkpoint", str(ckpt), "--method", "gradcam", "--layer",
                 "features.4", "--out", str(out), image_files[0]]) == 0
    with Image.open(out / "img0_gradcam.png") as im:
        assert not np.array_equal(two, np.asarray(im))


def test_explain_segmentation_box_and_mask(seg_ckpt, image_files, tmp_path, capsys):
    out = tmp_path / "seg"
    rc = main(["explain", "--checkpoint", str(seg_ckpt), "--method", "hirescam,eigencam",
               "--target", "border", "--box", "4,6,20,18", "--metrics", "--out", str(out),
               image_files[0]])
    assert rc == 0
    text = capsys.readouterr().out
    assert "pointing" in text
    assert (out / "img0_panel.png").stat().st_size > 0
    mask = np.zeros((16, 16), np.uint8)  # resized (nearest) to the 32 x 32 image
    mask[2:8, 3:9] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    rc = main(["explain", "--checkpoint", str(seg_ckpt), "--method", "scorecam",
               "--mask", str(tmp_path / "mask.png"), "--out", str(out), image_files[1]])
    assert rc == 0 and (out / "img1_scorecam.png").exists()


def test_explain_region_errors(ckpt, seg_ckpt, image_files, tmp_path, capsys):
    base = ["explain", "--method", "gradcam", "--out", str(tmp_path / "e"), image_files[0]]
    assert main([*base, "--checkpoint", str(ckpt), "--box", "0,0,8,8"]) == 2
    assert "segmentation model" in capsys.readouterr().err
    assert main([*base, "--checkpoint", str(seg_ckpt), "--box", "0,0,8"]) == 2
    assert "--box must be four integers" in capsys.readouterr().err
    assert main([*base, "--checkpoint", str(seg_ckpt), "--box", "8,0,4,8"]) == 2
    assert "X0 < X1" in capsys.readouterr().err
    assert main([*base, "--checkpoint", str(seg_ckpt), "--box", "0,0,40,8"]) == 2
    assert "exceeds" in capsys.readouterr().err
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "empty.png")
    assert main([*base, "--checkpoint", str(seg_ckpt), "--mask", str(tmp_path / "empty.png")]) == 2
    assert "no nonzero pixel" in capsys.readouterr().err


def test_explain_all_skips_methods_that_do_not_fit(seg_ckpt, image_files, tmp_path, capsys,
                                                    monkeypatch):
    import pyseg

    # the fast methods only: 'all' as the registry would give it, without the sampling ones
    fast = ["acol", "cam", "eigencam", "gradcam"]
    monkeypatch.setattr(pyseg, "list_interpreters", lambda *a, **k: fast)
    out = tmp_path / "all"
    rc = main(["explain", "--checkpoint", str(seg_ckpt), "--method", "all", "--out", str(out),
               image_files[0]])
    assert rc == 0
    err = capsys.readouterr().err
    assert "acol skipped" in err and "cam skipped" in err
    assert (out / "img0_gradcam.png").exists() and not (out / "img0_cam.png").exists()
    # named explicitly, a method that does not fit is an error
    assert main(["explain", "--checkpoint", str(seg_ckpt), "--method", "cam", "--out",
                 str(out), image_files[0]]) == 2
