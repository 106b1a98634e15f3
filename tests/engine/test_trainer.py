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
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from pyseg.engine import train as _train

ARCH = "tinynet:TinyNet"


def _cfg(out, **kw):
    base = {"arch": ARCH, "arch_kwargs": {"width": 4}, "img_size": 32, "epochs": 2,
            "batch_size": 4, "train_samples": 8, "val_samples": 4, "out": str(out), "seed": 1}
    return TrainConfig(**{**base, **kw})


def train(cfg, **kw):
    return _train(cfg, quiet=True, **kw)


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
    best = max(lines, key=lambda x: x["val_miou"])  # the first of equals, as max() picks
    assert summary["best_epoch"] == best["epoch"] and summary["val_miou"] == best["val_miou"]
    assert summary["best_metric"] == "val_miou"
    # Checkpoints load without unpickling code and carry what is needed to rebuild.
    state = torch.load(tmp_path / "best.pt", weights_only=True)
    assert state["arch"] == ARCH and state["arch_kwargs"] == {"width": 4}
    assert state["class_names"] == ["foreground", "background", "contour"]
    assert state["epoch"] == best["epoch"] and "optimizer" in state
    assert state["metrics"]["val_miou"] == best["val_miou"]
    net, fields = load_model(tmp_path / "best.pt", arch=ARCH)  # an import path: named on purpose
    assert isinstance(net, TinyNet) and fields["epoch"] == best["epoch"]
    assert all(torch.equal(v, state["model"][k]) for k, v in net.state_dict().items())


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
    r = train(_cfg(tmp_path, arch="", epochs=1, task="classification"),
              model=TinyClassifier(2), train_set=tr, val_set=va, plots=False)
    assert r.best["val_iou"].keys() == {"cat", "dog"}
    assert load_checkpoint(tmp_path / "best.pt")["arch"] == "TinyClassifier"


def test_loss_decreases_on_synthetic_pets(tmp_path):
    torch.manual_seed(0)
    r = train(_cfg(tmp_path, epochs=3, train_samples=16, arch_kwargs={"width": 8},
                   optimizer="adam"), plots=False)
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
    train(_cfg(tmp_path, epochs=1, hide_and_seek=True), plots=False)
    assert len(calls) == 8
    # Hidden patches are filled with the training set's per-channel mean (as in the paper).
    from pyseg.data import resolve_dataset

    cfg = _cfg(tmp_path)
    train_set, _ = resolve_dataset(cfg.data, "train", cfg.img_size, cfg.task, seed=cfg.seed,
                                   train_length=cfg.train_samples)
    expected = torch.stack([torch.as_tensor(train_set[i][0]) for i in range(len(train_set))])
    torch.testing.assert_close(means[0], expected.double().mean(dim=(0, 2, 3)).float())


def _strict_json(text):
    """json.loads that refuses NaN / Infinity (not JSON, though Python's json writes them)."""
    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_loss_stops_and_keeps_last_finite_epoch(tmp_path):
    net = TinyNet(width=4)

    def poison(epoch, metrics):  # after epoch 1 the weights hold NaN: epoch 2's loss is NaN
        if epoch == 1:
            with torch.no_grad():
                for p in net.parameters():
                    p.fill_(float("nan"))

    from pyseg.engine import NonFiniteLossError

    with pytest.raises(NonFiniteLossError, match=r"epoch 2.*last\.pt holds epoch 1"):
        train(_cfg(tmp_path, epochs=3), model=net, on_epoch_end=poison)
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [_strict_json(x)["epoch"] for x in lines] == [1]
    assert not (tmp_path / "metrics.json").exists()  # the run did not finish: no summary


def test_huge_learning_rate_stops_at_the_first_epoch(tmp_path):
    from pyseg.engine import NonFiniteLossError

    with pytest.raises(NonFiniteLossError, match="no checkpoint was written"):
        train(_cfg(tmp_path, epochs=2, optimizer="sgd", lr=1e30, lr_schedule="constant"),
              plots=False)
    assert not (tmp_path / "best.pt").exists() and not (tmp_path / "last.pt").exists()


def test_json_outputs_are_strict_json():
    from pyseg.engine.outputs import to_json

    text = to_json({"a": float("nan"), "b": [float("inf"), 1.5], "c": {"d": -float("inf")}})
    assert _strict_json(text) == {"a": None, "b": [None, 1.5], "c": {"d": None}}


def _scripted_metrics(monkeypatch, losses, mious):
    """Make the validation return the given loss and mIoU per epoch."""
    from pyseg.engine import trainer

    calls = []

    def fake_evaluate(model, dataset, class_names, **kw):
        i = len(calls)
        calls.append(i)
        iou = dict.fromkeys(class_names, mious[i])
        return {"loss": losses[i], "pixel_acc": 0.5, "iou": iou, "miou": mious[i]}

    monkeypatch.setattr(trainer, "evaluate_model", fake_evaluate)


