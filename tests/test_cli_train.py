"""`pyseg train`, `pyseg predict`, `pyseg evaluate` end to end (tiny sizes, a tiny model)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent / "engine"))

from pyseg.cli import main

TINY = ["--arch", "tinynet:TinyNet", "--arch-kwargs", '{"width": 4}', "--img-size", "32",
        "--epochs", "1", "--batch-size", "4", "--train-samples", "8", "--val-samples", "4",
        "--quiet"]

# The tiny model is an import path, so loading its checkpoints names it on purpose.
LOAD = ["--arch", "tinynet:TinyNet"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", *TINY, "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(n)  # module-scoped: must not leak into other modules' tests
    return out


def _images(folder: Path, n=2, size=(40, 30)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(
            folder / f"img{i}.jpg")
    return folder


def test_train_outputs(trained):
    for name in ("best.pt", "last.pt", "metrics.json", "metrics.jsonl", "loss.png",
                 "predictions.png"):
        assert (trained / name).is_file()
    assert "val_miou" in json.loads((trained / "metrics.json").read_text())


def test_predict_writes_trimaps_and_overlays(trained, tmp_path):
    imgs = _images(tmp_path / "in")
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(trained / "best.pt"), *LOAD, str(imgs),
                 "--out", str(out)]) == 0
    for i in range(2):
        with Image.open(out / f"img{i}_trimap.png") as im:  # class indices, VOC palette
            assert im.mode == "P" and im.getpalette()[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0]
            tri = np.asarray(im)
        assert tri.shape == (30, 40)
        assert set(np.unique(tri).tolist()) <= {0, 1, 2}
        ov = np.asarray(Image.open(out / f"img{i}_overlay.png"))
        assert ov.shape == (30, 40, 3)


def test_evaluate_prints_metrics(trained, tmp_path, capsys):
    dest = tmp_path / "m.json"
    assert main(["evaluate", "--checkpoint", str(trained / "best.pt"), *LOAD, "--val-samples",
                 "4", "--out", str(dest)]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m == json.loads(dest.read_text())
    assert 0.0 <= m["val_miou"] <= 1.0 and m["samples"] == 4


def _fails_cleanly(argv, capsys, out: Path | None = None, match: str = ""):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err
    if out is not None:
        assert not out.exists()


def test_predict_bad_inputs(trained, tmp_path, capsys):
    ck = str(trained / "best.pt")
    imgs = _images(tmp_path / "in")
    out = tmp_path / "out"
    _fails_cleanly(["predict", "--checkpoint", ck, str(imgs), "--out", str(out)], capsys, out,
                   "load it on purpose with --arch tinynet:TinyNet")
    predict = ["predict", "--checkpoint", ck, *LOAD]
    _fails_cleanly([*predict, str(tmp_path / "missing.jpg"), "--out", str(out)],
                   capsys, out, "no such file")
    (tmp_path / "empty").mkdir()
    _fails_cleanly([*predict, str(tmp_path / "empty"), "--out", str(out)], capsys, out,
                   "no images")
    (tmp_path / "notes.jpg").write_text("not an image")
    _fails_cleanly([*predict, str(imgs), str(tmp_path / "notes.jpg"), "--out", str(out)],
                   capsys, out, "notes.jpg")
    (tmp_path / "zero.png").write_bytes(b"")
    _fails_cleanly([*predict, str(tmp_path / "zero.png"), "--out", str(out)], capsys, out,
                   "empty")


def test_bad_checkpoints(trained, tmp_path, capsys):
    imgs = _images(tmp_path / "in")
    out = tmp_path / "out"
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes((trained / "best.pt").read_bytes()[:500])

    def predict(path, match):
        _fails_cleanly(["predict", "--checkpoint", str(path), *LOAD, str(imgs), "--out",
                        str(out)], capsys, out, match)

    predict(bad, "cannot read")
    _fails_cleanly(["evaluate", "--checkpoint", str(bad)], capsys, None, "cannot read")
    state = torch.load(trained / "best.pt", weights_only=True)
    other = dict(state, arch_kwargs={"width": 6})  # same architecture family, other shapes
    torch.save(other, tmp_path / "other.pt")
    predict(tmp_path / "other.pt", "do not fit")
    names = ["a", "b", "c", "d", "e"]
    torch.save(dict(state, num_classes=5, class_names=names), tmp_path / "classes.pt")
    predict(tmp_path / "classes.pt", "5 classes")
    torch.save(dict(state, arch="no-such-arch"), tmp_path / "arch.pt")
    _fails_cleanly(["predict", "--checkpoint", str(tmp_path / "arch.pt"), str(imgs), "--out",
                    str(out)], capsys, out, "no-such-arch")
    predict(tmp_path / "nope.pt", "not found")


def test_train_bad_arguments(tmp_path, capsys):
    out = tmp_path / "o"
    _fails_cleanly(["train", *TINY, "--data", str(tmp_path / "nowhere"), "--out", str(out)],
                   capsys, out, "no such folder")
    _fails_cleanly(["train", *TINY, "--epochs", "0", "--out", str(out)], capsys, out, "--epochs")
    _fails_cleanly(["train", *TINY, "--resume", "--out", str(out)], capsys, None, "resume")


def test_train_on_a_user_folder(tmp_path, capsys):
    root = tmp_path / "mine"
    (root / "images").mkdir(parents=True)
    (root / "annotations" / "trimaps").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(
            root / "images" / f"a{i}.jpg")
        Image.fromarray(rng.integers(1, 4, (24, 24), dtype=np.uint8)).save(
            root / "annotations" / "trimaps" / f"a{i}.png")
    out = tmp_path / "o"
    assert main(["train", *TINY, "--data", str(root), "--out", str(out)]) == 0
    assert (out / "best.pt").is_file()


def test_builtin_dataset_plugin():
    import pyseg_plugins.datasets as plug

    specs = {s.name: s for s in plug.pyseg_datasets()}
    assert {"synthetic-pets", "oxford-pets"} <= set(specs)
    ds = specs["synthetic-pets"].fn(split="val", img_size=32, length=2, task="classification")
    assert ds[0][1] in (0, 1) and list(specs["synthetic-pets"].class_names) == [
        "foreground", "background", "contour"]


def test_fixed_size_classifier_gets_its_input_size(tmp_path):
    """Without --img-size a classifier built for one input size trains at that size (the
    small convnet of the seeds needs 180x180; 64 would be too small for its valid convs)."""
    out = tmp_path / "cls"
    assert main(["train", "--arch", "small-convnet", "--epochs", "1", "--batch-size", "2",
                 "--train-samples", "2", "--val-samples", "2", "--quiet", "--out", str(out)]) == 0
    state = torch.load(out / "best.pt", weights_only=True)
    assert state["config"]["img_size"] == 180
    assert state["arch_kwargs"]["input_size"] == 180
