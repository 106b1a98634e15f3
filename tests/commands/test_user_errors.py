"""A user's mistake ends in one line on stderr and a non-zero exit code, never a traceback;
checks on outputs come before the work."""

from __future__ import annotations

import errno
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pyseg
from pyseg.cli import main
from pyseg.engine import save_checkpoint
from pyseg.engine.checkpoint import model_fields

sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))

TINY = ["--arch", "tinynet:TinyNet", "--arch-kwargs", '{"width": 4}', "--img-size", "32",
        "--epochs", "1", "--batch-size", "4", "--train-samples", "4", "--val-samples", "2",
        "--quiet"]

pytestmark = pytest.mark.usefixtures("one_thread")


def _one_line(argv, capsys, match, code=2):
    assert main(argv) == code
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and match in err, err
    return captured.out


@pytest.fixture
def checkpoint(tmp_path):
    """A registered U-Net checkpoint (no training needed)."""
    torch.manual_seed(0)
    kwargs = {"base_channels": 4, "depth": 2}
    net = pyseg.create_model("unet", num_classes=3, **kwargs)
    state = model_fields(arch="unet", arch_kwargs=kwargs,
                         class_names=["foreground", "background", "contour"],
                         task="segmentation", img_size=32, weights=net.state_dict())
    state["config"] = {"data": "synthetic-pets", "val_samples": 2, "seed": 0}
    path = tmp_path / "unet.pt"
    save_checkpoint(path, state)
    return path


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray(np.zeros((20, 20, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("device, match", [("cuda:99", "not available"),
                                           ("gpu", "not a torch device")])
def test_unavailable_device(checkpoint, image, tmp_path, capsys, device, match):
    out = tmp_path / "o"
    for argv in (["predict", "--checkpoint", str(checkpoint), str(image), "--out", str(out)],
                 ["evaluate", "--checkpoint", str(checkpoint)],
                 ["explain", "--checkpoint", str(checkpoint), "--method", "gradcam",
                  str(image), "--out", str(out)],
                 ["train", *TINY, "--out", str(out)]):
        _one_line([*argv, "--device", device], capsys, match)
        assert not out.exists()


def test_out_is_a_file_or_in_a_missing_folder(checkpoint, image, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    _one_line(["predict", "--checkpoint", str(checkpoint), str(image), "--out", str(a_file)],
              capsys, "is a file")
    _one_line(["explain", "--checkpoint", str(checkpoint), "--method", "cam", str(image),
               "--out", str(a_file / "sub")], capsys, "is a file")
    _one_line(["train", *TINY, "--out", str(a_file)], capsys, "is a file")
    _one_line(["evaluate", "--checkpoint", str(checkpoint), "--out",
               str(tmp_path / "missing" / "m.json")], capsys, "does not exist")
    _one_line(["evaluate", "--checkpoint", str(checkpoint), "--out", str(tmp_path)], capsys,
              "is a folder")
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("argv, match", [
    (["evaluate", "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["evaluate", "--img-size", "-8"], "--img-size must be in [16,"),
    (["evaluate", "--val-samples", "0"], "--val-samples"),
    (["explain", "--method", "cam", "--size", "-8"], "--size"),
])
def test_bad_numbers_for_checkpoint_commands(checkpoint, image, capsys, argv, match):
    extra = [str(image)] if argv[0] == "explain" else []
    _one_line([*argv, "--checkpoint", str(checkpoint), *extra], capsys, match)


@pytest.mark.parametrize("flags, match", [
    (["--img-size", "-8"], "--img-size"),
    (["--threads", "-1"], "--threads must be >= 1, got -1"),
    (["--threads", "0"], "--threads"),
    (["--lr", "inf"], "--lr must be a positive number"),
    (["--train-samples", "0"], "--train-samples"),
    (["--best-metric", "val_loss", "--resume", "--overwrite"], "choose one"),
])
def test_bad_train_options(tmp_path, capsys, flags, match):
    out = tmp_path / "o"
    _one_line(["train", *TINY, *flags, "--out", str(out)], capsys, match)
    assert not out.exists()


def test_architecture_task_mismatch(tmp_path, capsys):
    _one_line(["train", "--arch", "small-convnet", "--task", "segmentation", "--out",
               str(tmp_path / "o")], capsys, "is a classification model")


def test_disk_full_is_one_line(tmp_path, capsys, monkeypatch):
    from pyseg.engine import checkpoint

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    out = tmp_path / "o"
    printed = _one_line(["train", *TINY, "--out", str(out)], capsys,
                        f"No space left on device: {out / 'last.pt'}", code=1)
    assert not (out / "best.pt").exists() and "wrote" not in printed


def test_non_finite_loss_exits_non_zero_and_claims_nothing(tmp_path, capsys):
    out = tmp_path / "o"
    printed = _one_line(["train", *TINY, "--epochs", "2", "--optimizer", "sgd", "--lr", "1e30",
                         "--lr-schedule", "constant", "--out", str(out)], capsys,
                        "training stopped at epoch 1", code=1)
    assert "wrote" not in printed and not (out / "best.pt").exists()


def test_evaluate_writes_strict_json_for_a_nan_model(checkpoint, tmp_path, capsys):
    state = torch.load(checkpoint, weights_only=True)
    state["model"] = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                      for k, v in state["model"].items()}
    save_checkpoint(checkpoint, state)
    dest = tmp_path / "m.json"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--out", str(dest)]) == 0
    printed = capsys.readouterr().out

    def refuse(token):
        raise ValueError(token)

    for text in (printed, dest.read_text()):
        m = json.loads(text, parse_constant=refuse)
        assert m["val_loss"] is None


def test_resume_with_other_options_lists_the_differences(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    argv = ["train", *TINY, "--resume", "--optimizer", "sgd", "--arch-kwargs", '{"width": 6}',
            "--lr", "0.5", "--batch-size", "2", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for difference in ("--optimizer 'sgd' (checkpoint: 'rmsprop')",
                       "--arch-kwargs {'width': 6} (checkpoint: {'width': 4})",
                       "--lr 0.5 (checkpoint: 0.001)", "--batch-size 2 (checkpoint: 4)"):
        assert difference in err, err
    # Training again into the same folder without --resume asks for --overwrite.
    _one_line(["train", *TINY, "--out", str(out)], capsys, "--overwrite")
    assert main(["train", *TINY, "--overwrite", "--out", str(out)]) == 0


@pytest.mark.parametrize("flag", ["--json", "--plot"])
def test_bench_output_in_a_missing_folder_is_refused_before_timing(tmp_path, capsys, monkeypatch,
                                                                    flag):
    from pyseg.bench import harness

    def no_timing(*args, **kwargs):
        raise AssertionError("the run started before the output file was checked")

    monkeypatch.setattr(harness, "run", no_timing)
    target = tmp_path / "missing" / "out.file"
    _one_line(["bench", "max_unpool2d", "--quick", flag, str(target)], capsys, flag)
    assert not target.parent.exists()
