"""``pyseg evaluate``: metrics of a trained checkpoint on a validation split."""

from __future__ import annotations

import argparse
import json

HELP = "evaluate a checkpoint on the validation split (JSON metrics)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="CKPT", help="a .pt from pyseg train")
    parser.add_argument("--data", default=None, metavar="NAME|PATH",
                        help="dataset (default: the one the checkpoint was trained on)")
    parser.add_argument("--img-size", type=int, default=None, metavar="N",
                        help="input size (default: the checkpoint's)")
    parser.add_argument("--val-samples", type=int, default=None, metavar="N",
                        help="synthetic data: number of validation images")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--out", default=None, metavar="FILE", help="also write the JSON here")


def run(args: argparse.Namespace) -> int:
    from pyseg.cli import UsageError
    from pyseg.commands._common import load_model

    model, state = load_model(args.checkpoint)
    config = state.get("config", {}) or {}
    data = args.data or config.get("data", "synthetic-pets")
    img_size = args.img_size or int(state.get("img_size", 64))
    task = state.get("task", "segmentation")
    from pyseg.data import resolve_dataset
    from pyseg.engine import evaluate_model

    try:
        ds, names = resolve_dataset(data, "val", img_size, task, seed=int(config.get("seed", 0)),
                                    val_length=args.val_samples or config.get("val_samples"))
    except ValueError as e:
        raise UsageError(str(e).splitlines()[0]) from None
    if list(names) != list(state["class_names"]):
        raise UsageError(f"checkpoint classes {list(state['class_names'])} do not match "
                         f"dataset {data!r} classes {list(names)}")
    if len(ds) == 0:
        raise UsageError(f"dataset {data!r} has no validation samples")
    m = evaluate_model(model.to(args.device), ds, names, batch_size=args.batch_size,
                       device=args.device)
    result = {"checkpoint": str(args.checkpoint), "data": data, "split": "val",
              "samples": len(ds), "val_loss": m["loss"], "val_pixel_acc": m["pixel_acc"],
              "val_iou": m["iou"], "val_miou": m["miou"]}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        import os

        tmp = f"{args.out}.tmp"
        with open(tmp, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, args.out)
    return 0