@pytest.mark.parametrize("metric, epoch", [("val_miou", 3), ("val_loss", 2)])
def test_best_checkpoint_by_metric(tmp_path, monkeypatch, metric, epoch):
    # Lowest loss at epoch 2, highest mIoU at epoch 3 (ties go to the first epoch).
    _scripted_metrics(monkeypatch, [1.0, 0.9, 1.1, 0.9], [0.5, 0.4, 0.6, 0.6])
    kw = {} if metric == "val_miou" else {"best_metric": metric}  # val_miou is the default
    r = train(_cfg(tmp_path, epochs=4, **kw), plots=False)
    assert r.best["epoch"] == epoch
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == epoch
    assert _strict_json((tmp_path / "metrics.json").read_text())["best_epoch"] == epoch


def test_unknown_best_metric_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--best-metric"):
        train(_cfg(tmp_path, best_metric="pixel_acc"))


def test_ignore_index_leaves_pixels_out_of_loss_and_metrics():
    from pyseg.engine import evaluate_model
    from pyseg.engine.trainer import _loss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64)
    target = torch.randint(0, 3, (2, 5, 6), generator=g)
    target[:, :2] = 255
    keep = target != 255
    # Reference: the plain cross-entropy over the kept pixels only.
    ref = torch.nn.functional.cross_entropy(logits.permute(0, 2, 3, 1)[keep], target[keep])
    torch.testing.assert_close(_loss(logits, target, 255), ref)
    assert _loss(logits, torch.full_like(target, 255), 255).item() == 0.0  # not 0/0

    class Fixed(torch.nn.Module):  # returns the logits above, whatever the input
        def forward(self, x):
            return logits[: x.shape[0]].float()

    data = [(torch.zeros(3, 5, 6), target[i]) for i in range(2)]
    m = evaluate_model(Fixed(), data, ["a", "b", "c"], batch_size=2)
    pred, true = logits.argmax(1)[keep], target[keep]
    assert m["pixel_acc"] == pytest.approx((pred == true).double().mean().item())
    for k, name in enumerate("abc"):
        inter = ((pred == k) & (true == k)).sum().item()
        union = ((pred == k) | (true == k)).sum().item()
        assert m["iou"][name] == pytest.approx(inter / union)
    assert m["loss"] == pytest.approx(ref.item(), rel=1e-6)


def test_ignore_index_that_is_a_class_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--ignore-index 1"):
        train(_cfg(tmp_path, ignore_index=1))


def test_resume_refuses_another_configuration(tmp_path):
    def stop(epoch, metrics):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tmp_path, epochs=3), on_epoch_end=stop, plots=False)
    with pytest.raises(ValueError, match=r"--lr 0\.01 \(checkpoint: 0\.001\).*"
                                         r"--optimizer 'adam' \(checkpoint: 'rmsprop'\)"):
        train(_cfg(tmp_path, epochs=3, resume=True, lr=0.01, optimizer="adam"))
    with pytest.raises(ValueError, match="--arch-kwargs"):
        train(_cfg(tmp_path, epochs=3, resume=True, arch_kwargs={"width": 6}))
    with pytest.raises(ValueError, match="--batch-size 2"):
        train(_cfg(tmp_path, epochs=3, resume=True, batch_size=2))
    # Where it runs is no part of what it learns: another device string resumes fine.
    r = train(_cfg(tmp_path, epochs=3, resume=True, device="cpu:0"), plots=False)
    assert [h["epoch"] for h in r.history] == [1, 2, 3]


def test_existing_run_needs_resume_or_overwrite(tmp_path):
    train(_cfg(tmp_path, epochs=1))
    first = load_checkpoint(tmp_path / "best.pt")
    with pytest.raises(ValueError, match="--overwrite"):
        train(_cfg(tmp_path, epochs=1, seed=2), plots=False)
    assert torch.equal(load_checkpoint(tmp_path / "best.pt")["model"]["net.0.weight"],
                       first["model"]["net.0.weight"])
    with pytest.raises(ValueError, match="choose one"):
        train(_cfg(tmp_path, epochs=1, resume=True, overwrite=True))
    train(_cfg(tmp_path, epochs=1, seed=2, overwrite=True), plots=False)
    assert load_checkpoint(tmp_path / "best.pt")["config"]["seed"] == 2
    assert not (tmp_path / "loss.png").exists()  # the earlier run's files are gone


def test_out_that_is_a_file_is_refused_before_training(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        train(_cfg(target))
    with pytest.raises(ValueError, match="is a file"):
        train(_cfg(target / "sub"))


def test_task_mismatch_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="classification model, not a segmentation model"):
        train(_cfg(tmp_path, arch="small-convnet", arch_kwargs={}))
    # An import path declares no task: the model's output is checked instead.
    with pytest.raises(ValueError, match=r"should output \(N, 3, H, W\)"):
        train(_cfg(tmp_path, arch="tinynet:TinyClassifier", arch_kwargs={}), plots=False)


@pytest.mark.parametrize("device, match", [("cuda:99", "not available"),
                                           ("nonsense", "not a torch device"),
                                           ("meta", "holds no values")])
def test_unavailable_device_is_refused(tmp_path, device, match):
    with pytest.raises(ValueError, match=match):
        train(_cfg(tmp_path, device=device))
    assert not tmp_path.joinpath("last.pt").exists()
