"""Seconds per training epoch: one process on every core vs torchrun with one process per core.

    python benchmarks/train_scaling.py [--train-samples 256] [--epochs 2] [--out /tmp/scaling]

Both runs train the default U-Net (base 16, depth 3) on the same synthetic images with the
same effective batch (16 = one process x 16 = two processes x 8), and the time of their last
epoch is compared (the first pays for rendering and caching the images). Prints the machine
(CPU model, capability, torch version, load average) and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from pyseg.bench.report import cpu_model


def _last_epoch_seconds(out: Path) -> float:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return json.loads(lines[-1])["seconds"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-samples", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", default="/tmp/pyseg-train-scaling")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    common = ["train", "--train-samples", str(args.train_samples), "--val-samples", "64",
              "--epochs", str(args.epochs), "--quiet", "--overwrite"]
    runs = {
        f"1 process x {cores} threads, batch {8 * cores}":
            [sys.executable, "-m", "pyseg", *common, "--threads", str(cores),
             "--batch-size", str(8 * cores)],
        f"{cores} processes x 1 thread, batch 8 each":
            [sys.executable, "-m", "torch.distributed.run", "--standalone",
             "--nproc-per-node", str(cores), "-m", "pyseg", *common, "--threads", "1",
             "--batch-size", "8"],
    }
    print(f"CPU: {cpu_model()}, {cores} cores, capability "
          f"{torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}")
    print(f"load average before: {os.getloadavg()}")
    rows = []
    for i, (name, argv) in enumerate(runs.items()):
        out = Path(args.out) / f"run{i}"
        subprocess.run([*argv, "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
        rows.append((name, _last_epoch_seconds(out)))
    print(f"load average after: {os.getloadavg()}")
    print("\n| run | s / epoch | ratio |\n| --- | ---: | ---: |")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.1f} | {seconds / rows[0][1]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
