"""Options and argument checks shared by the commands: each failure is a one-line
``UsageError``."""

from __future__ import annotations

import argparse

from pyseg.cli import UsageError


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device``: any torch device string (checked by :func:`device` when the command runs)."""
    parser.add_argument("--device", default="cpu", metavar="DEVICE",
                        help="torch device: cpu, cuda, cuda:1, mps... (default: cpu)")


def add_arch_argument(parser: argparse.ArgumentParser) -> None:
    """``--arch`` of the commands that load a checkpoint (passed to ``load_model(arch=)``)."""
    parser.add_argument("--arch", default=None, metavar="NAME|MODULE:FACTORY",
                        help="build this architecture instead of the checkpoint's (the way to "
                             "load a model whose architecture is an import path)")


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
