"""--accumulate, --workers, --resume auto and --sync-bn in one process (the multi-process
runs are in test_ddp.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from tinynet import TinyNet

from pyseg.data.synthetic import SyntheticPets
from pyseg.engine import TrainConfig, load_checkpoint
from pyseg.engine import train as _train

ARCH = "tinynet:TinyNet"


def _cfg(out, **kw):
    base = {"arch": ARCH, "arch_kwargs": {"width": 4}, "img_size": 32, "epochs": 2,
            "batch_size": 4, "train_samples": 10, "val_samples": 4, "out": str(out), "seed": 1,
            "optimizer": "sgd", "lr": 0.05}
    return TrainConfig(**{**base, **kw})


def train(cfg, **kw):
    return _train(cfg, quiet=True, plots=False, **kw)


def _assert_same_weights(a, b, exact=True):
    a, b = a.state_dict(), b.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        if exact:
            assert torch.equal(a[k], b[k]), k
        else:
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def _max_difference(a, b) -> float:
    b = b.state_dict()
    return max((v - b[k]).abs().max().item() for k, v in a.state_dict().items())


def test_accumulate_two_batches_of_4_is_one_batch_of_8(tmp_path):
    # 10 samples: steps of 8 and 2 images, so the short last group is covered too. TinyNet
    # has no batch norm (whose statistics do depend on the batch split).
    big = train(_cfg(tmp_path / "big", batch_size=8))
    split = train(_cfg(tmp_path / "split", batch_size=4, accumulate=2))
    _assert_same_weights(big.model, split.model, exact=False)
    for a, b in zip(big.history, split.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    # The reference above is not the same as no accumulation at batch 4.
    small = train(_cfg(tmp_path / "small", batch_size=4))
    assert _max_difference(small.model, big.model) > 100 * _max_difference(split.model, big.model)


def test_accumulate_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="--accumulate must be >= 1"):
        train(_cfg(tmp_path, accumulate=0))


def test_workers_do_not_change_the_result(tmp_path):
    # Hide-and-seek draws random patches in the loading processes: they are a function of
    # (seed, epoch, sample), not of the process that draws them.
    kw = {"hide_and_seek": True, "epochs": 2}
    inline = train(_cfg(tmp_path / "inline", **kw))
    pooled = train(_cfg(tmp_path / "pooled", num_workers=2, **kw))
    _assert_same_weights(inline.model, pooled.model)
    assert [h["val_loss"] for h in inline.history] == [h["val_loss"] for h in pooled.history]


def test_hide_and_seek_is_a_function_of_seed_epoch_and_sample():
    from pyseg.engine.trainer import _train_loader

    def batches(epoch, workers):
        cfg = _cfg("unused", hide_and_seek=True, num_workers=workers)
        data = SyntheticPets("train", img_size=32, length=10, seed=1)
        loader, sampler = _train_loader(cfg, data, 0, 1, torch.device("cpu"))
        sampler.set_epoch(epoch)
        return torch.cat([x for x, _ in loader])

    first = batches(0, workers=0)
    assert torch.equal(first, batches(0, workers=2))
    assert not torch.equal(first, batches(1, workers=0))  # other patches in another epoch
    plain = torch.stack([x for x, _ in SyntheticPets("train", img_size=32, length=10,
                                                     seed=1)])
    assert first.double().sum() != plain.double().sum()  # patches are hidden (any order)


def test_workers_must_not_be_negative(tmp_path):
    with pytest.raises(ValueError, match="--workers must be >= 0"):
        train(_cfg(tmp_path, num_workers=-1))


def _cut_after_first_epoch(cfg):
    def stop(epoch, metrics):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_epoch_end=stop)


def test_resume_auto_starts_then_continues(tmp_path):
    full = train(_cfg(tmp_path / "full", epochs=3))
    cut = tmp_path / "cut"
    _cut_after_first_epoch(_cfg(cut, epochs=3, resume="auto"))  # no run yet: starts
    assert load_checkpoint(cut / "last.pt")["epoch"] == 1
    resumed = train(_cfg(cut, epochs=3, resume="auto"))
    _assert_same_weights(full.model, resumed.model)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    # Once finished, the same command trains nothing more and reports the run.
    again = train(_cfg(cut, epochs=3, resume="auto"))
    assert again.best == resumed.best
    _assert_same_weights(full.model, again.model)


def test_resume_auto_refuses_another_run(tmp_path):
    train(_cfg(tmp_path, epochs=1))
    with pytest.raises(ValueError, match=r"--lr 0\.1 \(checkpoint: 0\.05\)"):
        train(_cfg(tmp_path, epochs=1, lr=0.1, resume="auto"))
    with pytest.raises(ValueError, match="'auto'"):
        train(_cfg(tmp_path, resume="yes"))


def test_resume_keeps_the_effective_batch_size(tmp_path):
    _cut_after_first_epoch(_cfg(tmp_path, epochs=2, batch_size=4))
    with pytest.raises(ValueError, match=r"--batch-size 2 \(checkpoint: 4\): effective batch "
                                         r"size 2 \(checkpoint: 4\)"):
        train(_cfg(tmp_path, epochs=2, batch_size=2, resume=True))
    # The same effective batch in two halves (what a run restarted on half the processes
    # does) continues the run.
    r = train(_cfg(tmp_path, epochs=2, batch_size=2, accumulate=2, resume=True))
    assert [h["epoch"] for h in r.history] == [1, 2]


def test_resume_repairs_a_best_checkpoint_left_behind(tmp_path):
    # A run stopped after writing last.pt and before best.pt leaves best.pt behind (here:
    # missing); resuming writes it from last.pt when last.pt holds the best epoch.
    train(_cfg(tmp_path, epochs=1))
    (tmp_path / "best.pt").unlink()
    train(_cfg(tmp_path, epochs=1, resume="auto"))
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 1


def test_sync_bn_is_refused_on_cpu(tmp_path):
    with pytest.raises(ValueError, match="--sync-bn needs CUDA"):
        train(_cfg(tmp_path, sync_bn=True))
    assert not (tmp_path / "last.pt").exists()


def test_sync_bn_converts_every_batch_norm():
    from pyseg.engine.trainer import _sync_batchnorm

    net = TinyNet(width=4, batch_norm=True)
    keys = net.state_dict().keys()
    # The conversion itself touches no device: what it does on CUDA can be checked here.
    synced = _sync_batchnorm(net, _cfg("unused", sync_bn=True), torch.device("cuda", 0))
    kinds = {type(m) for m in synced.modules()}
    assert torch.nn.SyncBatchNorm in kinds and torch.nn.BatchNorm2d not in kinds
    assert synced.state_dict().keys() == keys  # checkpoints load into the plain network


@pytest.mark.parametrize("argv, message", [
    (["--workers", "-1"], "--workers must be >= 0, got -1"),
    (["--accumulate", "0"], "--accumulate must be >= 1, got 0"),
    (["--resume", "always"], "invalid choice: 'always'"),
])
def test_command_line_refuses_bad_values(tmp_path, capsys, argv, message):
    from pyseg.cli import main

    try:
        code = main(["train", *argv, "--out", str(tmp_path / "o")])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
