"""The training loop on tiny synthetic data with a tiny model (no registry needed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from tinynet import TinyClassifier, TinyNet

from pyseg.data.synthetic import SyntheticPets
from pyseg.engine import (
    CheckpointError,
    TrainConfig,
    build_model_from_state,
    load_checkpoint,
    save_checkpoint,
    train,
)

ARCH = "tinynet:TinyNet"


def _cfg(out, **kw):
    base = dict(arch=ARCH, arch_kwargs={"width": 4}, img_size=32, epochs=2, batch_size=4,
                train_samples=8, val_samples=4, out=str(out), quiet=True, seed=1)
    base.update(kw)
    return TrainConfig(**base)


def test_train_writes_everything(tmp_path):
    train(_cfg(tmp_path))
    for name in ("best.pt", "last.pt", "metrics.jsonl", "metrics.json", "loss.png",
                 "predictions.png"):
        assert (tmp_path / name).is_file(), name
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*tmp*"))
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2]
    for x in lines:
        assert set(x["val_iou"]) == {"foreground", "background", "contour"}
        assert 0.0 <= x["val_miou"] <= 1.0 and 0.0 <= x["val_pixel_acc"] <= 1.0
    summary = json.loads((tmp_path / "metrics.json").read_text())
    best = min(lines, key=lambda x: x["val_loss"])
    assert summary["best_epoch"] == best["epoch"] and summary["val_miou"] == best["val_miou"]
    # Checkpoints load without unpickling code and carry what is needed to rebuild.
    state = torch.load(tmp_path / "best.pt", weights_only=True)
    assert state["arch"] == ARCH and state["arch_kwargs"] == {"width": 4}
    assert state["class_names"] == ["foreground", "background", "contour"]
    assert state["epoch"] == best["epoch"] and "optimizer" in state
    assert state["metrics"]["val_miou"] == best["val_miou"]
    net = build_model_from_state(state)
    assert isinstance(net, TinyNet)


def test_resume_matches_uninterrupted_run(tmp_path):
    full = train(_cfg(tmp_path / "full"))

    def stop(epoch, metrics):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tmp_path / "cut"), on_epoch_end=stop)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 1
    resumed = train(_cfg(tmp_path / "cut", resume=True))
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["val_loss"] for h in full.history] == [h["val_loss"] for h in resumed.history]
    assert (tmp_path / "cut" / "metrics.jsonl").read_text().count("\n") == 2


def test_resume_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="resume"):
        train(_cfg(tmp_path, resume=True))


def test_python_api_accepts_a_module_and_datasets(tmp_path):
    tr = SyntheticPets("train", img_size=32, length=8, task="classification")
    va = SyntheticPets("val", img_size=32, length=4, task="classification")
    r = train(_cfg(tmp_path, arch="", epochs=1, task="classification", plots=False),
              model=TinyClassifier(2), train_set=tr, val_set=va)
    assert r.best["val_iou"].keys() == {"cat", "dog"}
    assert load_checkpoint(tmp_path / "best.pt")["arch"] == "TinyClassifier"


def test_loss_decreases_on_synthetic_pets(tmp_path):
    torch.manual_seed(0)
    r = train(_cfg(tmp_path, epochs=3, train_samples=16, arch_kwargs={"width": 8}, plots=False,
                   optimizer="adam"))
    assert r.history[-1]["train_loss"] < r.history[0]["train_loss"]


def test_checkpoint_atomic_and_corrupt(tmp_path):
    p = tmp_path / "c.pt"
    save_checkpoint(p, {"format": "x"})
    assert [q.name for q in tmp_path.iterdir()] == ["c.pt"]
    with pytest.raises(CheckpointError, match="not a pyseg checkpoint"):
        load_checkpoint(p)
    p.write_bytes(b"garbage" * 10)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(p)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_hide_and_seek_flag_uses_the_augmentation(tmp_path, monkeypatch):
    import types

    calls, means = [], []

    class FakeHideAndSeek:
        def __init__(self, grid_size, p=0.5, mean=None):
            self.grid_size = grid_size
            self.mean = mean
            means.append(mean)

        def __call__(self, x):
            calls.append(x.shape)
            return x

    mod = types.ModuleType("pyseg.data.patch_hiding")
    mod.HideAndSeek = FakeHideAndSeek
    monkeypatch.setitem(sys.modules, "pyseg.data.patch_hiding", mod)
    train(_cfg(tmp_path, epochs=1, hide_and_seek=True, plots=False))
    assert len(calls) == 8
    # Hidden patches are filled with the training set's per-channel mean (as in the paper).
    from pyseg.data import resolve_dataset

    cfg = _cfg(tmp_path)
    train_set, _ = resolve_dataset(cfg.data, "train", cfg.img_size, cfg.task, seed=cfg.seed,
                                   train_length=cfg.train_samples)
    expected = torch.stack([torch.as_tensor(train_set[i][0]) for i in range(len(train_set))])
    torch.testing.assert_close(means[0], expected.double().mean(dim=(0, 2, 3)).float())
