"""``pyseg bench`` end to end: the --quick run, JSON, plot, a third-party plugin's case."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import pyseg.ops
from pyseg.cli import main

HERE = Path(__file__).parent
STATUSES = {"ok", "skipped", "refused", "error"}
BUILTIN_OPS = ("max_unpool2d", "conv_transpose2d", "interpolate", "deform_conv2d")


def _bench(tmp_path: Path, *args: str, env: dict | None = None,
           global_args: tuple[str, ...] = ()) -> tuple[dict, str]:
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    proc = subprocess.run(
        [sys.executable, "-m", "pyseg", *global_args, "bench", *args, "--json", str(out_json),
         "--plot", str(out_png)],
        capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})},
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out_json.read_text()), proc.stdout


def _check_schema(data: dict) -> None:
    assert data["schema"] == "pyseg-bench/1"
    for key in ("cpu", "threads", "torch", "pyseg"):
        assert data["machine"][key]
    assert data["results"]
    for r in data["results"]:
        assert r["status"] in STATUSES, r
        assert r["mode"] in ("fwd", "fwd+bwd")
        if r["status"] == "ok":
            for side in ("ours", "reference"):
                t = r[side]
                assert t["median_s"] > 0 and math.isfinite(t["median_s"])
                assert t["runs"] >= 1 and t["number_per_run"] >= 1
                assert t["peak_bytes"] is None or t["peak_bytes"] >= 0
            assert r["ratio"] == pytest.approx(r["ours"]["median_s"] / r["reference"]["median_s"])
        else:
            assert r["ours"] is None and r["reference"] is None and r["ratio"] is None
            assert r["reason"]


def test_quick_runs_and_writes_valid_json(tmp_path):
    data, stdout = _bench(tmp_path, "--quick", "--backward")
    _check_schema(data)
    assert data["command"][:3] == ["pyseg", "bench", "--quick"]
    assert data["settings"]["quick"] and data["settings"]["backward"]
    by_label = {}
    for r in data["results"]:
        by_label.setdefault(r["label"], []).append(r)
    assert set(BUILTIN_OPS) <= set(by_label)
    for op in BUILTIN_OPS:
        modes = {r["mode"] for r in by_label[op]}
        assert modes == {"fwd", "fwd+bwd"}
        for r in by_label[op]:
            if hasattr(pyseg.ops, op):
                # A built-in op must agree with its reference on the quick shapes.
                assert r["status"] == "ok", r
                assert r["sub_label"] in stdout
            else:
                assert r["status"] == "skipped"
                assert r["reason"] == f"unavailable (pyseg.ops.{op} missing)"
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("how", ["PYSEG_PLUGINS", "--plugin"])
def test_third_party_plugin_case_appears(tmp_path, how):
    from thirdparty_bench_plugin import CASE_NAME

    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
    global_args: tuple[str, ...] = ()
    if how == "PYSEG_PLUGINS":
        env["PYSEG_PLUGINS"] = "thirdparty_bench_plugin"
    else:
        global_args = ("--plugin", "thirdparty_bench_plugin")
    data, stdout = _bench(tmp_path, "--quick", CASE_NAME, env=env, global_args=global_args)
    _check_schema(data)
    [r] = data["results"]
    assert r["name"] == CASE_NAME and r["status"] == "ok"
    assert "scatter (1,4,8,8)->16x16" in stdout


def test_usage_errors(capsys):
    assert main(["bench", "no-such-op", "--list"]) == 2
    err = capsys.readouterr().err
    assert "no-such-op" in err and "max_unpool2d" in err
    assert main(["bench", "--threads", "0"]) == 2
    if not torch.cuda.is_available():
        assert main(["bench", "--device", "cuda", "--list"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err


def test_list_has_the_shapes_of_the_kernel_issues(capsys):
    assert main(["bench", "--list", "--backward"]) == 0
    out = capsys.readouterr().out
    for sub_label in [
        "(8,64,64,64)->128x128",
        "(8,64,64,64)->128x128 channels_last",
        "(8,128,64,64)->64ch k3,s2,p1,op1 ->128x128",
        "(8,256,25,25)->256ch k3,s1,p1 ->25x25 pets",
        "(8,256,25,25)->256ch k3,s2,p1,op1 ->50x50 pets",
        "(8,128,50,50)->128ch k3,s2,p1,op1 ->100x100 pets",
        "(8,64,100,100)->64ch k3,s2,p1,op1 ->200x200 pets",
        "bilinear (8,64,128,128) x2 channels_last",
        "bicubic (8,64,128,128) x2",
        "(4,64,64,64)->64ch 3x3 p1 mask",
        "(1,64,64,64)->64ch 3x3 p1 mask",
        "(4,256,64,64)->256ch 3x3 p1 mask",
    ]:
        assert f" {sub_label}\n" in out, sub_label
    assert "fwd+bwd" in out
