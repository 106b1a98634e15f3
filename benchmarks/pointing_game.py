"""Pointing game of every interpreter on small models trained on synthetic pets.

Trains a classifier (cat vs dog) on the synthetic pets set for a few epochs -- a small GAP +
linear convnet (``--arch gapnet``, default) or a registered one (``small-convnet``,
``mini-xception``) -- then, on held-out images, counts how often the maximum of each method's
heatmap for the true class falls on the animal (trimap foreground or contour band;
``--tolerance`` widens it). ``--cues body`` (default) uses the generator whose species cues
lie on the animal (pyseg.data.synthetic, ``cues="body"``), ``--cues shape`` the original one.
``--decoys`` is the share of images whose background carries decoy patches of both fur
patterns (default 1.0, the generator's default). ``--layer`` sets the layer of the
layer-taking methods; by default a registered classifier uses :data:`DEFAULT_LAYERS` and the
GAP convnet each method's own default (``--layer auto``: always the methods' default,
pyseg.interpret.default_layer). ``--checkpoint FILE`` loads the trained weights from FILE
when it exists (no training), else trains and saves them there: several layers or methods
can then be compared on one trained model. ``--translate F``: random shifts of up to F of
the side during training (default 0.125 for the registered classifiers, 0 for the GAP
convnet and the U-Net), ``--weight-decay``: AdamW instead of Adam.
With ``--acol`` the classifier gets an ACoL head (pyseg.interpret.acol) and the script also
reports how much of the animal the fused ACoL map and branch A's CAM cover (fraction of the
animal's pixels above 0.5 of the min-max normalized map, and the IoU of that region).
With ``--task segmentation`` it trains a small U-Net on the trimaps instead and explains the
foreground class (score: the sum of its logits over the pixels predicted as foreground).

    python benchmarks/pointing_game.py [--train 1024 --epochs 8 --size 64 --test 200]
    python benchmarks/pointing_game.py --arch mini-xception --layer blocks.3
    python benchmarks/pointing_game.py --arch small-convnet --checkpoint /tmp/sc.pt
    python benchmarks/pointing_game.py --acol --methods acol,cam
    python benchmarks/pointing_game.py --task segmentation [--train 512 --epochs 6]

Prints a table (hit rate per method, and for a classifier per class: cats, dogs; classifier
accuracy, timings). The thresholds asserted in tests/interpret/test_pointing_game.py come
from these measurements.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from torch import nn

from pyseg.interpret.pointing import pointing_hits

METHODS = ("gradcam", "gradcam++", "cam", "excitation-backprop", "hide-and-seek")
# Every registered interpreter (--methods all).
ALL_METHODS = ("gradcam", "gradcam++", "layercam", "hirescam", "xgradcam", "eigencam",
               "scorecam", "ablationcam", "cam", "excitation-backprop", "hide-and-seek", "rise",
               "acol")
# The layer-taking methods' layer on the registered classifiers, at the default sizes (64 px
# mini-xception, 128 px small-convnet): the deepest rectified feature maps that still have a
# useful resolution (8x8 and 12x12). pyseg's default, the last rectified maps, is 4x4 on both
# (blocks.4.body.4, features.13): a map whose maximum falls in a border cell ties with the
# image border after upsampling and misses. Measurements per layer in RESULTS.md.
DEFAULT_LAYERS = {"mini-xception": "blocks.2", "small-convnet": "features.10"}
# small-convnet flattens into a dense layer sized for its input and needs >= 78 px; of 96,
# 128 and 160 px, 128 gave the best Grad-CAM at features.10 (0.45, 0.75, 0.24 with body
# generator version 2), and at 96 px (version 3) excitation backprop misses the cats
# (RESULTS.md).
DEFAULT_SIZES = {"small-convnet": 128}
# Training augmentation of the registered classifiers: random shifts of up to 1/8 of the
# side (mirror-padded, :func:`translate_batch`) on top of the horizontal flips. On
# mini-xception it lifts Grad-CAM from 0.885 to 0.93-0.94 (two seeds); on small-convnet
# excitation backprop, HiResCAM and Layer-CAM stay at 0.89-0.97 while its Grad-CAM stays
# at 0.68-0.82 with or without it (RESULTS.md). The GAP convnet and the U-Net train without.
DEFAULT_TRANSLATE = {"mini-xception": 0.125, "small-convnet": 0.125}


class SmallGapNet(nn.Module):
    """conv(16)-pool-conv(32)-pool-conv(64)-pool-conv(64), global average pooling, linear."""

    def __init__(self, num_classes: int = 2, width: int = 16) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.BatchNorm2d(4 * w), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(4 * w, 4 * w, 3, padding=1), nn.BatchNorm2d(4 * w), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * w, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def small_unet(base_channels: int = 8, depth: int = 2) -> nn.Module:
    """The registry's U-Net, narrow and shallow (3 classes: foreground, background, contour)."""
    import pyseg

    return pyseg.create_model("unet", num_classes=3, base_channels=base_channels, depth=depth)


