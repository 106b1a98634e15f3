"""The training loop behind ``pyseg train`` (single process or DistributedDataParallel).

Python API::

    from pyseg.engine import TrainConfig, train
    result = train(TrainConfig(arch="pets-encdec", data="synthetic-pets", epochs=5, out="runs/x"))

``train`` also takes a ready ``nn.Module`` (``model=``) and datasets (``train_set=``,
``val_set=``) instead of names. Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment)
it initializes the process group itself (gloo on CPU, nccl on CUDA), shards the data with a
``DistributedSampler``, all-reduces the metrics, and only rank 0 writes files.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from pyseg.engine.checkpoint import FORMAT, load_checkpoint, save_checkpoint
from pyseg.engine.metrics import confusion_matrix, metrics_from_confusion

DEFAULT_ARCH = "unet"


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in the checkpoint)."""

    arch: str = DEFAULT_ARCH
    arch_kwargs: dict = field(default_factory=dict)
    data: str = "synthetic-pets"
    img_size: int = 64
    epochs: int = 9
    batch_size: int = 8
    lr: float = 1e-3
    optimizer: str = "rmsprop"
    lr_schedule: str = "cosine"  # "cosine" (per step, to zero at the last step) or "constant"
    out: str = "runs/train"
    resume: bool = False
    device: str = "cpu"
    seed: int = 0
    hide_and_seek: bool = False
    task: str = "segmentation"
    train_samples: int | None = None  # synthetic data: number of training / validation images
    val_samples: int | None = None
    num_workers: int = 0
    quiet: bool = False
    plots: bool = True


# ----------------------------------------------------------------------- helpers

def build_model(arch: str, num_classes: int, arch_kwargs: dict | None = None) -> nn.Module:
    """Build an architecture by registry name, or by import path ``"package.module:factory"``.

    Raises ``ValueError`` (with the known names) for an unknown architecture.
    """
    arch_kwargs = dict(arch_kwargs or {})
    if ":" in arch:
        module_name, _, attr = arch.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"cannot import architecture {arch!r}: {e}") from None
        return factory(num_classes=num_classes, in_channels=3, **arch_kwargs)
    from pyseg import registry

    create = getattr(registry, "create_model", None)
    if create is None:
        raise ValueError(f"unknown architecture {arch!r} (no architecture registry available)")
    try:
        return create(arch, num_classes=num_classes, in_channels=3, **arch_kwargs)
    except KeyError as e:
        raise ValueError(str(e.args[0]) if e.args else f"unknown architecture {arch!r}") from None


def _dist_info() -> tuple[int, int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    return 0, 1, 0


def _maybe_init_distributed(device: str) -> bool:
    """Initialize the process group when launched by torchrun; return True if we did."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return False
    if dist.is_initialized():
        return False
    backend = "nccl" if device.startswith("cuda") else "gloo"
    dist.init_process_group(backend=backend)
    return True


class _Shard(Sampler[int]):
    """Every ``world``-th index starting at ``rank``, no padding (exact distributed eval)."""

    def __init__(self, n: int, rank: int, world: int) -> None:
        self.idx = list(range(rank, n, world))

    def __iter__(self):
        return iter(self.idx)

    def __len__(self) -> int:
        return len(self.idx)


class _Augmented(Dataset):
    """Applies an image-only augmentation (e.g. HideAndSeek) to a dataset's images."""

    def __init__(self, base: Dataset, fn: Callable) -> None:
        self.base, self.fn = base, fn

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i):
        x, y = self.base[i]
        return self.fn(x), y


def _make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    name = name.lower()
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    raise ValueError(f"unknown optimizer {name!r}: expected rmsprop, adam or sgd")


