"""Checkpoints: plain dicts of tensors and primitives, written atomically, read back as data.

A checkpoint is a file, and a file never runs code. Reading one:

* ``torch.load(..., weights_only=True)`` only: tensors and primitives, no pickled objects;
* only a regular file is opened (a FIFO or a device would hang or never end);
* every field is checked (types, and sizes against sane bounds) before anything is built;
* the architecture must be a registered name: an import path (``"module:factory"``) in a
  file is refused, since importing it would run code the file chose. Such a model is loaded
  on purpose by naming the architecture yourself (``--arch module:factory`` on the command
  line, ``load_model(path, arch=...)`` in Python);
* the network is first built on the ``meta`` device (no memory) and its parameter shapes
  compared with the stored weights, so that sizes in ``arch_kwargs`` cannot make it
  allocate more than the file holds.

Every problem raises :class:`CheckpointError` with a one-line message.
"""

from __future__ import annotations

import os
import pickle
import re
import stat
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from pyseg.engine.models import build_model

FORMAT = "pyseg-checkpoint-1"
REQUIRED_KEYS = ("format", "arch", "arch_kwargs", "num_classes", "class_names", "task",
                 "img_size", "model")
TASKS = ("segmentation", "classification")

# Bounds on sizes read from a file (the evaluation's confusion matrix is classes^2 int64,
# an input image img_size^2 x in_channels floats).
MAX_CLASSES = 4096
MAX_IMG_SIZE = 4096
MAX_IN_CHANNELS = 64
MAX_NAME_LENGTH = 256
MAX_SAMPLES = 1_000_000  # synthetic images per split named in a checkpoint's configuration

