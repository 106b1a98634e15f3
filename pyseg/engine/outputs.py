"""Output files: checked before the work, JSON that any parser reads, written atomically."""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _existing_ancestor(path: Path) -> Path:
    """The nearest of ``path`` and its parents that exists."""
    for p in (path, *path.parents):
        if p.exists():
            return p
    return Path(".")


def check_output_dir(path: str | os.PathLike, flag: str = "--out") -> None:
    """Raise ``ValueError`` (one line) unless ``path`` is, or can be made as, a writable
    folder. Nothing is created: a run that fails later leaves no empty folder behind."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} is a file, not a folder")
    base = _existing_ancestor(path)
    if not base.is_dir():
        raise ValueError(f"{flag} {path}: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: folder {base} is not writable")


def check_output_file(path: str | os.PathLike, flag: str = "--out") -> None:
    """Raise ``ValueError`` (one line) unless ``path`` can be written as a file in an
    existing folder."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder, not a file")
    parent = path.parent
    if not parent.is_dir():
        raise ValueError(f"{flag} {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: folder {parent} is not writable")


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def to_json(value: Any, **kwargs: Any) -> str:
    """Strict JSON text of ``value`` (non-finite floats become null)."""
    return json.dumps(json_safe(value), allow_nan=False, **kwargs)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` (``.<name><suffix>``) to write to: renamed over
    ``path`` when the block ends, removed if it raises. Readers see the old file or the new
    one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
