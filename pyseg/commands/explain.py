"""``pyseg explain``: heatmaps of a trained model's decision, written as PNG overlays."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pyseg.commands import _common

HELP = "explain a trained model's predictions on images (CAM, Grad-CAM, hide-and-seek, ...)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``pyseg explain`` to ``parser`` (the CLI calls this)."""
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    parser.add_argument("--checkpoint", required=True, metavar="CKPT",
                        help="checkpoint written by `pyseg train`")
    parser.add_argument(
        "--method", action="append", required=True, metavar="NAME",
        help="interpreter (gradcam, gradcam++, cam, hide-and-seek, excitation-backprop, or a "
        "plugin's); repeat or separate with commas for several; 'all' for every registered one",
    )
    parser.add_argument("--target", "--target-class", dest="target", default=None,
                        metavar="CLASS",
                        help="class index or name to explain (default: the predicted class; "
                        "for a segmentation model the class predicted on most pixels)")
    region = parser.add_mutually_exclusive_group()
    region.add_argument("--mask", default=None, metavar="PNG",
                        help="segmentation models: explain the class's score summed over the "
                        "nonzero pixels of this PNG (resized to the image, nearest)")
    region.add_argument("--box", default=None, metavar="X0,Y0,X1,Y1",
                        help="segmentation models: explain the class's score summed over this "
                        "box (pixels of the resized image, X1 and Y1 excluded)")
    parser.add_argument("--layer", action="append", default=None, metavar="NAME",
                        help="dotted name of the layer to read maps at (default: last conv); "
                        "repeat or separate with commas for several (maps are averaged)")
    parser.add_argument("--metrics", action="store_true",
                        help="also print faithfulness metrics per method and image: deletion "
                        "and insertion areas, ROAD (and the pointing game with --mask/--box)")
    parser.add_argument("--out", default="explanations", metavar="DIR",
                        help="output directory (default: ./explanations)")
    parser.add_argument("--alpha", type=float, default=0.4, help="overlay opacity (default 0.4)")
    parser.add_argument("--size", type=int, default=None, metavar="PX",
                        help="resize images to PX x PX (default: the checkpoint's training size)")
    _common.add_device_argument(parser)
    _common.add_arch_argument(parser)




def _interpreters(names: list[str]) -> list[tuple[str, Any, bool]]:
    """``(name, interpreter, named explicitly)``; the methods of 'all' are not explicit: one
    that does not fit the model (CAM without global pooling, ACoL on another model) is
    skipped with a note instead of stopping the command."""
    import pyseg
    from pyseg.cli import UsageError

    wanted: dict[str, bool] = {}
    for item in names:
        for n in filter(None, (s.strip() for s in item.split(","))):
            if n == "all":
                for m in pyseg.list_interpreters():
                    wanted.setdefault(m, False)
            else:
                wanted[n] = True
    out = []
    for n, explicit in wanted.items():
        try:
            out.append((n, pyseg.get_interpreter(n), explicit))
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


def _parse_box(text: str) -> tuple[int, int, int, int]:
    from pyseg.cli import UsageError

    try:
        x0, y0, x1, y1 = (int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--box must be four integers X0,Y0,X1,Y1, got {text!r}") from None
    if not (0 <= x0 < x1 and 0 <= y0 < y1):
        raise UsageError(f"--box {text!r}: need 0 <= X0 < X1 and 0 <= Y0 < Y1")
    return x0, y0, x1, y1


def _region(args: argparse.Namespace, size: int):
    """The ``--mask`` / ``--box`` region as a bool ``(size, size)`` tensor, or None."""
    import numpy as np
    import torch
    from PIL import Image

    from pyseg.cli import UsageError

    if args.box is not None:
        x0, y0, x1, y1 = _parse_box(args.box)
        if x1 > size or y1 > size:
            raise UsageError(f"--box {args.box!r} exceeds the {size}x{size} image")
        m = torch.zeros(size, size, dtype=torch.bool)
        m[y0:y1, x0:x1] = True
        return m
    if args.mask is not None:
        try:
            with Image.open(args.mask) as im:
                im = im.convert("L")
                if im.size != (size, size):
                    im = im.resize((size, size), Image.NEAREST)
                arr = np.asarray(im) > 0
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read --mask {args.mask!r}: {e}") from None
        if not arr.any():
            raise UsageError(f"--mask {args.mask!r} has no nonzero pixel")
        return torch.from_numpy(arr.copy())
    return None


def _layers(args: argparse.Namespace) -> list[str] | None:
    if not args.layer:
        return None
    names = [n for item in args.layer for n in (s.strip() for s in item.split(",")) if n]
    return names or None


def _print_metrics(rows: list[tuple[str, str, dict]]) -> None:
    keys = ["deletion", "insertion", "road", "morf", "lerf"]
    if any("pointing" in r for _, _, r in rows):
        keys.append("pointing")
    head = f"{'image':<20} {'method':<20} " + " ".join(f"{k:>9}" for k in keys)
    print(head)
    for image, method, r in rows:
        vals = " ".join(f"{float(r[k]):>9.4f}" if k in r else f"{'-':>9}" for k in keys)
        print(f"{image:<20} {method:<20} {vals}")
    better = "insertion, lerf, road" + (", pointing" if "pointing" in keys else "")
    print(f"deletion, morf: lower is better; {better}: higher is better")


def run(args: argparse.Namespace) -> int:
    """Carry out ``pyseg explain`` with the parsed ``args``; returns the exit status."""
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
    layers = _layers(args)
    region = _region(args, size)
    rows: list[tuple[str, str, dict]] = []

    for path in args.images:
        image = _load_image(path, size).to(device)
        batch = image[None]
        with torch.no_grad():
            logits = logits_of(model(batch))
        shown = target
        spec: Any = target
        if region is not None:
            if logits.dim() != 4:
                raise UsageError("--mask and --box need a segmentation model; this checkpoint "
                                 "is a classifier")
            import torch.nn.functional as F

            m = F.interpolate(region[None, None].float(), size=logits.shape[-2:],
                              mode="nearest")[0, 0].bool().to(device)
            spec = {"class": target, "mask": m}
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
        for name, interp, explicit in methods:
            opts = {"layer": layers} if layers and interp.takes_layer else {}
            try:
                heat = interp(model, batch, target=spec, **opts)[0]
                if args.metrics:
                    from pyseg.interpret.metrics import faithfulness

                    obj = None if region is None else region[None].to(device)
                    scores = faithfulness(model, batch, heat[None], spec, object_mask=obj)
                    rows.append((Path(path).name, name, {k: v[0] for k, v in scores.items()}))
            except InterpretError as e:
                if not explicit:
                    print(f"{name} skipped on {path}: {e}", file=sys.stderr)
                    continue
                raise UsageError(f"{name} on {path}: {e}") from None
            file = out_dir / f"{stem}_{name}.png"
            save_overlay(file, image, heat, args.alpha)
            maps.append(heat)
            titles.append(name)
            print(f"{file}")
        panel = out_dir / f"{stem}_panel.png"
        save_panel(panel, image, maps, titles, args.alpha, f"{headline}; explaining {label}")
        print(f"{panel}")
    if rows:
        _print_metrics(rows)
    return 0
