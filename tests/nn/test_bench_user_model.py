"""``pyseg bench --model``: the user's network as it is vs converted, end to end on tiny
networks and sizes (the timing itself is the harness's, tested in tests/bench)."""

from __future__ import annotations

import json

import pytest
import torch

from pyseg.bench import user_model
from pyseg.cli import main

QUICK = ["--quick", "--min-run-time", "0.001", "--no-memory", "--threads", "1"]


def test_import_path(tmp_path, capsys):
    out_json = tmp_path / "bench.json"
    code = main(["bench", "--model", "tests.nn.tiny_models:decoder", "--model-kwargs",
                 '{"classes": 4}', "--input", "2,3,16,16", *QUICK, "--json", str(out_json)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "converted      deconv: ConvTranspose2d -> ConvertedConvTranspose2d" in out
    assert "converted      up: Upsample -> ConvertedUpsample" in out
    # One forward and one training step: 2 transposed convolutions, 4 upsamplings (module
    # and function), 2 Lanczos interpolations left to torch.
    assert "conv_transpose2d: 2 call(s) to pyseg" in out
    assert "interpolate: 4 call(s) to pyseg" in out
    assert "interpolate: 2 call(s) to torch (mode='lanczos' on 4-D input" in out
    assert "decoder 2x3x16x16 float32 cpu" in out
    row = [line.split() for line in out.splitlines()
           if line.startswith("decoder 2x3x16x16 float32 cpu ")]  # the ratio table's row
    assert len(row) == 1 and len(row[0]) == 6, out
    fwd, train = float(row[0][4]), float(row[0][5])
    assert fwd > 0 and train > 0
    data = json.loads(out_json.read_text())
    assert [r["name"] for r in data["results"]] == ["model/decoder/fwd", "model/decoder/train"]
    assert all(r["status"] == "ok" for r in data["results"])
    assert data["settings"]["model"] == "tests.nn.tiny_models:decoder"


def test_registered_architecture(capsys):
    pytest.importorskip("pyseg_plugins")  # installed with pyseg (setup.py); not in a bare tree
    # The registered U-Net built with torch's and torchvision's modules (torch_twin), then
    # converted: its transposed convolutions and deformable convolutions go to pyseg.
    code = main(["bench", "--model", "unet", "--model-kwargs",
                 '{"base_channels": 4, "depth": 2, "deformable": true}', "--input",
                 "2,3,16,16", *QUICK])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "ConvTranspose2d -> ConvertedConvTranspose2d" in out
    assert "deform_conv2d: " in out and "call(s) to pyseg" in out


def test_agreement_is_measured():
    setup = user_model.from_args("tests.nn.tiny_models:decoder", input_shape="2,3,8,8")
    found = user_model.check(setup, "cpu", torch.float64)
    assert found.output_diff < 1e-12 and found.gradient_diff < 1e-12
    assert found.stats.to_pyseg == {"conv_transpose2d": 2, "interpolate": 4}


@pytest.mark.parametrize("argv,match", [
    (["--model", "no_such_module_xyz:f"], "--model no_such_module_xyz:f: cannot import"),
    (["--model", "tests.nn.tiny_models:nope"], "has no callable 'nope'"),
    (["--model", "no-such-arch"], "--model: unknown architecture 'no-such-arch'"),
    (["--model", "unet", "--model-kwargs", "{"], "--model-kwargs must be a JSON object"),
    (["--model", "unet", "--model-kwargs", "[1]"], "--model-kwargs must be a JSON object"),
    (["--model", "unet", "--input", "1,3,16"], "--input must be N,C,H,W"),
    (["--model", "unet", "--input", "1,3,0,16"], "--input must be N,C,H,W"),
])
def test_user_errors(argv, match, capsys):
    assert main(["bench", *argv, *QUICK]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err


def test_factory_returning_something_else(capsys):
    assert main(["bench", "--model", "tests.nn.tiny_models:not_a_module", *QUICK]) == 1
    captured = capsys.readouterr()
    assert "not an nn.Module" in captured.out + captured.err
