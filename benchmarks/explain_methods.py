"""Every explanation method on small networks trained on synthetic pets: faithfulness metrics
(deletion and insertion areas, ROAD), the pointing game, and the time per image.

Trains a classifier (cat vs dog) of benchmarks/pointing_game.py -- ``--arch`` ``gapnet`` (its
GAP + linear convnet), or the built-in ``small-convnet`` or ``mini-xception`` -- on the
synthetic pets whose species cues lie on the animal (``--cues body``, default; ``shape`` for
the original generator) or, with ``--task segmentation``, its small U-Net on the trimaps
(target: the foreground class over the pixels predicted as foreground), then explains
``--test`` held-out images with each method and scores the maps with
:mod:`pyseg.interpret.metrics` (deletion and insertion areas, ROAD, pointing game).

    python benchmarks/explain_methods.py [--arch mini-xception --layer blocks.3 --test 50]
    python benchmarks/explain_methods.py --arch small-convnet --size 96 --layer features.7
    python benchmarks/explain_methods.py --task segmentation [--train 512 --epochs 6]
    python benchmarks/explain_methods.py --train 64 --epochs 1 --size 32 --test 2   # smoke run
    python benchmarks/explain_methods.py --arch mini-xception --checkpoint mx.pt   # train once

``--checkpoint FILE`` loads the trained weights from FILE when it exists, else trains and
saves them there (pointing_game.py writes the same files).

Prints a markdown table (``--markdown FILE`` also appends it, with the command line, the
CPU, torch's CPU capability and the load average, to FILE, e.g. benchmarks/RESULTS.md).
Times are those of this machine at that load.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pointing_game import DEFAULT_TRANSLATE, classifier, load_split, small_unet, train

from pyseg.interpret import InterpretError
from pyseg.interpret.metrics import faithfulness

METHODS = ("gradcam", "gradcam++", "layercam", "hirescam", "xgradcam", "eigencam", "scorecam",
           "ablationcam", "cam", "excitation-backprop", "hide-and-seek", "rise")


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def run(model, x, y, masks, methods, samples: int, steps: int,
        layer: str | None = None, rise_normalization: str = "mask_sum") -> list[dict]:
    """One row per method: mean metrics over the images and seconds per image (the map only;
    the metrics' own time is not counted). A method that refuses the model is left out.
    ``layer`` goes to the methods that take one (CAM excepted: it needs the pooled
    features). ``rise_normalization``: RISE's ``normalization`` (``"mask_sum"`` or ``"p"``)."""
    import pyseg
    from pyseg import registry

    rows = []
    for name in methods:
        interp = pyseg.get_interpreter(name)
        opts: dict = {"num_samples": samples} if name in ("rise", "hide-and-seek") else {}
        if name == "rise":
            opts["normalization"] = rise_normalization
        if layer is not None and registry.get_interpreter(name).takes_layer and name != "cam":
            opts["layer"] = layer
        sums: dict[str, float] = {}
        seconds = 0.0
        try:
            for i in range(len(x)):
                xi = x[i:i + 1]
                target = 0 if y is None else y[i:i + 1]
                t0 = time.perf_counter()
                heat = interp(model, xi, target=target, **opts)
                seconds += time.perf_counter() - t0
                scores = faithfulness(model, xi, heat, target, steps=steps,
                                      object_mask=masks[i:i + 1])
                for k, v in scores.items():
                    sums[k] = sums.get(k, 0.0) + float(v[0])
        except InterpretError as e:
            print(f"{name}: skipped ({e})", file=sys.stderr)
            continue
        rows.append({"method": name, **{k: v / len(x) for k, v in sums.items()},
                     "seconds": seconds / len(x)})
    return rows


def table(rows: list[dict]) -> str:
    keys = ["deletion", "insertion", "road", "pointing"]
    lines = [("| method | deletion (lower) | insertion (higher) | ROAD (higher) | pointing | "
              "ms per image |"), "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        vals = " | ".join(f"{r[k]:.3f}" for k in keys)
        lines.append(f"| {r['method']} | {vals} | {1000 * r['seconds']:.1f} |")
    return "\n".join(lines)


SECTION = "## Explanation methods (`benchmarks/explain_methods.py`)"


def write_markdown(path: Path, heading: str, body: str) -> None:
    """Put ``heading`` + ``body`` into the file's :data:`SECTION` (added at the end when
    missing), replacing the block an earlier run wrote under the same heading (a block ends
    at the next ``####`` or ``##`` heading)."""
    text = path.read_text() if path.exists() else ""
    lines = text.splitlines()
    if SECTION not in lines:
        lines += ["", SECTION]
    start = lines.index(SECTION) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    block = ["", heading, "", *body.rstrip("\n").splitlines()]
    if heading in lines[start:end]:
        first = lines.index(heading, start)
        last = next((i for i in range(first + 1, end) if lines[i].startswith(("## ", "#### "))),
                    end)
        while first > start and not lines[first - 1].strip():
            first -= 1
        lines[first:last] = block + ([""] if last < len(lines) else [])
    else:
        while end > start and not lines[end - 1].strip():
            end -= 1
        lines[end:end] = block + ([""] if end < len(lines) else [])
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", choices=("classification", "segmentation"),
                   default="classification")
    p.add_argument("--arch", default="gapnet",
                   help="classifier: gapnet (default), small-convnet or mini-xception")
    p.add_argument("--cues", choices=("body", "shape"), default="body",
                   help="synthetic generator (default body: the species cues on the animal)")
    p.add_argument("--layer", default=None, help="layer of the layer-taking methods")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--train", type=int, default=1024)
    p.add_argument("--test", type=int, default=50)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--samples", type=int, default=1000, help="RISE / hide-and-seek masks")
    p.add_argument("--steps", type=int, default=32, help="deletion / insertion steps")
    p.add_argument("--rise-normalization", choices=("mask_sum", "p"), default="mask_sum",
                   help="RISE: divide by each pixel's mask sum (default) or by samples x p")
    p.add_argument("--translate", type=float, default=None,
                   help="training augmentation: largest random shift, fraction of the side "
                        "(default as in pointing_game.py: 0.125 for the registered "
                        "classifiers, else 0)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--checkpoint", type=Path, default=None, metavar="FILE",
                   help="load the weights from FILE if it exists (no training), else train "
                        "and save them there (the same network as pointing_game.py "
                        "--checkpoint with the same --arch, --size and --width)")
    p.add_argument("--markdown", type=Path, default=None, metavar="FILE",
                   help="append the table, the command and the CPU to FILE")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    seg = args.task == "segmentation"
    if args.translate is None:
        args.translate = 0.0 if seg else DEFAULT_TRANSLATE.get(args.arch, 0.0)
    model = small_unet(args.width) if seg else classifier(args.arch, args.size, args.width)
    trained = args.checkpoint is not None and args.checkpoint.exists()
    xte, yte, mte = load_split("test", args.test, args.size, trimaps=seg, cues=args.cues)
    load_start = os.getloadavg()
    if trained:
        model.load_state_dict(torch.load(args.checkpoint, weights_only=True))
        model.eval()
        how = f"weights from {args.checkpoint}"
    else:
        xtr, ytr, _ = load_split("train", args.train, args.size, trimaps=seg, cues=args.cues)
        t0 = time.perf_counter()
        train(model, xtr, ytr, args.epochs, lr=args.lr, seed=args.seed,
              translate=args.translate)
        how = (f"{args.train} training images x {args.epochs} epochs at {args.size}px "
               f"({time.perf_counter() - t0:.0f} s)")
        if args.checkpoint is not None:
            torch.save(model.state_dict(), args.checkpoint)
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte).float().mean().item()
    rows = run(model, xte, None if seg else yte, mte, args.methods.split(","), args.samples,
               args.steps, args.layer, args.rise_normalization)
    load_end = os.getloadavg()
    net = f"u-net (base {args.width}, depth 2)" if seg else args.arch
    head = (f"{args.task}, {net}, cues={args.cues}: {how}, test "
            f"{'pixel ' if seg else ''}accuracy {acc:.3f} on {args.test} images; layer "
            f"{args.layer or 'default'}; {_cpu()}, torch capability "
            f"{torch.backends.cpu.get_cpu_capability()}, {args.threads} threads, load average "
            f"{load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end (a shared machine: "
            f"times are upper bounds)")
    text = f"{head}\n\n{table(rows)}\n"
    print(text)
    if args.markdown is not None:
        cmd = "python benchmarks/explain_methods.py " + " ".join(sys.argv[1:])
        write_markdown(args.markdown, f"#### {net} ({args.task})", f"`{cmd}`\n\n{text}")


if __name__ == "__main__":
    main()
