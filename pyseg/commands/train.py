"""``pyseg train``: train a segmentation network (or a classifier) and save what it learned."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING

from pyseg.commands import _common

if TYPE_CHECKING:
    from pyseg.registry import Architecture

HELP = "train a segmentation network (default: on synthetic pets, no download needed)"

ARCH_DEFAULT = "unet"
# Sized for a 2-core CPU: the full-width U-Net / pets-encdec take far longer than 3 minutes.
DEFAULT_KWARGS = {"unet": {"base_channels": 16, "depth": 3}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``pyseg train`` to ``parser`` (the CLI calls this)."""
    parser.add_argument("--arch", default=ARCH_DEFAULT, metavar="NAME",
                        help=f"architecture name from `pyseg list` (default: {ARCH_DEFAULT})")
    parser.add_argument("--arch-kwargs", default=None, metavar="JSON",
                        help="keyword arguments for the architecture, as a JSON object")
    parser.add_argument("--data", default="synthetic-pets", metavar="NAME|PATH",
                        help="synthetic-pets (default), oxford-pets, or a folder with "
                             "images/ + annotations/trimaps/ (Oxford Pets) or "
                             "classes.txt + images/ + masks/ (any classes, see README)")
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
    parser.add_argument("--resume", nargs="?", const=True, default=False, choices=["auto"],
                        metavar="auto",
                        help="continue the interrupted run in --out from its last checkpoint "
                             "(with the same options); '--resume auto' continues it when "
                             "there is one and starts otherwise (for torchrun --max-restarts)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run already in --out (without it that is an error)")
    parser.add_argument("--best-metric", default="val_miou", choices=["val_miou", "val_loss"],
                        help="what picks best.pt: highest validation mIoU (default) or lowest "
                             "validation loss")
    parser.add_argument("--ignore-index", type=int, default=255, metavar="LABEL",
                        help="target label left out of the loss and the metrics (default: 255)")
    parser.add_argument("--encoder-weights", default=None, metavar="PATH|torchvision",
                        help="pretrained encoder: a torchvision VGG16 / VGG16-BN state_dict "
                             "(fcn*, deconvnet, segnet), 'torchvision' for torchvision's file "
                             "in the torch hub cache, or a timm weights file (unet or fcn* "
                             "with encoder timm:NAME in --arch-kwargs); never downloads")
    parser.add_argument("--freeze-encoder", action="store_true",
                        help="train with the encoder frozen (no updates, batch-norm "
                             "statistics kept)")
    parser.add_argument("--unfreeze-after", type=int, default=None, metavar="N",
                        help="with --freeze-encoder: fine-tune the encoder too after N epochs")
    parser.add_argument("--encoder-lr", type=float, default=None, metavar="X",
                        help="peak learning rate of the encoder (default: --lr), on the "
                             "same schedule")
    _common.add_device_argument(parser)
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="(default: 0)")
    parser.add_argument("--hide-and-seek", action="store_true",
                        help="augment training images by hiding random grid patches")
    parser.add_argument("--acol", action="store_true",
                        help="classifiers: replace the architecture's classifier by an ACoL "
                             "head (two complementary branches, Zhang et al. 2018); the "
                             "checkpoint's architecture is 'acol', for `pyseg explain "
                             "--method acol`")
    parser.add_argument("--acol-threshold", type=float, default=0.6, metavar="X",
                        help="with --acol: erase where the first branch's scaled map exceeds "
                             "X, in (0, 1) (default: 0.6)")
    parser.add_argument("--task", default=None, choices=["segmentation", "classification"],
                        help="default: the architecture's task")
    parser.add_argument("--train-samples", type=int, default=None, metavar="N",
                        help="synthetic data: number of training images (default: 1024)")
    parser.add_argument("--val-samples", type=int, default=None, metavar="N",
                        help="synthetic data: number of validation images (default: 128)")
    parser.add_argument("--workers", type=int, default=0, metavar="N",
                        help="data-loading processes per training process, kept for the whole "
                             "run (default: 0, load on the training thread)")
    parser.add_argument("--accumulate", type=int, default=1, metavar="N",
                        help="sum the gradients of N batches before each optimizer step: the "
                             "effective batch size is batch-size x N x processes (default: 1)")
    parser.add_argument("--sync-bn", action="store_true",
                        help="under torchrun on CUDA: batch-norm statistics over all "
                             "processes (SyncBatchNorm)")
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
    """Carry out ``pyseg train`` with the parsed ``args``; returns the exit status."""
    from pyseg.cli import UsageError

    spec = _architecture(args.arch)
    if args.img_size is None:  # a classifier built for one input size gets that size
        args.img_size = (spec.input_size if spec is not None and spec.input_size else 64)
    for opt in ("epochs", "batch_size", "train_samples", "val_samples", "threads", "accumulate"):
        _common.check_range(f"--{opt.replace('_', '-')}", getattr(args, opt))
    _common.check_range("--workers", args.workers, low=0)
    _common.check_img_size("--img-size", args.img_size)
    for opt in ("lr", "encoder_lr"):
        value = getattr(args, opt)
        if value is not None and not 0 < value < float("inf"):
            raise UsageError(f"--{opt.replace('_', '-')} must be a positive number, got {value}")
    if args.unfreeze_after is not None:
        if not args.freeze_encoder:
            raise UsageError("--unfreeze-after needs --freeze-encoder")
        _common.check_range("--unfreeze-after", args.unfreeze_after, low=0)
    _common.output_dir(args.out)
    _common.device(args.device)
    not_an_object = UsageError(f"--arch-kwargs must be a JSON object, got {args.arch_kwargs!r}")
    try:
        arch_kwargs = (json.loads(args.arch_kwargs) if args.arch_kwargs is not None
                       else dict(DEFAULT_KWARGS.get(args.arch, {})))
    except ValueError:
        raise not_an_object from None
    if not isinstance(arch_kwargs, dict):
        raise not_an_object
    if args.encoder_weights is not None:
        arch_kwargs["encoder_weights"] = args.encoder_weights

    import torch

    from pyseg.engine import NonFiniteLossError, TrainConfig, train

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    task = args.task or ("segmentation" if spec is None or "segmentation" in spec.tasks
                         else min(spec.tasks))
    if spec is not None and spec.input_size is not None:
        arch_kwargs.setdefault("input_size", args.img_size)
    arch = args.arch
    if args.acol:  # the registered ACoL architecture on the classifier's features
        if spec is None or "classification" not in spec.tasks or arch == "acol":
            raise UsageError(f"--acol needs a registered classifier as --arch (small-convnet, "
                             f"mini-xception), got {arch!r}")
        if not 0.0 < args.acol_threshold < 1.0:
            raise UsageError(f"--acol-threshold must be in (0, 1), got {args.acol_threshold}")
        arch, task = "acol", "classification"
        arch_kwargs = {"backbone": args.arch, "backbone_kwargs": arch_kwargs,
                       "threshold": args.acol_threshold}
    cfg = TrainConfig(
        arch=arch, arch_kwargs=arch_kwargs, data=args.data, img_size=args.img_size,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
        lr_schedule=args.lr_schedule,
        out=args.out, resume=args.resume, overwrite=args.overwrite, device=args.device,
        seed=args.seed, hide_and_seek=args.hide_and_seek, task=task,
        train_samples=args.train_samples, val_samples=args.val_samples,
        ignore_index=args.ignore_index, best_metric=args.best_metric,
        num_workers=args.workers, accumulate=args.accumulate, sync_bn=args.sync_bn,
        freeze_encoder=args.freeze_encoder, unfreeze_after=args.unfreeze_after,
        encoder_lr=args.encoder_lr,
    )
    try:
        result = train(cfg, quiet=args.quiet)
    except NonFiniteLossError as e:
        print(f"pyseg train: error: {e}", file=sys.stderr)
        return 1
    except (ValueError, ImportError) as e:  # CheckpointError, a missing optional package
        raise UsageError(str(e).splitlines()[0]) from None

    if int(os.environ.get("RANK", "0")) == 0:
        b = result.best
        print(f"best epoch {b['epoch']} (by {args.best_metric}): val_loss={b['val_loss']:.4f} "
              f"val_pixel_acc={b['val_pixel_acc']:.3f} val_miou={b['val_miou']:.3f}")
        print(f"wrote {', '.join(result.written)} in {result.out}")
    return 0
