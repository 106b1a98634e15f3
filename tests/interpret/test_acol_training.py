"""ACoL from the command line: ``pyseg train --arch mini-xception --acol`` trains the registered
``acol`` architecture with both branches' losses, and ``pyseg explain --method acol`` loads the
checkpoint (a registered name, read with ``weights_only=True``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import pyseg
from pyseg.cli import main
from pyseg.engine import load_model
from pyseg.interpret.acol import ACoL, acol_classifier, acol_maps

TRAIN = ["train", "--arch", "mini-xception", "--acol", "--arch-kwargs", '{"dropout": 0.0}',
         "--img-size", "32", "--epochs", "2", "--batch-size", "4", "--train-samples", "8",
         "--val-samples", "4", "--quiet", "--threads", "1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("acol")
    assert main([*TRAIN, "--out", str(out)]) == 0
    return out


def test_checkpoint_names_the_registered_architecture(run):
    state = torch.load(run / "best.pt", weights_only=True)
    assert state["arch"] == "acol" and state["task"] == "classification"
    assert state["arch_kwargs"] == {"backbone": "mini-xception",
                                    "backbone_kwargs": {"dropout": 0.0}, "threshold": 0.6}
    assert any(k.startswith("branch_b.") for k in state["model"])
    # Trained: the weights moved away from the seeded initialization.
    torch.manual_seed(0)
    fresh = acol_classifier(2, backbone="mini-xception", backbone_kwargs={"dropout": 0.0})
    moved = [not torch.equal(v, state["model"][k]) for k, v in fresh.state_dict().items()
             if v.is_floating_point()]
    assert all(moved)
    # Both branches' cross-entropies: about 2 x ln 2 for an untrained two-class model.
    history = torch.load(run / "last.pt", weights_only=True)["history"]
    assert len(history) == 2 and 1.0 < history[0]["train_loss"] < 3.0


def test_explain_loads_the_checkpoint(run, tmp_path, capsys):
    model, _ = load_model(run / "best.pt")
    assert isinstance(model, ACoL) and not model.training
    x = torch.rand(2, 3, 32, 32)
    maps = acol_maps(model, x)
    assert maps.shape == (2, 32, 32) and 0 <= maps.min() and maps.max() <= 1
    img = tmp_path / "pet.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8)).save(img)
    out = tmp_path / "maps"
    assert main(["explain", "--checkpoint", str(run / "best.pt"), "--method", "acol,gradcam",
                 "--out", str(out), str(img)]) == 0
    assert (out / "pet_acol.png").is_file() and (out / "pet_gradcam.png").is_file()


def test_training_step_uses_both_branches(monkeypatch, tmp_path):
    """The trainer calls the model with the labels (erasing for the true class) and sums the
    two branches' losses: checked by recording the calls."""
    calls = []
    real = ACoL.forward

    def forward(self, x, labels=None):
        if self.training:
            calls.append(labels)
        return real(self, x, labels)

    monkeypatch.setattr(ACoL, "forward", forward)
    assert main([*TRAIN[:-2], "--epochs", "1", "--out", str(tmp_path / "r")]) == 0
    assert calls and all(c is not None and c.dtype == torch.int64 for c in calls)


def test_bad_acol_arguments(tmp_path, capsys):
    assert main(["train", "--arch", "unet", "--acol", "--out", str(tmp_path / "a")]) == 2
    assert "--acol needs a registered classifier" in capsys.readouterr().err
    assert main(["train", "--arch", "mini-xception", "--acol", "--acol-threshold", "1.5",
                 "--out", str(tmp_path / "b")]) == 2
    assert "--acol-threshold" in capsys.readouterr().err
    with pytest.raises(ValueError, match="registered classifier name"):
        acol_classifier(2, backbone="os:system")
    with pytest.raises(ValueError, match="not a classifier"):
        acol_classifier(2, backbone="unet")
    with pytest.raises(ValueError, match="stages"):
        acol_classifier(2, stages=0)


@pytest.mark.parametrize(("backbone", "kwargs", "size", "stages", "grid"), [
    ("mini-xception", {}, 64, None, 2), ("mini-xception", {}, 64, 3, 8),
    ("small-convnet", {"input_size": 96}, 96, None, 2),
    ("small-convnet", {"input_size": 96}, 96, 3, 20),
])
def test_backbone_features(backbone, kwargs, size, stages, grid):
    """The head sits on the backbone's convolutional features, cut after ``stages`` stages:
    maps of the expected size (mini-xception halves the resolution per block after a 5x5
    valid stem; small-convnet: valid 3x3 convs, 2x2 pools between them)."""
    model = acol_classifier(3, backbone=backbone, backbone_kwargs=kwargs, stages=stages).eval()
    a, b, erased = model.class_maps(torch.rand(1, 3, size, size))
    assert a.shape == b.shape == (1, 3, grid, grid) and erased.shape == (1, grid, grid)
    assert model(torch.rand(2, 3, size, size)).shape == (2, 3)
    assert "acol" in pyseg.list_architectures()
