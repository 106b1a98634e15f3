"""The ``pyseg`` command.

Each subcommand lives in its own module (listed in ``COMMANDS``) with ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Modules keep heavy imports inside
``run`` so that ``pyseg --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "info": "pyseg.commands.info",
    "bench": "pyseg.commands.bench",
    "list": "pyseg.commands.list",
    "train": "pyseg.commands.train",
    "predict": "pyseg.commands.predict",
    "evaluate": "pyseg.commands.evaluate",
    "explain": "pyseg.commands.explain",
    "export": "pyseg.commands.export",
}


class UsageError(Exception):
    """A problem with what the user asked for: printed as one line, exit code 2.

    ``main`` reports a :class:`pyseg.engine.CheckpointError` the same way, and an
    ``OSError`` (a full disk, say) as one line with exit code 1.
    """


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every subcommand added."""
    from pyseg._version import __version__

    parser = argparse.ArgumentParser(
        prog="pyseg",
        description="Segmentation kernels, models and explanations for PyTorch.",
    )
    parser.add_argument("--version", action="version", version=f"pyseg {__version__}")
    parser.add_argument(
        "--plugin", action="append", default=[], metavar="MODULE",
        help="load a plugin module by import path (repeatable); like PYSEG_PLUGINS",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _error(command: str, message: str, code: int) -> int:
    lines = message.strip().splitlines() or ["failed"]
    print(f"pyseg {command}: error: {lines[0]}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """Run the ``pyseg`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    if args.plugin:
        import os

        extra = ",".join(args.plugin)
        os.environ["PYSEG_PLUGINS"] = ",".join(filter(None, [os.environ.get("PYSEG_PLUGINS"), extra]))
    try:
        return int(args._run(args) or 0)
    except UsageError as e:
        return _error(args.command, str(e), 2)
    except OSError as e:  # a full disk, a folder that is not writable...
        where = f": {e.filename}" if e.filename else ""
        return _error(args.command, f"{e.strerror or e}{where}", 1)
    except ValueError as e:
        from pyseg.engine.checkpoint import CheckpointError

        if isinstance(e, CheckpointError):
            return _error(args.command, str(e), 2)
        raise
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