def _dataset_mean(dataset: Dataset, max_samples: int = 256) -> torch.Tensor:
    """Per-channel mean of the images, from up to ``max_samples`` evenly spaced samples (the
    fill of hidden patches: the paper hides with the dataset mean, so that the statistics a
    hidden patch feeds the first layer match those of visible pixels on average)."""
    n = len(dataset)
    m = min(n, max_samples)
    total, count = None, 0
    for i in (j * n // m for j in range(m)):
        x = torch.as_tensor(dataset[i][0], dtype=torch.float64)
        s = x.sum(dim=(-2, -1))
        total = s if total is None else total + s
        count += x.shape[-2] * x.shape[-1]
    return (total / count).float()


def _channels_last(device: torch.device | str) -> bool:
    """On CPU, oneDNN's convolutions run faster on NHWC tensors (about 25% per training step
    of the default U-Net on two cores), and pyseg's kernels take either layout."""
    return torch.device(device).type == "cpu"


def _images_to(x: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    x = x.to(device)
    if x.dim() == 4 and _channels_last(device):
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _lr_at(cfg: TrainConfig, step: int, total: int) -> float:
    """The learning rate of ``step`` (0-based) out of ``total``."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if cfg.lr_schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * step / max(total, 1)))
    raise ValueError(f"unknown lr_schedule {cfg.lr_schedule!r}: expected cosine or constant")


def _loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # Sparse cross-entropy: integer class targets, per pixel (N, C, H, W) vs (N, H, W)
    # or per image (N, C) vs (N,).
    return F.cross_entropy(logits, target)


def _progress(iterable, total: int, desc: str, quiet: bool):
    if quiet or not sys.stderr.isatty():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@torch.no_grad()
def evaluate_model(model: nn.Module, dataset: Dataset, class_names, batch_size: int = 32,
                   device: str | torch.device = "cpu", rank: int = 0, world: int = 1) -> dict:
    """Loss, pixel accuracy, per-class IoU and mean IoU of ``model`` on ``dataset``.

    In a distributed run each rank evaluates its shard and the sums are all-reduced, so
    every rank returns the metrics of the whole dataset.
    """
    model.eval()
    n_cls = len(class_names)
    cm = torch.zeros(n_cls, n_cls, dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    count = torch.zeros((), dtype=torch.float64, device=device)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=_Shard(len(dataset), rank, world))
    for x, y in loader:
        x, y = _images_to(x, device), torch.as_tensor(y).to(device)
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        count += y.numel()
        cm += confusion_matrix(logits.argmax(1), y, n_cls)
    if world > 1:
        for t in (cm, loss_sum, count):
            dist.all_reduce(t)
    m = metrics_from_confusion(cm.cpu(), class_names)
    m["loss"] = (loss_sum / count.clamp(min=1)).item()
    return m


# ----------------------------------------------------------------------- training

@dataclass
class TrainResult:
    """What ``train`` returns: the best epoch's metrics, the history, paths, the model."""

    best: dict
    history: list
    out: Path
    model: nn.Module


def _resolve_datasets(cfg: TrainConfig):
    from pyseg.data import resolve_dataset

    kwargs = {}
    if cfg.train_samples is not None:
        kwargs["train_length"] = cfg.train_samples
    if cfg.val_samples is not None:
        kwargs["val_length"] = cfg.val_samples
    train_set, class_names = resolve_dataset(cfg.data, "train", cfg.img_size, cfg.task,
                                             seed=cfg.seed, **kwargs)
    val_set, _ = resolve_dataset(cfg.data, "val", cfg.img_size, cfg.task, seed=cfg.seed, **kwargs)
    return train_set, val_set, class_names


def train(cfg: TrainConfig, model: nn.Module | None = None, train_set: Dataset | None = None,
          val_set: Dataset | None = None, class_names=None,
          on_epoch_end: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train ``cfg.arch`` (or ``model``) on ``cfg.data`` (or the given datasets).

    Writes to ``cfg.out`` (rank 0 only): ``last.pt`` after every epoch, ``best.pt`` (lowest
    validation loss), ``metrics.jsonl`` (one line per epoch), ``metrics.json`` (best epoch),
    ``loss.png`` and ``predictions.png``. With ``cfg.resume`` it continues from ``last.pt``
    exactly where it stopped. ``on_epoch_end(epoch, metrics)`` is called on every rank.
    """
    started_dist = _maybe_init_distributed(cfg.device)
    try:
        return _train(cfg, model, train_set, val_set, class_names, on_epoch_end)
    finally:
        if started_dist and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg, model, train_set, val_set, class_names, on_epoch_end) -> TrainResult:
    rank, world, local_rank = _dist_info()
    device = torch.device(cfg.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda requested but CUDA is not available")
        device = torch.device("cuda", local_rank if world > 1 else (device.index or 0))
        torch.cuda.set_device(device)
    out = Path(cfg.out)

    if train_set is None or val_set is None:
        train_set, val_set, class_names = _resolve_datasets(cfg)
    class_names = list(class_names or getattr(train_set, "class_names", ()))
    if not class_names:
        raise ValueError("class names unknown: pass class_names=")
    if len(train_set) == 0 or len(val_set) == 0:
        raise ValueError(f"empty dataset: {len(train_set)} training, {len(val_set)} validation samples")

    torch.manual_seed(cfg.seed)
    arch_name = cfg.arch
    if model is None:
        model = build_model(cfg.arch, len(class_names), cfg.arch_kwargs)
    elif not cfg.arch:
        arch_name = type(model).__name__
    model = model.to(device)
    if _channels_last(device):
        model = model.to(memory_format=torch.channels_last)
    optimizer = _make_optimizer(cfg.optimizer, model.parameters(), cfg.lr)

    history: list[dict] = []
    start_epoch = 0
    best_val = math.inf
    ckpt_last = out / "last.pt"
    if cfg.resume:
        if not ckpt_last.is_file():
            raise ValueError(f"--resume: no checkpoint to resume from at {ckpt_last}")
        state = load_checkpoint(ckpt_last, map_location=device)
        if state["arch"] != arch_name or list(state["class_names"]) != class_names:
            raise ValueError(f"--resume: {ckpt_last} is for {state['arch']} with classes "
                             f"{list(state['class_names'])}, not {arch_name} with {class_names}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"])
        history = list(state.get("history", []))
        best_val = float(state.get("best_val_loss", math.inf))
        if "rng_state" in state:
            torch.set_rng_state(state["rng_state"].cpu())

    if world > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    fit_set = train_set
    if cfg.hide_and_seek:
        from pyseg.data.patch_hiding import HideAndSeek  # lazy: optional module

        fit_set = _Augmented(train_set, HideAndSeek(grid_size=max(2, cfg.img_size // 16), p=0.5,
                                                    mean=_dataset_mean(train_set)))
    # One sampler for both cases: with world == 1 it is a seeded shuffle; set_epoch makes the
    # order a function of (seed, epoch), so a resumed run sees the same batches.
    sampler = DistributedSampler(fit_set, num_replicas=world, rank=rank, shuffle=True,
                                 seed=cfg.seed, drop_last=False)
    loader = DataLoader(fit_set, batch_size=cfg.batch_size, sampler=sampler,
                        num_workers=cfg.num_workers, drop_last=False)

    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        # metrics.jsonl mirrors the history: rewritten on resume, appended per epoch.
        with open(out / "metrics.jsonl", "w") as f:
            f.writelines(json.dumps(h) + "\n" for h in history)

    config_dict = dataclasses.asdict(cfg)
    config_dict["arch"] = arch_name
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        model.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        n_seen = torch.zeros((), dtype=torch.float64, device=device)
        bar = _progress(loader, len(loader), f"epoch {epoch + 1}/{cfg.epochs}",
                        cfg.quiet or rank != 0)
        for i, (x, y) in enumerate(bar):
            x, y = _images_to(x, device), torch.as_tensor(y).to(device)
            # A pure function of the step, so a resumed run follows the same schedule.
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(cfg, epoch * len(loader) + i, cfg.epochs * len(loader))
            optimizer.zero_grad(set_to_none=True)
            loss = _loss(model(x), y)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach().double() * x.shape[0]
            n_seen += x.shape[0]
            if bar is not loader:
                bar.set_postfix(loss=f"{loss.item():.4f}")
        if world > 1:
            dist.all_reduce(loss_sum)
            dist.all_reduce(n_seen)
        val = evaluate_model(model, val_set, class_names, batch_size=max(cfg.batch_size, 32),
                             device=device, rank=rank, world=world)
        record = {
            "epoch": epoch + 1,
            "train_loss": (loss_sum / n_seen.clamp(min=1)).item(),
            "val_loss": val["loss"],
            "val_pixel_acc": val["pixel_acc"],
            "val_iou": val["iou"],
            "val_miou": val["miou"],
            "seconds": round(time.perf_counter() - t0, 3),
        }
        history.append(record)
        is_best = record["val_loss"] < best_val
        if is_best:
            best_val = record["val_loss"]
        if rank == 0:
            state = {
                "format": FORMAT,
                "arch": arch_name,
                "arch_kwargs": dict(cfg.arch_kwargs),
                "num_classes": len(class_names),
                "class_names": list(class_names),
                "task": cfg.task,
                "img_size": cfg.img_size,
                "epoch": epoch + 1,
                "model": _unwrap(model).state_dict(),
                "optimizer": optimizer.state_dict(),
                "metrics": record,
                "history": history,
                "best_val_loss": best_val,
                "rng_state": torch.get_rng_state(),
                "config": config_dict,
            }
            if is_best:
                save_checkpoint(out / "best.pt", state)
            save_checkpoint(ckpt_last, state)
            with open(out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            if not cfg.quiet:
                ious = " ".join(f"{k}={v:.3f}" for k, v in record["val_iou"].items() if v is not None)
                print(f"epoch {epoch + 1}/{cfg.epochs}  train_loss={record['train_loss']:.4f}  "
                      f"val_loss={record['val_loss']:.4f}  val_acc={record['val_pixel_acc']:.3f}  "
                      f"val_miou={record['val_miou']:.3f} ({ious})  {record['seconds']:.1f}s",
                      flush=True)
            if cfg.plots:
                from pyseg.engine.plots import plot_losses

                plot_losses(history, out / "loss.png")
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, record)

    if not history:
        raise ValueError(f"nothing to train: already at epoch {start_epoch} of {cfg.epochs}")
    best = min(history, key=lambda h: h["val_loss"])
    net = _unwrap(model)
    if rank == 0:
        summary = dict(best)
        summary["best_epoch"] = best["epoch"]
        summary["epochs"] = len(history)
        summary["arch"] = arch_name
        summary["data"] = cfg.data
        summary["img_size"] = cfg.img_size
        tmp = out / ".metrics.json.tmp"
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
        os.replace(tmp, out / "metrics.json")
        if cfg.plots:
            from pyseg.engine.plots import plot_predictions

            best_net = net
            if (out / "best.pt").is_file() and best["epoch"] != history[-1]["epoch"]:
                best_net = build_model_from_state(load_checkpoint(out / "best.pt"), module=net)
            if cfg.task == "segmentation":
                plot_predictions(best_net, val_set, out / "predictions.png", device=device)
    return TrainResult(best=best, history=history, out=out, model=net)


def build_model_from_state(state: dict, module: nn.Module | None = None) -> nn.Module:
    """Rebuild the model saved in a checkpoint dict (``module``: a same-shaped instance to
    copy into instead of building from the architecture name)."""
    import copy

    if module is not None:
        net = copy.deepcopy(module).cpu()
    else:
        net = build_model(state["arch"], int(state["num_classes"]), state.get("arch_kwargs", {}))
    net.load_state_dict(state["model"])
    return net.eval()