# What load_model hands back besides the model: everything but the tensors of training.
_TRAINING_KEYS = ("model", "optimizer", "rng_state")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (missing, unreadable, corrupt, not ours, refused).

    A ``ValueError`` with a one-line message that names the file.

    Example::

        >>> from pyseg.engine import CheckpointError, load_checkpoint
        >>> try:
        ...     load_checkpoint("no/such/file.pt")
        ... except CheckpointError as e:
        ...     print(e)
        checkpoint not found: no/such/file.pt
    """


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: a temp file in the same directory, then rename.

    A crash leaves either the previous file or the new one, never a half-written file. An
    ``OSError`` (e.g. a full disk) names ``path``. Missing parent directories are made.

    Example: a checkpoint :func:`load_model` can read back::

        >>> import os, tempfile
        >>> from pyseg.engine import load_model, save_checkpoint
        >>> from pyseg.engine.checkpoint import model_fields
        >>> net = pyseg.create_model("unet", num_classes=2, base_channels=4, depth=2)
        >>> path = os.path.join(tempfile.mkdtemp(), "run", "unet.pt")
        >>> save_checkpoint(path, model_fields(
        ...     arch="unet", arch_kwargs={"base_channels": 4, "depth": 2},
        ...     class_names=["bg", "cat"], task="segmentation", img_size=32,
        ...     weights=net.state_dict()))
        >>> model, fields = load_model(path)
        >>> fields["class_names"], model.training
        (['bg', 'cat'], False)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError) and not e.filename:
            raise OSError(e.errno, e.strerror or str(e), str(path)) from None
        raise


def model_fields(*, arch: str, arch_kwargs: dict, class_names, task: str, img_size: int,
                 weights: dict[str, torch.Tensor], in_channels: int = 3) -> dict[str, Any]:
    """The fields every checkpoint has: enough for :func:`load_model` to rebuild the model.
    ``pyseg train`` adds the optimizer, history and configuration."""
    return {
        "format": FORMAT,
        "arch": arch,
        "arch_kwargs": dict(arch_kwargs),
        "num_classes": len(class_names),
        "class_names": list(class_names),
        "task": task,
        "img_size": int(img_size),
        "in_channels": int(in_channels),
        "model": weights,
    }


def open_regular_file(path: Path, error: type[Exception], name: str) -> BinaryIO:
    """``path`` opened for binary reading, refusing anything but a regular file (a FIFO or a
    device would block or never end): ``error`` naming ``name`` when it is missing, cannot be
    opened or is not a regular file. Shared by every loader of a user's file."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise error(f"{name} not found: {path}") from None
    except OSError as e:
        raise error(f"cannot open {name} {path}: {e.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise error(f"{name} {path} is not a regular file")
    return os.fdopen(fd, "rb")


def _read(path: Path, map_location) -> Any:
    """``torch.load(weights_only=True)`` of a regular file, opened without blocking."""
    with open_regular_file(path, CheckpointError, "checkpoint") as f:
        try:
            return torch.load(f, map_location=map_location, weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch raises many types for damaged files
            raise CheckpointError(f"cannot read checkpoint {path}: {load_failure(e)}") from None


def load_failure(e: Exception) -> str:
    """One line on why ``torch.load(weights_only=True)`` failed (torch's own message for a
    pickled object is many lines long and suggests turning the protection off)."""
    text = str(e).strip()
    if isinstance(e, pickle.UnpicklingError) and "Weights only load failed" in text:
        found = re.search(r"GLOBAL ([\w.]+)", text)
        return ("it holds pickled Python objects, which could run code, not only tensors and "
                "plain values" + (f" (here {found.group(1)})" if found else ""))
    return text.splitlines()[0] if text else type(e).__name__


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _plain(v: Any) -> bool:
    """A JSON-like value: what an architecture's keyword arguments may be."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return True
    if isinstance(v, (list, tuple)):
        return all(_plain(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _plain(x) for k, x in v.items())
    return False


def _validate(state: Any, path: Path) -> None:
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a pyseg checkpoint")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}")

    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {path}: {what}")

    arch = state["arch"]
    if not isinstance(arch, str) or not 0 < len(arch) <= MAX_NAME_LENGTH:
        raise bad("arch must be an architecture name")
    if not isinstance(state["arch_kwargs"], dict) or not _plain(state["arch_kwargs"]):
        raise bad("arch_kwargs must be a dict of plain values")
    n = state["num_classes"]
    if not _is_int(n) or not 1 <= n <= MAX_CLASSES:
        raise bad(f"num_classes must be an integer in [1, {MAX_CLASSES}], got {n!r}")
    names = state["class_names"]
    if (not isinstance(names, (list, tuple)) or len(names) != n
            or not all(isinstance(s, str) and len(s) <= MAX_NAME_LENGTH for s in names)):
        raise bad(f"class_names must be {n} names")
    if state["task"] not in TASKS:
        raise bad(f"task must be one of {', '.join(TASKS)}, got {state['task']!r}")
    size = state["img_size"]
    if not _is_int(size) or not 1 <= size <= MAX_IMG_SIZE:
        raise bad(f"img_size must be an integer in [1, {MAX_IMG_SIZE}], got {size!r}")
    channels = state.get("in_channels", 3)
    if not _is_int(channels) or not 1 <= channels <= MAX_IN_CHANNELS:
        raise bad(f"in_channels must be an integer in [1, {MAX_IN_CHANNELS}], got {channels!r}")
    weights = state["model"]
    if not isinstance(weights, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()):
        raise bad("model must be a dict of tensors")
    if "epoch" in state and (not _is_int(state["epoch"]) or state["epoch"] < 0):
        raise bad(f"epoch must be a non-negative integer, got {state['epoch']!r}")
    for key in ("config", "metrics"):
        if key in state and not isinstance(state[key], dict):
            raise bad(f"{key} must be a dict")
    _validate_config(state.get("config", {}), bad)
    if "history" in state and not (isinstance(state["history"], list)
                                   and all(isinstance(h, dict) for h in state["history"])):
        raise bad("history must be a list of dicts")


def _validate_config(config: dict, bad) -> None:
    """The training settings that evaluation reuses (dataset, seed, sizes)."""
    if not isinstance(config.get("data", ""), str):
        raise bad("config.data must be a dataset name or folder")
    for key in ("seed", "ignore_index"):
        if key in config and not _is_int(config[key]):
            raise bad(f"config.{key} must be an integer, got {config[key]!r}")
    for key in ("train_samples", "val_samples"):
        n = config.get(key)
        if n is not None and (not _is_int(n) or not 1 <= n <= MAX_SAMPLES):
            raise bad(f"config.{key} must be an integer in [1, {MAX_SAMPLES}], got {n!r}")
    for key in ("batch_size", "accumulate", "world_size"):  # resuming multiplies them
        n = config.get(key, 1)
        if not _is_int(n) or not 1 <= n <= MAX_SAMPLES:
            raise bad(f"config.{key} must be an integer in [1, {MAX_SAMPLES}], got {n!r}")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """The checked dict stored at ``path`` (no code runs, nothing is built), its tensors
    on ``map_location``.

    Raises :class:`CheckpointError` for a missing, unreadable or malformed file.

    Example::

        >>> import os, tempfile
        >>> from pyseg.engine import CheckpointError, load_checkpoint
        >>> path = os.path.join(tempfile.mkdtemp(), "notes.pt")
        >>> torch.save({"hello": 1}, path)
        >>> try:
        ...     load_checkpoint(path)
        ... except CheckpointError as e:
        ...     print("refused")
        refused
    """
    path = Path(path)
    state = _read(path, map_location)
    _validate(state, path)
    return state


def _first_mismatch(model: nn.Module, weights: dict[str, torch.Tensor]) -> str | None:
    """A description of the first difference between the model's and the stored tensors."""
    expected = model.state_dict()
    missing = sorted(expected.keys() - weights.keys())
    if missing:
        return f"missing {missing[0]}"
    unexpected = sorted(weights.keys() - expected.keys())
    if unexpected:
        return f"unexpected {unexpected[0]}"
    for key, t in expected.items():
        if t.shape != weights[key].shape:
            return (f"{key} is {list(weights[key].shape)} in the file, "
                    f"{list(t.shape)} in the model")
    return None


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu",
               arch: str | None = None) -> tuple[nn.Module, dict]:
    """Rebuild the model stored at ``path``; returns ``(model in eval mode, fields)``.

    ``fields`` is the checkpoint without its tensors (``arch``, ``class_names``, ``task``,
    ``img_size``, ``config``, ``metrics``...). ``arch`` overrides the checkpoint's
    architecture: the way to load, on purpose, a model whose architecture is an import path
    (``"package.module:factory"``), which is never imported because a file says so.

    The model is moved to ``device``. Raises :class:`CheckpointError` with one line when
    the file cannot be used (missing, malformed, weights that do not fit, an import path
    without ``arch``).

    Example: see :func:`save_checkpoint` for one written and loaded back; a file that is not
    a checkpoint::

        >>> import os, tempfile
        >>> from pyseg.engine import load_model
        >>> path = os.path.join(tempfile.mkdtemp(), "empty.pt")
        >>> open(path, "wb").close()
        >>> load_model(path)
        Traceback (most recent call last):
        ...
        pyseg.engine.checkpoint.CheckpointError: cannot read checkpoint ...
    """
    path = Path(path)
    state = load_checkpoint(path)
    name = arch or state["arch"]
    if arch is None and ":" in name:
        raise CheckpointError(
            f"checkpoint {path} names architecture {name!r}, an import path: a checkpoint "
            f"only names registered architectures, and nothing is imported from a file. If "
            f"you trust that code, load it on purpose with --arch {name} "
            f"(Python: load_model(path, arch={name!r}))")
    num_classes = state["num_classes"]
    in_channels = state.get("in_channels", 3)
    kwargs = state["arch_kwargs"]
    weights = state["model"]

    def build() -> nn.Module:
        return build_model(name, num_classes, kwargs, in_channels=in_channels)

    def does_not_fit(detail: str) -> CheckpointError:
        return CheckpointError(f"{path}: weights do not fit architecture {name!r} with "
                               f"{num_classes} classes ({detail})")

    try:
        with torch.device("meta"):
            skeleton = build()
    except (ValueError, TypeError) as e:  # unknown name, keyword it does not take
        raise CheckpointError(f"{path}: cannot build architecture {name!r}: {e}") from None
    except Exception:  # noqa: BLE001 - a factory that cannot run on meta: checked below
        skeleton = None
    if skeleton is not None:
        mismatch = _first_mismatch(skeleton, weights)
        if mismatch:
            raise does_not_fit(mismatch)
    try:
        model = build()
    except Exception as e:  # noqa: BLE001 - any failure of the factory is reported
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{path}: cannot build architecture {name!r}: {first}") from None
    try:
        model.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise does_not_fit(first) from None
    fields = {k: v for k, v in state.items() if k not in _TRAINING_KEYS}
    return model.to(device).eval(), fields