def classifier(arch: str, size: int, width: int = 16, acol: bool = False,
               stages: int | None = None) -> nn.Module:
    """``gapnet`` (:class:`SmallGapNet`) or a registered classifier for 2 classes at ``size``
    px; ``acol``: an ACoL head on its features instead (pyseg.interpret.acol; ``stages``
    keeps the first stages of a registered backbone)."""
    import pyseg
    from pyseg.interpret.acol import ACoL, acol_classifier

    if arch == "gapnet":
        net = SmallGapNet(width=width)
        return ACoL(net.features, 4 * width, 2, hidden=4 * width) if acol else net
    if acol:
        return acol_classifier(2, backbone=arch, stages=stages,
                               backbone_kwargs={"input_size": size} if arch == "small-convnet"
                               else None)
    kwargs = {"input_size": size} if pyseg.get_architecture(arch).input_size else {}
    return pyseg.create_model(arch, num_classes=2, **kwargs)


def load_split(split: str, n: int, size: int, seed: int = 0, trimaps: bool = False,
               cues: str = "shape", decoys: float = 1.0):
    """``(images float[N, 3, S, S], labels long[N], object masks bool[N, S, S])``; with
    ``trimaps`` the labels are the trimaps ``long[N, S, S]`` (0 foreground, 1 background,
    2 contour). ``cues``, ``decoys``: the generator (see pyseg.data.synthetic)."""
    from pyseg.data.synthetic import SyntheticPets

    ds = SyntheticPets(split=split, img_size=size, length=n, seed=seed, task="segmentation",
                       cache=False, cues=cues, decoys=decoys)
    xs, ys, ms = [], [], []
    for i in range(n):
        image, trimap, species = ds.sample(i)
        xs.append(torch.from_numpy(image).permute(2, 0, 1))
        ys.append(torch.from_numpy(trimap).long() if trimaps else species)
        ms.append(torch.from_numpy(trimap != 1))  # foreground (0) or contour band (2)
    labels = torch.stack(ys) if trimaps else torch.tensor(ys)
    return torch.stack(xs), labels, torch.stack(ms)


