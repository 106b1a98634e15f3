"""Argument checks shared by the commands: each failure is a one-line ``UsageError``."""

from __future__ import annotations

from pyseg.cli import UsageError


def check_range(flag: str, value: int | None, low: int = 1, high: int | None = None) -> None:
    """``flag``'s ``value`` (when given) is in ``[low, high]``."""
    if value is None:
        return
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise UsageError(f"{flag} must be {bounds}, got {value}")


def check_img_size(flag: str, value: int | None) -> None:
    """An input size that the networks can take and that fits in memory."""
    from pyseg.engine.checkpoint import MAX_IMG_SIZE

    check_range(flag, value, 16, MAX_IMG_SIZE)


def device(name: str):
    """The torch device ``--device`` names, checked to exist on this machine."""
    from pyseg.engine.devices import resolve_device

    try:
        return resolve_device(name)
    except ValueError as e:
        raise UsageError(str(e)) from None


def output_dir(path: str, flag: str = "--out") -> None:
    """``path`` is, or can be created as, a writable folder (checked before any work)."""
    from pyseg.engine.outputs import check_output_dir

    try:
        check_output_dir(path, flag)
    except ValueError as e:
        raise UsageError(str(e)) from None


def output_file(path: str, flag: str = "--out") -> None:
    """``path`` can be written as a file in an existing folder (checked before any work)."""
    from pyseg.engine.outputs import check_output_file

    try:
        check_output_file(path, flag)
    except ValueError as e:
        raise UsageError(str(e)) from None
