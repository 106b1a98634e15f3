"""``pyseg evaluate``: metrics of a trained checkpoint on a validation split."""

from __future__ import annotations

import argparse

from pyseg.commands import _common

HELP = "evaluate a checkpoint on the validation split (JSON metrics)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``pyseg evaluate`` to ``parser`` (the CLI calls this)."""
    parser.add_argument("--checkpoint", required=True, metavar="CKPT", help="a .pt from pyseg train")
    parser.add_argument("--data", default=None, metavar="NAME|PATH",
                        help="dataset (default: the one the checkpoint was trained on)")
    parser.add_argument("--img-size", type=int, default=None, metavar="N",
                        help="input size (default: the checkpoint's)")
    parser.add_argument("--val-samples", type=int, default=None, metavar="N",
                        help="synthetic data: number of validation images")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N")
    parser.add_argument("--ignore-index", type=int, default=None, metavar="LABEL",
                        help="target label left out of the metrics (default: the checkpoint's, "
                             "else 255)")
    _common.add_device_argument(parser)
    _common.add_arch_argument(parser)
    parser.add_argument("--out", default=None, metavar="FILE", help="also write the JSON here")


def run(args: argparse.Namespace) -> int:
    """Carry out ``pyseg evaluate`` with the parsed ``args``; returns the exit status."""
    from pyseg.cli import UsageError

    _common.check_img_size("--img-size", args.img_size)
    _common.check_range("--val-samples", args.val_samples)
    _common.check_range("--batch-size", args.batch_size)
    if args.out:
        _common.output_file(args.out)
    device = _common.device(args.device)

    from pyseg.data import resolve_dataset
    from pyseg.engine import evaluate_model, load_model
    from pyseg.engine.outputs import to_json, write_text_atomic

    model, state = load_model(args.checkpoint, device, arch=args.arch)
    config = state.get("config", {})  # checked by load_model
    data = args.data or config.get("data", "synthetic-pets")
    img_size = args.img_size or state["img_size"]
    ignore_index = (args.ignore_index if args.ignore_index is not None
                    else config.get("ignore_index", 255))
    try:
        ds, names = resolve_dataset(data, "val", img_size, state["task"],
                                    seed=config.get("seed", 0),
                                    val_length=args.val_samples or config.get("val_samples"))
    except ValueError as e:
        raise UsageError(str(e).splitlines()[0]) from None
    if list(names) != list(state["class_names"]):
        raise UsageError(f"checkpoint classes {list(state['class_names'])} do not match "
                         f"dataset {data!r} classes {list(names)}")
    if len(ds) == 0:
        raise UsageError(f"dataset {data!r} has no validation samples")
    try:
        m = evaluate_model(model, ds, names, batch_size=args.batch_size, device=device,
                           ignore_index=ignore_index)
    except ValueError as e:  # a model whose output does not fit the task
        raise UsageError(str(e).splitlines()[0]) from None
    result = {"checkpoint": str(args.checkpoint), "data": data, "split": "val",
              "samples": len(ds), "val_loss": m["loss"], "val_pixel_acc": m["pixel_acc"],
              "val_iou": m["iou"], "val_miou": m["miou"]}
    text = to_json(result, indent=2)  # a NaN loss is written as null: strict JSON
    print(text)
    if args.out:
        write_text_atomic(args.out, text + "\n")
    return 0

