"""``pyseg predict``: segment images with a trained checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from pyseg.commands import _common

HELP = "predict class-index PNGs (VOC palette) and overlays for images with a trained checkpoint"

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``pyseg predict`` to ``parser`` (the CLI calls this)."""
    parser.add_argument("--checkpoint", required=True, metavar="CKPT", help="a .pt from pyseg train")
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="images or folders of images")
    parser.add_argument("--out", default="predictions", metavar="DIR",
                        help="output folder (default: predictions)")
    _common.add_device_argument(parser)
    _common.add_arch_argument(parser)


def _collect(inputs: list[str]) -> list[Path]:
    from pyseg.cli import UsageError

    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if not p.exists():
            raise UsageError(f"no such file or folder: {item}")
        if p.is_dir():
            found = sorted(q for q in p.iterdir()
                           if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES
                           and not q.name.startswith("."))
            if not found:
                raise UsageError(f"no images in folder: {item}")
            files += found
        else:
            files.append(p)
    stems = {}
    for f in files:
        if f.stem in stems and stems[f.stem] != f:
            raise UsageError(f"two inputs would write the same outputs: {stems[f.stem]} and {f}")
        stems[f.stem] = f
    return files


def run(args: argparse.Namespace) -> int:
    """Carry out ``pyseg predict`` with the parsed ``args``; returns the exit status."""
    from pyseg.cli import UsageError

    files = _collect(args.inputs)
    _common.output_dir(args.out)
    device = _common.device(args.device)

    from pyseg.engine import load_model

    model, state = load_model(args.checkpoint, device, arch=args.arch)

    import numpy as np
    import torch
    from PIL import Image

    from pyseg.data.oxford import load_rgb
    from pyseg.engine.outputs import atomic_path
    from pyseg.engine.plots import overlay
    from pyseg.palette import index_image

    # Decode every input first: a bad file stops the run before anything is written.
    images = []
    for f in files:
        if f.stat().st_size == 0:
            raise UsageError(f"empty file: {f}")
        try:
            images.append(load_rgb(f))
        except Exception as e:  # noqa: BLE001 - PIL raises many types for non-images
            raise UsageError(f"not a readable image: {f} ({type(e).__name__})") from None

    size = state["img_size"]
    task = state["task"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = list(state["class_names"])
    with torch.no_grad():
        for f, img in zip(files, images):
            x = torch.from_numpy(np.asarray(img.resize((size, size), Image.BILINEAR), dtype=np.float32))
            x = (x / 255.0).permute(2, 0, 1)[None].to(device)
            logits = model(x)
            if task == "classification":
                p = logits.softmax(1)[0]
                k = int(p.argmax())
                print(f"{f}: {names[k]} ({p[k].item():.3f})")
                continue
            pred = logits.argmax(1)[0].to(torch.uint8).cpu().numpy()
            pred_img = Image.fromarray(pred).resize(img.size, Image.NEAREST)
            mask = np.asarray(pred_img, dtype=np.uint8)  # class indices, any number of classes
            for name, pic in ((f"{f.stem}_trimap.png", index_image(mask)),
                              (f"{f.stem}_overlay.png", Image.fromarray(overlay(np.asarray(img), mask)))):
                with atomic_path(out / name) as tmp:
                    pic.save(tmp, format="PNG")
            print(f"{f} -> {out / (f.stem + '_trimap.png')}")
    return 0
