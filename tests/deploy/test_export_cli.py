"""``pyseg export``: a checkpoint to ONNX and to a torch.export program, both run with
another batch size and compared with the model."""

from __future__ import annotations

import pytest
import torch

import pyseg
from pyseg.cli import main
from pyseg.engine.checkpoint import FORMAT, save_checkpoint

ARCH_KWARGS = {"base_channels": 4, "depth": 2}


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = pyseg.create_model("unet", num_classes=3, **ARCH_KWARGS).eval()
    path = tmp_path / "best.pt"
    save_checkpoint(path, {
        "format": FORMAT, "arch": "unet", "arch_kwargs": ARCH_KWARGS, "num_classes": 3,
        "class_names": ["fg", "bg", "edge"], "task": "segmentation", "img_size": 32,
        "model": model.state_dict(),
    })
    return path, model


def test_export_onnx(checkpoint, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    path, model = checkpoint
    out = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(path), "--format", "onnx", "--out", str(out)]) == 0
    assert "max |onnx - pyseg|" in capsys.readouterr().out
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.rand(3, 3, 32, 32)
    (got,) = session.run(["logits"], {"images": x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), model(x), rtol=1e-4, atol=1e-5)


def test_export_torch_program(checkpoint, tmp_path):
    path, model = checkpoint
    out = tmp_path / "model.pt2"
    assert main(["export", "--checkpoint", str(path), "--format", "torch-export",
                 "--out", str(out), "--img-size", "48"]) == 0
    program = torch.export.load(str(out))
    x = torch.rand(1, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x), rtol=1e-5, atol=1e-6)


def test_missing_checkpoint_is_a_usage_error(tmp_path, capsys):
    code = main(["export", "--checkpoint", str(tmp_path / "none.pt"), "--format", "onnx",
                 "--out", str(tmp_path / "m.onnx")])
    assert code == 2
    assert "checkpoint not found" in capsys.readouterr().err
