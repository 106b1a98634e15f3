"""Turn a saved ``pyseg bench --json`` run into a Markdown section for RESULTS.md and,
optionally, re-draw its plot.

    pyseg bench --backward --json benchmarks/results.json --plot benchmarks/results.png
    python benchmarks/results_to_markdown.py benchmarks/results.json [--plot benchmarks/results.png]
"""

from __future__ import annotations

import argparse
import json
import sys

from pyseg import bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", help="a file written by pyseg bench --json")
    parser.add_argument("--plot", metavar="FILE", help="also write the ratio plot (PNG)")
    args = parser.parse_args(argv)
    with open(args.json) as f:
        data = json.load(f)
    if data.get("schema") != "pyseg-bench/1":
        print(f"{args.json}: not a pyseg bench result (schema {data.get('schema')!r})",
              file=sys.stderr)
        return 2
    print(bench.markdown(data))
    if args.plot and not bench.plot(args.plot, bench.results_from_json(data)):
        print("nothing was timed; no plot written", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
