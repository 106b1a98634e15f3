"""``pyseg explain``: heatmaps of a trained model's decision, written as PNG overlays."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pyseg.commands import _common

HELP = "explain a trained model's predictions on images (CAM, Grad-CAM, hide-and-seek, ...)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    parser.add_argument("--checkpoint", required=True, metavar="CKPT",
                        help="checkpoint written by `pyseg train`")
    parser.add_argument(
        "--method", action="append", required=True, metavar="NAME",
        help="interpreter (gradcam, gradcam++, cam, hide-and-seek, excitation-backprop, or a "
        "plugin's); repeat or separate with commas for several; 'all' for every registered one",
    )
    parser.add_argument("--target", default=None, metavar="CLASS",
                        help="class index or name to explain (default: the predicted class)")
    parser.add_argument("--layer", default=None, metavar="NAME",
                        help="dotted name of the layer to read maps at (default: last conv)")
    parser.add_argument("--out", default="explanations", metavar="DIR",
                        help="output directory (default: ./explanations)")
    parser.add_argument("--alpha", type=float, default=0.4, help="overlay opacity (default 0.4)")
    parser.add_argument("--size", type=int, default=None, metavar="PX",
                        help="resize images to PX x PX (default: the checkpoint's training size)")
    _common.add_device_argument(parser)
    _common.add_arch_argument(parser)




def _interpreters(names: list[str]) -> list[tuple[str, Any]]:
    import pyseg
    from pyseg.cli import UsageError

    wanted: list[str] = []
    for item in names:
        for n in filter(None, (s.strip() for s in item.split(","))):
            for m in (pyseg.list_interpreters() if n == "all" else (n,)):
                if m not in wanted:
                    wanted.append(m)
    out = []
    for n in wanted:
        try:
            out.append((n, pyseg.get_interpreter(n)))
        except KeyError as e:
            raise UsageError(f"unknown method {n!r} ({e})") from None
    return out


def _load_image(path: str, size: int | None):
    import numpy as np
    import torch
    from PIL import Image

    from pyseg.cli import UsageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if size is not None and im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read image {path!r}: {e}") from None
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())


def run(args: argparse.Namespace) -> int:
    import torch

    from pyseg.cli import UsageError
    from pyseg.engine import load_model
    from pyseg.interpret.core import InterpretError, logits_of
    from pyseg.interpret.overlay import save_overlay, save_panel

    if not 0.0 <= args.alpha <= 1.0:
        raise UsageError(f"--alpha must be in [0, 1], got {args.alpha}")
    _common.check_img_size("--size", args.size)
    _common.output_dir(args.out)
    device = _common.device(args.device)
    methods = _interpreters(args.method)
    model, info = load_model(args.checkpoint, device, arch=args.arch)
    class_names = list(info["class_names"])
    size = args.size or info["img_size"]
    target: Any = None
    if args.target is not None:
        if args.target.lstrip("-").isdigit():
            target = int(args.target)
        elif args.target in class_names:
            target = class_names.index(args.target)
        else:
            known = f" (classes: {', '.join(class_names)})" if class_names else ""
            raise UsageError(f"--target {args.target!r} is not a class index or name{known}")
    out_dir = Path(args.out)

    for path in args.images:
        image = _load_image(path, size).to(device)
        batch = image[None]
        with torch.no_grad():
            logits = logits_of(model(batch))
        shown = target
        if logits.dim() == 2:
            pred = int(logits.argmax(1))
            shown = pred if target is None else target
            label = class_names[shown] if shown < len(class_names) else str(shown)
            pred_name = class_names[pred] if pred < len(class_names) else str(pred)
            headline = f"{Path(path).name}: predicted {pred_name}"
        else:
            label = "predicted" if target is None else (
                class_names[target] if target < len(class_names) else str(target))
            headline = f"{Path(path).name}: segmentation"
        out_dir.mkdir(parents=True, exist_ok=True)  # only once there is something to write
        maps, titles = [], []
        stem = Path(path).stem
        for name, interp in methods:
            opts = {"layer": args.layer} if args.layer and interp.takes_layer else {}
            try:
                heat = interp(model, batch, target=target, **opts)[0]
            except InterpretError as e:
                raise UsageError(f"{name} on {path}: {e}") from None
            file = out_dir / f"{stem}_{name}.png"
            save_overlay(file, image, heat, args.alpha)
            maps.append(heat)
            titles.append(name)
            print(f"{file}")
        panel = out_dir / f"{stem}_panel.png"
        save_panel(panel, image, maps, titles, args.alpha, f"{headline}; explaining {label}")
        print(f"{panel}")
    return 0