def translate_batch(x: torch.Tensor, max_shift: int, g: torch.Generator,
                    y: torch.Tensor | None = None):
    """Shift every image of ``x`` (``[N, C, H, W]``) by its own whole number of pixels, drawn
    uniformly from ``[-max_shift, max_shift]`` in each direction; the pixels shifted in are
    the image's mirror (reflection padding). A trimap ``y`` (``[N, H, W]``) shifts with its
    image. Returns ``x`` (and ``y``) shifted."""
    if max_shift <= 0:
        return x if y is None else (x, y)
    n, _, h, w = x.shape
    m = max_shift
    pad = nn.functional.pad(x, (m, m, m, m), mode="reflect")
    ypad = (None if y is None else
            nn.functional.pad(y[:, None].float(), (m, m, m, m), mode="reflect")[:, 0].long())
    d = torch.randint(0, 2 * m + 1, (n, 2), generator=g)
    xs = torch.stack([pad[i, :, a:a + h, b:b + w] for i, (a, b) in enumerate(d.tolist())])
    if y is None:
        return xs
    return xs, torch.stack([ypad[i, a:a + h, b:b + w] for i, (a, b) in enumerate(d.tolist())])


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, batch: int = 64,
          lr: float = 3e-3, seed: int = 0, hflip: bool = True, translate: float = 0.0,
          weight_decay: float = 0.0) -> list[float]:
    """Plain Adam training; returns the loss per epoch. An ACoL model is trained with
    :func:`pyseg.interpret.acol.acol_loss` (the region erased for the label). Augmentation:
    ``hflip`` (random horizontal flips) and ``translate``, the largest random shift as a
    fraction of the image side (:func:`translate_batch`; 0: none). ``weight_decay``: AdamW's
    decoupled weight decay (0: plain Adam)."""
    from pyseg.interpret.acol import ACoL, acol_loss

    acol = isinstance(model, ACoL)
    g = torch.Generator().manual_seed(seed)
    opt = (torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
           if weight_decay else torch.optim.Adam(model.parameters(), lr=lr))
    max_shift = round(translate * x.shape[-1])
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * (-(-len(x) // batch)))
    losses = []
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        total = 0.0
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            xb = x[idx]
            yb = y[idx]
            if hflip:
                flip = torch.rand(len(idx), generator=g) < 0.5
                xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
                if yb.dim() == 3:  # trimaps flip with their images
                    yb = torch.where(flip[:, None, None], yb.flip(-1), yb)
            if max_shift:
                if yb.dim() == 3:
                    xb, yb = translate_batch(xb, max_shift, g, yb)
                else:
                    xb = translate_batch(xb, max_shift, g)
            loss = (acol_loss(model(xb, yb), yb) if acol
                    else nn.functional.cross_entropy(model(xb), yb))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        losses.append(total / len(x))
    model.eval()
    return losses


def evaluate(model, x, y, masks, methods=METHODS, tolerance: int = 0, batch: int = 50,
             hs_samples: int = 256, layer: str | None = None):
    """``{method: (hit rate, seconds, hit rate per class)}`` with the true class as target
    (the last a list over the classes, ``[cats, dogs]``; segmentation: ``y`` is ``None``, the
    target is the foreground class, 0, and the list is empty). A method that refuses the model
    (CAM on a network without global average pooling) is left out. ``layer``: the dotted
    layer name given to the methods that take one (CAM excepted: it needs the pooled
    features)."""
    from pyseg_plugins.interpreters import pyseg_interpreters

    from pyseg.interpret import InterpretError

    specs = {s.name: s for s in pyseg_interpreters()}
    out = {}
    for name in methods:
        t0 = time.perf_counter()
        hits = []
        for i in range(0, len(x), batch):
            opts: dict = ({"num_samples": hs_samples, "batch_size": 256}
                          if name in ("hide-and-seek", "rise") else {})
            if layer is not None and specs[name].takes_layer and name != "cam":
                opts["layer"] = layer
            target = 0 if y is None else y[i:i + batch]
            try:
                maps = specs[name](model, x[i:i + batch], target=target, **opts)
            except InterpretError as e:
                print(f"{name}: skipped ({e})")
                break
            hits.append(pointing_hits(maps, masks[i:i + batch], tolerance))
        if hits:
            h = torch.cat(hits).float()
            per_class = ([] if y is None else
                         [h[y[:len(h)] == c].mean().item() for c in range(int(y.max()) + 1)])
            out[name] = (h.mean().item(), time.perf_counter() - t0, per_class)
    return out


def coverage(model, x, y, masks, threshold: float = 0.5) -> dict[str, tuple[float, float]]:
    """ACoL models: ``{"acol (fused)" | "cam (branch A)": (mean coverage, mean IoU)}`` of the
    animal masks (see :func:`pyseg.interpret.acol.mask_coverage`), true class as target."""
    from pyseg.interpret.acol import acol_maps, mask_coverage

    out = {}
    for label, branch in (("acol (fused)", "fused"), ("cam (branch A)", "a")):
        cov, iou = mask_coverage(acol_maps(model, x, target=y, branch=branch), masks,
                                 threshold)
        out[label] = (cov.mean().item(), iou.mean().item())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", choices=("classification", "segmentation"),
                   default="classification")
    p.add_argument("--arch", default="gapnet",
                   help="gapnet (default), small-convnet or mini-xception")
    p.add_argument("--cues", choices=("body", "shape"), default="body",
                   help="synthetic generator (default body: the species cues on the animal)")
    p.add_argument("--acol", action="store_true", help="train with an ACoL head")
    p.add_argument("--stages", type=int, default=None,
                   help="--acol on a registered backbone: keep its first N stages")
    p.add_argument("--decoys", type=float, default=1.0,
                   help="--cues body: share of the images with decoys on the background")
    p.add_argument("--layer", default=None,
                   help="layer of the layer-taking methods (default: DEFAULT_LAYERS for a "
                        "registered classifier; 'auto': pyseg.interpret.default_layer)")
    p.add_argument("--checkpoint", default=None,
                   help="load the weights from this file if it exists, else train and save")
    p.add_argument("--methods", default=",".join(METHODS),
                   help="comma-separated, or 'all' (every built-in interpreter)")
    p.add_argument("--train", type=int, default=1024)
    p.add_argument("--test", type=int, default=200)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--size", type=int, default=None,
                   help="image side (default 64; small-convnet 128)")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--translate", type=float, default=None,
                   help="training augmentation: largest random shift, fraction of the side "
                        "(default: DEFAULT_TRANSLATE for a registered classifier, else 0)")
    p.add_argument("--weight-decay", type=float, default=0.0,
                   help="AdamW weight decay (default 0: Adam)")
    p.add_argument("--tolerance", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--hs-samples", type=int, default=256,
                   help="hide-and-seek and RISE masks per image")
    args = p.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # each line as soon as it is measured
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    t0 = time.perf_counter()
    seg = args.task == "segmentation"
    size = args.size or DEFAULT_SIZES.get(args.arch, 64)
    layer = args.layer
    if layer is None and not seg and not args.acol:
        layer = DEFAULT_LAYERS.get(args.arch)
    layer = None if layer == "auto" else layer
    if args.translate is None:
        args.translate = 0.0 if seg else DEFAULT_TRANSLATE.get(args.arch, 0.0)
    model = (small_unet(args.width) if seg else
             classifier(args.arch, size, args.width, args.acol, args.stages))
    trained = args.checkpoint is not None and os.path.exists(args.checkpoint)
    xte, yte, mte = load_split("test", args.test, size, trimaps=seg, cues=args.cues,
                               decoys=args.decoys)
    if not trained:
        xtr, ytr, _ = load_split("train", args.train, size, trimaps=seg, cues=args.cues,
                                 decoys=args.decoys)
    t_data = time.perf_counter() - t0
    if trained:
        model.load_state_dict(torch.load(args.checkpoint, weights_only=True))
        model.eval()
        what = f"weights from {args.checkpoint}"
    else:
        t0, c0 = time.perf_counter(), time.thread_time()
        losses = train(model, xtr, ytr, args.epochs, batch=args.batch, lr=args.lr,
                       seed=args.seed, translate=args.translate,
                       weight_decay=args.weight_decay)
        what = (f"train {time.perf_counter() - t0:.1f}s wall, {time.thread_time() - c0:.1f}s "
                f"thread CPU ({args.train} images x {args.epochs} epochs, seed {args.seed}, "
                f"translate {args.translate}, weight decay {args.weight_decay}), final loss "
                f"{losses[-1]:.3f}")
        if args.checkpoint is not None:
            torch.save(model.state_dict(), args.checkpoint)
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte).float().mean().item()  # pixel accuracy if seg
    area = mte.float().mean().item()
    name = "u-net" if seg else args.arch + (" + ACoL" if args.acol else "")
    print(f"{name}, cues={args.cues}, decoys={args.decoys}, {size}px: data {t_data:.1f}s, "
          f"{what}; test accuracy {acc:.3f} on {args.test} images, object covers {area:.1%} "
          f"of the pixels (the hit rate of a random point); layer "
          f"{layer or 'default (pyseg.interpret.default_layer)'}")
    methods = ALL_METHODS if args.methods == "all" else tuple(args.methods.split(","))
    print(f"{'method':<22}{'pointing hit rate':>18}{'seconds':>10}"
          + ("" if seg else f"{'cats':>8}{'dogs':>8}"))
    for method, (rate, secs, per_class) in evaluate(
            model, xte, None if seg else yte, mte, methods=methods, tolerance=args.tolerance,
            hs_samples=args.hs_samples, layer=layer).items():
        print(f"{method:<22}{rate:>18.3f}{secs:>10.1f}" + "".join(f"{r:>8.3f}" for r in per_class))
    if args.acol and not seg:
        print(f"{'ACoL map':<22}{'animal coverage':>18}{'IoU':>10}")
        for label, (cov, iou) in coverage(model, xte, yte, mte).items():
            print(f"{label:<22}{cov:>18.3f}{iou:>10.3f}")


if __name__ == "__main__":
    main()
