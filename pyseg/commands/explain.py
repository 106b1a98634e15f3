"""``pyseg explain``: heatmaps of a trained model's decision, written as PNG overlays."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

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
                        help="resize images to PX x PX (default: the checkpoint's training size, "
                        "else unchanged)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")


def _first(d: dict, *keys: str, default: Any = None) -> Any:
    for k in keys:
        if k in d and d[k] is not None:
            return d[k]
    return default


def load_checkpoint_model(path: str | Path, device: str = "cpu"):
    """Rebuild the model stored in a checkpoint; returns ``(model, info dict)``.

    Accepts the dict checkpoints of ``pyseg train`` (architecture name + its keyword
    arguments + state dict) and, for convenience, a pickled ``nn.Module``.
    """
    import torch
    from torch import nn

    from pyseg.cli import UsageError

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint {str(path)!r} does not exist")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=False)
    except Exception as e:  # noqa: BLE001 -- any unreadable file is a user error here
        raise UsageError(f"cannot read checkpoint {str(path)!r}: {e}") from None
    if isinstance(ckpt, nn.Module):
        return ckpt.to(device), {}
    if isinstance(ckpt, dict) and "format" in ckpt:  # written by `pyseg train`
        from pyseg.commands._common import load_model

        model, state = load_model(str(path))
        return model.to(device).eval(), state
    if not isinstance(ckpt, dict):
        raise UsageError(f"checkpoint {str(path)!r} holds a {type(ckpt).__name__}, not a model")
    arch = _first(ckpt, "arch", "architecture", "model_name")
    state = _first(ckpt, "model", "state_dict", "model_state", "model_state_dict")
    if arch is None or state is None:
        raise UsageError(
            f"checkpoint {str(path)!r} has no architecture name or weights "
            f"(keys: {', '.join(map(str, ckpt))})"
        )
    if isinstance(arch, dict):  # {"name": ..., "kwargs": ...}
        kwargs = dict(arch.get("kwargs") or {})
        arch = arch.get("name")
    else:
        kwargs = dict(_first(ckpt, "arch_kwargs", "model_kwargs", "kwargs", default={}))
    from pyseg import registry

    create = getattr(registry, "create_model", None)
    if create is None:
        raise UsageError("this pyseg has no model registry (pyseg.registry.create_model)")
    try:
        model = create(arch, **kwargs)
    except KeyError as e:
        raise UsageError(f"unknown architecture {arch!r} in checkpoint: {e}") from None
    model.load_state_dict(state)
    return model.to(device).eval(), ckpt


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
            out.append((n, _get_interpreter(n)))
        except KeyError as e:
            raise UsageError(f"unknown method {n!r} ({str(e).strip(chr(39))})") from None
    return out


def _get_interpreter(name: str):
    import pyseg

    get = getattr(pyseg, "get_interpreter", None)
    if get is not None:
        try:
            return get(name)
        except (KeyError, LookupError):
            pass
    # Not (yet) in the registry: the built-in interpreters plugin directly.
    from pyseg_plugins.interpreters import pyseg_interpreters

    specs = {s.name: s for s in pyseg_interpreters()}
    if name not in specs:
        raise KeyError(f"known: {', '.join(sorted(specs))}")
    return specs[name]


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
    from pyseg.interpret.core import InterpretError, logits_of
    from pyseg.interpret.overlay import save_overlay, save_panel

    if not 0.0 <= args.alpha <= 1.0:
        raise UsageError(f"--alpha must be in [0, 1], got {args.alpha}")
    methods = _interpreters(args.method)
    model, info = load_checkpoint_model(args.checkpoint, args.device)
    class_names = list(_first(info, "class_names", "classes", default=[]) or [])
    size = args.size or _first(info, "img_size", "image_size")
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
        image = _load_image(path, int(size) if size else None).to(args.device)
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
