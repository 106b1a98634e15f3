"""``pyseg info``: how this copy was built and what it can use."""

from __future__ import annotations

import argparse
import json

HELP = "show the version, build (CUDA, emulator) and runtime facts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``pyseg info`` to ``parser`` (the CLI calls this)."""
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args: argparse.Namespace) -> int:
    """Carry out ``pyseg info`` with the parsed ``args``; returns the exit status."""
    import pyseg

    facts = pyseg.info()
    if args.json:
        print(json.dumps(facts, indent=2))
    else:
        width = max(map(len, facts))
        for key, value in facts.items():
            if isinstance(value, list):
                value = ";".join(value) or "-"
            print(f"{key:<{width}}  {value}")
    return 0
