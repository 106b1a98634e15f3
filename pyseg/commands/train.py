"""``pyseg train``: train a segmentation network (or a classifier) and save what it learned."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyseg.registry import Architecture

HELP = "train a segmentation network (default: on synthetic pets, no download needed)"

ARCH_DEFAULT = "unet"
# Sized for a 2-core CPU: the full-width U-Net / pets-encdec take far longer than 3 minutes.
DEFAULT_KWARGS = {"unet": {"base_channels": 16, "depth": 3}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", default=ARCH_DEFAULT, metavar="NAME",
                        help=f"architecture name from `pyseg list` (default: {ARCH_DEFAULT})")
    parser.add_argument("--arch-kwargs", default=None, metavar="JSON",
                        help="keyword arguments for the architecture, as a JSON object")
    parser.add_argument("--data", default="synthetic-pets", metavar="NAME|PATH",
                        help="synthetic-pets (default), oxford-pets, or a folder with "
                             "images/*.jpg and annotations/trimaps/*.png")
    parser.add_argument("--img-size", type=int, default=None, metavar="N",
                        help="square input size in pixels (default: 64, or the input size a "
                             "fixed-size classifier is built for, e.g. 180 for small-convnet)")
    parser.add_argument("--epochs", type=int, default=9, metavar="N", help="(default: 9)")
    parser.add_argument("--batch-size", type=int, default=8, metavar="N", help="(default: 8)")
    parser.add_argument("--lr", type=float, default=1e-3, metavar="X",
                        help="peak learning rate of the cosine schedule (default: 1e-3)")
    parser.add_argument("--lr-schedule", default="cosine", choices=["cosine", "constant"],
                        help="cosine: decays to zero over the run, per step (default)")
    parser.add_argument("--optimizer", default="rmsprop", choices=["rmsprop", "adam", "sgd"],
                        help="(default: rmsprop, as in the book)")
    parser.add_argument("--out", default="runs/train", metavar="DIR",
                        help="output folder for checkpoints, metrics and figures (default: runs/train)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the interrupted run in --out from its last checkpoint")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="(default: cpu)")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="(default: 0)")
    parser.add_argument("--hide-and-seek", action="store_true",
                        help="augment training images by hiding random grid patches")
    parser.add_argument("--task", default=None, choices=["segmentation", "classification"],
                        help="default: the architecture's task")
    parser.add_argument("--train-samples", type=int, default=None, metavar="N",
                        help="synthetic data: number of training images (default: 1024)")
    parser.add_argument("--val-samples", type=int, default=None, metavar="N",
                        help="synthetic data: number of validation images (default: 128)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")


def _architecture(name: str) -> Architecture | None:
    """The registered architecture ``name``, or None (a ``module:factory`` path, or an
    unknown name: reported when the model is built)."""
    from pyseg import registry

    try:
        return registry.get_architecture(name)
    except KeyError:
        return None


def run(args: argparse.Namespace) -> int:
    from pyseg.cli import UsageError

    spec = _architecture(args.arch)
    if args.img_size is None:  # a classifier built for one input size gets that size
        args.img_size = (spec.input_size if spec is not None and spec.input_size else 64)
    for opt in ("img_size", "epochs", "batch_size"):
        if getattr(args, opt) < 1:
            raise UsageError(f"--{opt.replace('_', '-')} must be >= 1")
    if args.img_size < 16:
        raise UsageError("--img-size must be >= 16")
    if not args.lr > 0:
        raise UsageError("--lr must be > 0")
    try:
        arch_kwargs = (json.loads(args.arch_kwargs) if args.arch_kwargs is not None
                       else dict(DEFAULT_KWARGS.get(args.arch, {})))
    except ValueError:
        arch_kwargs = None
    if not isinstance(arch_kwargs, dict):
        raise UsageError(f"--arch-kwargs must be a JSON object, got {args.arch_kwargs!r}")

    import torch

    from pyseg.engine import CheckpointError, TrainConfig, train

    if args.threads:
        torch.set_num_threads(args.threads)
    task = args.task or ("segmentation" if spec is None or "segmentation" in spec.tasks
                         else min(spec.tasks))
    if spec is not None and spec.input_size is not None:
        arch_kwargs.setdefault("input_size", args.img_size)
    cfg = TrainConfig(
        arch=args.arch, arch_kwargs=arch_kwargs, data=args.data, img_size=args.img_size,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
        lr_schedule=args.lr_schedule,
        out=args.out, resume=args.resume, device=args.device, seed=args.seed,
        hide_and_seek=args.hide_and_seek, task=task, train_samples=args.train_samples,
        val_samples=args.val_samples, quiet=args.quiet,
    )
    try:
        result = train(cfg)
    except (ValueError, CheckpointError) as e:
        raise UsageError(str(e).splitlines()[0]) from None
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        b = result.best
        print(f"best epoch {b['epoch']}: val_loss={b['val_loss']:.4f} "
              f"val_pixel_acc={b['val_pixel_acc']:.3f} val_miou={b['val_miou']:.3f}")
        print(f"wrote {result.out}/best.pt, metrics.json, loss.png"
              + (", predictions.png" if task == "segmentation" else ""))
    return 0
