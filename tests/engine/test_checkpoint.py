"""The one checkpoint loader: a file is data, never code, and its sizes are checked."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import torch

import pyseg

sys.path.insert(0, str(Path(__file__).parent))
from tinynet import TinyNet

from pyseg.engine import CheckpointError, load_checkpoint, load_model, save_checkpoint
from pyseg.engine.checkpoint import model_fields

UNET_KWARGS = {"base_channels": 4, "depth": 2}


def _unet_state(**override):
    """A checkpoint of a small registered U-Net, with fields replaced by ``override``."""
    torch.manual_seed(0)
    net = pyseg.create_model("unet", num_classes=3, **UNET_KWARGS)
    state = model_fields(arch="unet", arch_kwargs=UNET_KWARGS,
                         class_names=["foreground", "background", "contour"],
                         task="segmentation", img_size=32, weights=net.state_dict())
    state.update(override)
    return state, net


class WritesMarker:
    """Unpickling this runs ``os.system`` (what a malicious checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo PWNED > {self.marker}",))


def test_registered_architecture_round_trip(tmp_path):
    state, net = _unet_state()
    save_checkpoint(tmp_path / "c.pt", state)
    model, fields = load_model(tmp_path / "c.pt")
    assert type(model) is type(net) and not model.training
    for k, v in net.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert fields["arch"] == "unet" and fields["img_size"] == 32 and "model" not in fields


def test_pickled_code_does_not_run(tmp_path):
    marker = tmp_path / "pwned.txt"
    state, _ = _unet_state()
    path = tmp_path / "evil.pt"
    torch.save({**state, "extra": WritesMarker(marker)}, path)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_model(path)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(path)
    assert not marker.exists()


def test_pickled_module_is_refused(tmp_path):
    path = tmp_path / "module.pt"
    torch.save(TinyNet(width=4), path)  # a whole nn.Module: loading it means unpickling code
    with pytest.raises(CheckpointError, match="cannot read"):
        load_model(path)


def _hub_repo(tmp_path: Path) -> tuple[Path, Path]:
    """A torch.hub repository whose hubconf.py writes a marker when imported."""
    repo = tmp_path / "repo"
    repo.mkdir()
    marker = tmp_path / "hub-ran.txt"
    (repo / "hubconf.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "def m(**kw):\n    raise SystemExit('should never be called')\n")
    return repo, marker


def test_import_path_in_a_file_is_never_imported(tmp_path, monkeypatch):
    repo, hub_marker = _hub_repo(tmp_path)
    module_marker = tmp_path / "module-ran.txt"
    (tmp_path / "evil_arch_mod.py").write_text(
        f"open({str(module_marker)!r}, 'w').write('ran')\n"
        "def factory(**kw):\n    raise SystemExit('should never be called')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    state, _ = _unet_state()
    cases = {
        "torch.hub:load": {"repo_or_dir": str(repo), "model": "m", "source": "local"},
        "os:system": {},
        "evil_arch_mod:factory": {},
    }
    for arch, kwargs in cases.items():
        path = tmp_path / "c.pt"
        save_checkpoint(path, {**state, "arch": arch, "arch_kwargs": kwargs})
        with pytest.raises(CheckpointError, match=f"on purpose with --arch {arch}"):
            load_model(path)
    assert not hub_marker.exists() and not module_marker.exists()
    assert "evil_arch_mod" not in sys.modules


def test_import_path_given_by_the_caller_is_used(tmp_path):
    torch.manual_seed(0)
    net = TinyNet(width=4)
    state = model_fields(arch="tinynet:TinyNet", arch_kwargs={"width": 4},
                         class_names=["a", "b", "c"], task="segmentation", img_size=32,
                         weights=net.state_dict())
    save_checkpoint(tmp_path / "c.pt", state)
    with pytest.raises(CheckpointError, match="import path"):
        load_model(tmp_path / "c.pt")
    model, _ = load_model(tmp_path / "c.pt", arch="tinynet:TinyNet")
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(model(x), net.eval()(x))


@pytest.mark.parametrize("override, match", [
    ({"img_size": 100_000}, "img_size must be an integer in"),
    ({"img_size": -8}, "img_size"),
    ({"img_size": 32.5}, "img_size"),
    ({"num_classes": 10**9}, "num_classes"),
    ({"num_classes": True}, "num_classes"),
    ({"class_names": ["a", "b"]}, "class_names must be 3 names"),
    ({"in_channels": 10**6}, "in_channels"),
    ({"task": "detection"}, "task"),
    ({"arch": 7}, "arch must be"),
    ({"arch_kwargs": [1, 2]}, "arch_kwargs"),
    ({"arch_kwargs": {"base_channels": torch.zeros(3)}}, "plain values"),
    ({"model": {"w": 3}}, "dict of tensors"),
    ({"epoch": -1}, "epoch"),
    ({"config": {"val_samples": 10**12}}, "val_samples"),
    ({"config": {"data": 5}}, "config.data"),
    ({"config": {"accumulate": "2"}}, "config.accumulate"),
    ({"config": {"world_size": 0}}, "config.world_size"),
    ({"history": [1, 2]}, "history"),
])
def test_fields_are_checked(tmp_path, override, match):
    state, _ = _unet_state(**override)
    save_checkpoint(tmp_path / "c.pt", state)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(tmp_path / "c.pt")


def test_sizes_in_arch_kwargs_allocate_nothing(tmp_path):
    # A U-Net this wide would need terabytes: the shapes are compared on the meta device
    # with the stored weights before anything real is built.
    state, _ = _unet_state(arch_kwargs={"base_channels": 10**6, "depth": 2})
    save_checkpoint(tmp_path / "c.pt", state)
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(tmp_path / "c.pt")
    assert time.perf_counter() - t0 < 30


def test_unknown_architecture_and_bad_keyword(tmp_path):
    state, _ = _unet_state(arch="no-such-arch")
    save_checkpoint(tmp_path / "a.pt", state)
    with pytest.raises(CheckpointError, match="no-such-arch"):
        load_model(tmp_path / "a.pt")
    state, _ = _unet_state(arch_kwargs={"colour": "red"})
    save_checkpoint(tmp_path / "k.pt", state)
    with pytest.raises(CheckpointError, match="colour"):
        load_model(tmp_path / "k.pt")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_only_regular_files_are_opened(tmp_path):
    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)  # opening it for reading would block until a writer comes
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_checkpoint(fifo)
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_checkpoint(tmp_path)


def test_disk_full_names_the_file(tmp_path, monkeypatch):
    import errno

    from pyseg.engine import checkpoint

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    with pytest.raises(OSError, match="No space left") as info:
        save_checkpoint(tmp_path / "c.pt", {"format": "x"})
    assert info.value.filename == str(tmp_path / "c.pt")
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone too
