"""The training loop behind ``pyseg train`` (single process or DistributedDataParallel).

Python API::

    from pyseg.engine import TrainConfig, train
    result = train(TrainConfig(arch="pets-encdec", data="synthetic-pets", epochs=5, out="runs/x"))

``train`` also takes a ready ``nn.Module`` (``model=``) and datasets (``train_set=``,
``val_set=``) instead of names. Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment)
it initializes the process group itself (gloo on CPU, nccl on CUDA), shards the training data
with a ``DistributedSampler`` (padded so every rank takes the same number of steps) and the
validation data without padding (every sample counted once), all-reduces the metrics, and
only rank 0 writes files. The README section "Training on several processes or machines"
shows the commands.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from pyseg.engine.checkpoint import load_checkpoint, model_fields, save_checkpoint
from pyseg.engine.devices import resolve_device
from pyseg.engine.metrics import confusion_matrix, metrics_from_confusion
from pyseg.engine.models import build_model, registered_tasks
from pyseg.engine.outputs import check_output_dir, to_json, write_text_atomic

DEFAULT_ARCH = "unet"
OPTIMIZERS = ("rmsprop", "adam", "sgd")
LR_SCHEDULES = ("cosine", "constant")
# The validation metric that picks best.pt, and whether higher values are better.
BEST_METRICS = {"val_miou": True, "val_loss": False}
# What a run writes into its folder.
OUTPUT_FILES = ("best.pt", "last.pt", "metrics.jsonl", "metrics.json", "loss.png",
                "predictions.png")


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in the checkpoint); the fields are the
    options of ``pyseg train`` (``--img-size`` is ``img_size``...). :func:`train` checks them
    and raises ``ValueError`` naming the option for one that cannot run.

    Attributes:
        arch: a registered architecture name or an import path ``"module:factory"``.
        arch_kwargs: options of the architecture (``create_model(arch, **arch_kwargs)``).
        data: a registered dataset name or a folder (see :func:`pyseg.data.resolve_dataset`).
        img_size: the square size images are resized to.
        epochs: the number of passes over the training set.
        batch_size: images per micro-batch, per process.
        lr: the peak learning rate.
        optimizer: ``"rmsprop"``, ``"adam"`` or ``"sgd"``.
        lr_schedule: ``"cosine"`` (per step, to zero at the last step) or ``"constant"``.
        out: the run's folder (checkpoints, metrics, plots).
        resume: True continues the run in ``out`` (it must exist); ``"auto"`` continues it
            when there is one and starts otherwise (what a restarted torchrun worker needs).
        overwrite: replace a run already in ``out`` (otherwise that is an error).
        device: a torch device string (``"cpu"``, ``"cuda"``...).
        seed: seeds the model's initialization, the data order and the synthetic data.
        hide_and_seek: train on images with random patches hidden
            (:class:`pyseg.data.HideAndSeek`).
        task: ``"segmentation"`` or ``"classification"``.
        train_samples: synthetic data: the number of training images (None: its default).
        val_samples: the same for validation.
        num_workers: DataLoader worker processes per rank (a persistent pool).
        accumulate: micro-batches whose gradients make one optimizer step.
        sync_bn: BatchNorm statistics over all ranks (``SyncBatchNorm``; CUDA only).
        ignore_index: the target label left out of the loss and the metrics.
        best_metric: ``"val_miou"`` (highest) or ``"val_loss"`` (lowest) picks ``best.pt``.
        freeze_encoder: a pretrained encoder (a model with ``encoder_parameters()``) gets no
            updates...
        unfreeze_after: ...until this many epochs are done (None: never).
        encoder_lr: the encoder's peak learning rate (None: ``lr``).

    Example::

        >>> from pyseg.engine import TrainConfig
        >>> cfg = TrainConfig(epochs=1, img_size=32, out="runs/demo")
        >>> cfg.arch, cfg.optimizer, cfg.best_metric
        ('unet', 'rmsprop', 'val_miou')
    """

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
    # True: continue the run in `out` (it must exist); "auto": continue it when there is one,
    # else start (what a restarted torchrun worker needs); False: start.
    resume: bool | str = False
    overwrite: bool = False  # replace the run already in `out` (else that is an error)
    device: str = "cpu"
    seed: int = 0
    hide_and_seek: bool = False
    task: str = "segmentation"
    train_samples: int | None = None  # synthetic data: number of training / validation images
    val_samples: int | None = None
    num_workers: int = 0  # DataLoader worker processes per rank (a persistent pool)
    accumulate: int = 1  # micro-batches of batch_size whose gradients make one optimizer step
    sync_bn: bool = False  # BatchNorm statistics over all ranks (SyncBatchNorm; CUDA only)
    ignore_index: int = 255  # target label left out of the loss and the metrics
    best_metric: str = "val_miou"  # "val_miou" (highest) or "val_loss" (lowest) picks best.pt
    # Pretrained encoders (models with encoder_parameters()/set_encoder_frozen(), see README):
    freeze_encoder: bool = False  # the encoder gets no updates...
    unfreeze_after: int | None = None  # ...until this many epochs are done (None: never)
    encoder_lr: float | None = None  # the encoder's peak learning rate (None: --lr)


# Fields that may differ between a run and its resumption: where and how it runs, not what
# it learns. The batch split is one of them: what must match is the effective batch size,
# batch_size x accumulate x world_size (so a run restarted on fewer processes continues with
# a larger --accumulate).
_RUN_ONLY_FIELDS = ("out", "resume", "overwrite", "device", "num_workers", "batch_size",
                    "accumulate", "world_size")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped (last.pt holds the last finite epoch).

    Raised by :func:`train` with a message that names the epoch; a ``RuntimeError``.

    Example::

        >>> from pyseg.engine import NonFiniteLossError
        >>> issubclass(NonFiniteLossError, RuntimeError)
        True
    """


@dataclass
class TrainResult:
    """What ``train`` returns: the best epoch's metrics, the history, paths, the model.

    Attributes:
        best: the metrics of the best epoch (by ``TrainConfig.best_metric``), with ``epoch``.
        history: one metrics dict per epoch, in order.
        out: the run's folder.
        model: the trained model itself (never a DistributedDataParallel wrapper).
        written: the files this run wrote into ``out``.

    Example (:func:`train` shows one returned by a run)::

        >>> import dataclasses
        >>> from pyseg.engine import TrainResult
        >>> [f.name for f in dataclasses.fields(TrainResult)]
        ['best', 'history', 'out', 'model', 'written']
    """

    best: dict
    history: list
    out: Path
    model: nn.Module
    written: list[str] = field(default_factory=list)  # files this run wrote into `out`


# ----------------------------------------------------------------------- helpers

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
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if restart is None:
        dist.init_process_group(backend=backend)
        return True
    # torchrun keeps one store for every restart of a run, so the addresses that the processes
    # of an earlier attempt published are still in it; a rank of the new attempt can read one
    # before its owner rewrites it and then tries to connect to a process that is gone
    # ("Connection refused"). A key prefix per attempt keeps the attempts apart.
    store, rank, world = next(dist.rendezvous("env://"))
    dist.init_process_group(backend=backend, store=dist.PrefixStore(f"attempt-{restart}", store),
                            rank=rank, world_size=world)
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
    """Applies a random image-only augmentation (e.g. HideAndSeek) to a dataset's images.

    Indexed by ``(epoch, index)`` pairs (from :class:`_WithEpoch`): the augmentation draws
    from torch's RNG seeded by ``(seed, epoch, index)``, so what a sample gets does not depend
    on which process loads it: the same with any number of workers, ranks, or after a resume.
    """

    def __init__(self, base: Dataset, fn: Callable, seed: int) -> None:
        self.base, self.fn, self.seed = base, fn, seed

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]):
        epoch, i = key
        x, y = self.base[i]
        sample_seed = np.random.SeedSequence([self.seed, epoch, i]).generate_state(1)[0]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(sample_seed))
            return self.fn(x), y


class _WithEpoch(Sampler):
    """The indices of a ``DistributedSampler`` paired with its current epoch."""

    def __init__(self, sampler: DistributedSampler) -> None:
        self.sampler = sampler

    def __iter__(self):
        return ((self.sampler.epoch, i) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


# Keyword arguments that say how to initialize a model, not what it is: left out of the
# checkpoint's arch_kwargs, so that loading a checkpoint never reads the weights file again
# (the normalization they imply is stored as the model's resolved input_norm instead).
_INIT_ONLY_KWARGS = ("encoder_weights", "freeze_encoder")


def _stored_arch_kwargs(arch_kwargs: dict, net: nn.Module) -> dict:
    kept = {k: v for k, v in arch_kwargs.items() if k not in _INIT_ONLY_KWARGS}
    if len(kept) < len(arch_kwargs) and isinstance(getattr(net, "input_norm", None), str):
        kept["input_norm"] = net.input_norm
    return kept


def _encoder_frozen_at(cfg: TrainConfig, epoch: int) -> bool:
    """Whether the encoder is frozen during ``epoch`` (0-based): a pure function of the
    epoch, so that a resumed run freezes and unfreezes where the original did."""
    return cfg.freeze_encoder and (cfg.unfreeze_after is None or epoch < cfg.unfreeze_after)


def _param_groups(cfg: TrainConfig, net: nn.Module):
    """The optimizer's parameters: one group, or with ``cfg.encoder_lr`` the encoder's and
    the rest's, each with its ``lr_scale`` (the ratio to ``cfg.lr`` that the schedule keeps).

    Raises ``ValueError`` when an encoder option is given for a model without an encoder.
    """
    if (cfg.freeze_encoder or cfg.encoder_lr is not None) and not hasattr(
            net, "encoder_parameters"):
        flag = "--freeze-encoder" if cfg.freeze_encoder else "--encoder-lr"
        raise ValueError(f"{flag}: architecture {cfg.arch!r} has no pretrainable encoder "
                         "(FCN, DeconvNet, SegNet and U-Net with a timm encoder have one)")
    if cfg.encoder_lr is None:
        return net.parameters()
    encoder = list(net.encoder_parameters())
    ids = {id(p) for p in encoder}
    rest = [p for p in net.parameters() if id(p) not in ids]
    return [{"params": encoder, "lr": cfg.encoder_lr, "lr_scale": cfg.encoder_lr / cfg.lr},
            {"params": rest, "lr": cfg.lr, "lr_scale": 1.0}]


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
    x = x.to(device, non_blocking=True)  # asynchronous from pinned memory on CUDA
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


def _check_output_shape(logits: torch.Tensor, target: torch.Tensor, num_classes: int) -> None:
    """A model of the wrong task or class count fails here with one line, not inside the loss."""
    want = (f"(N, {num_classes}, H, W) at the input's size" if target.dim() == 3
            else f"(N, {num_classes})")
    ok = (logits.dim() == target.dim() + 1 and logits.shape[1] == num_classes
          and logits.shape[2:] == target.shape[1:])
    if not ok:
        task = "segmentation" if target.dim() == 3 else "classification"
        raise ValueError(f"the model outputs {list(logits.shape)} for {task} targets of shape "
                         f"{list(target.shape)}; it should output {want}")


def _loss_sum(logits: torch.Tensor, target: torch.Tensor, ignore_index: int):
    """``(summed cross-entropy, number of counted targets)``: sparse cross-entropy over
    integer class targets, per pixel (N, C, H, W) vs (N, H, W) or per image (N, C) vs (N,),
    leaving out targets equal to ``ignore_index``."""
    total = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="sum")
    return total, (target != ignore_index).sum()


def _loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    # The mean over counted targets; 0 (not 0/0) for a batch whose targets are all ignored.
    total, count = _loss_sum(logits, target, ignore_index)
    return total / count.clamp(min=1)


def _progress(iterable, total: int, desc: str, quiet: bool):
    if quiet or not sys.stderr.isatty():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _loader(dataset: Dataset, batch_size: int, sampler: Sampler, num_workers: int,
            device: torch.device | str, seed: int) -> DataLoader:
    """A DataLoader with a persistent pool of ``num_workers`` processes (pinned memory on
    CUDA). Its own generator keeps it from drawing on torch's global RNG, which is then the
    model's alone (dropout) whatever the number of workers."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      persistent_workers=num_workers > 0,
                      pin_memory=torch.device(device).type == "cuda",
                      generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def evaluate_model(model: nn.Module, dataset: Dataset, class_names, batch_size: int = 32,
                   device: str | torch.device = "cpu", rank: int = 0, world: int = 1,
                   ignore_index: int = 255, loader: DataLoader | None = None) -> dict:
    """Loss, pixel accuracy, per-class IoU and mean IoU of ``model`` on ``dataset``.

    Targets equal to ``ignore_index`` count neither in the loss nor in the metrics. In a
    distributed run each rank evaluates every ``world``-th sample (no padding: the shards
    may differ in size by one) and the sums are all-reduced, so every rank returns the exact
    metrics of the whole dataset. ``loader`` replaces the one built here (it must iterate
    this rank's shard).

    Args:
        model: a segmentation model, ``(N, C, H, W)`` images to ``(N, classes, H, W)`` logits.
        dataset: ``(image, mask)`` pairs, masks of class indices.
        class_names: one name per class (their number is the number of classes).
        batch_size: images per batch.
        device: where to compute.
        rank: this process's rank (distributed evaluation).
        world: the number of processes.
        ignore_index: the mask label that is not counted.
        loader: a ready DataLoader to use instead of one built from ``dataset``.

    Returns:
        The dict of :func:`pyseg.engine.metrics_from_confusion` plus ``"loss"`` (mean
        cross-entropy over the counted pixels).

    Raises:
        ValueError: the model's output does not fit the masks or the number of classes.

    Example: a model that always predicts class 0, on masks half 0 and half ignored::

        >>> from pyseg.engine import evaluate_model
        >>> class Zero(torch.nn.Module):
        ...     def forward(self, x):
        ...         return torch.stack([x[:, 0] * 0 + 1, x[:, 0] * 0], 1)
        >>> masks = torch.zeros(4, 2, 2, dtype=torch.long)
        >>> masks[:, 1] = 255
        >>> data = torch.utils.data.TensorDataset(torch.rand(4, 3, 2, 2), masks)
        >>> m = evaluate_model(Zero(), data, ["bg", "fg"], batch_size=2)
        >>> m["pixel_acc"], m["iou"]
        (1.0, {'bg': 1.0, 'fg': None})
    """
    # The module itself, not its DistributedDataParallel wrapper: the wrapper's forward may
    # broadcast buffers, a collective that ranks with fewer batches would never join.
    model = _unwrap(model)
    model.eval()
    n_cls = len(class_names)
    cm = torch.zeros(n_cls, n_cls, dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    count = torch.zeros((), dtype=torch.float64, device=device)
    if loader is None:
        loader = _loader(dataset, batch_size, _Shard(len(dataset), rank, world), 0, device, 0)
    for x, y in loader:
        x, y = _images_to(x, device), torch.as_tensor(y).to(device, non_blocking=True)
        logits = model(x)
        _check_output_shape(logits, y, n_cls)
        batch_loss, batch_count = _loss_sum(logits, y, ignore_index)
        loss_sum += batch_loss.double()
        count += batch_count
        cm += confusion_matrix(logits.argmax(1), y, n_cls, ignore_index=ignore_index)
    if world > 1:
        for t in (cm, loss_sum, count):
            dist.all_reduce(t)
    m = metrics_from_confusion(cm.cpu(), class_names)
    m["loss"] = (loss_sum / count.clamp(min=1)).item()
    return m


def _best_record(history: list[dict], metric: str) -> dict:
    """The epoch with the best ``metric`` (the first of equals)."""
    pick = max if BEST_METRICS[metric] else min
    return pick(history, key=lambda h: h[metric])


# ----------------------------------------------------------------------- set-up

def check_config(cfg: TrainConfig) -> None:
    """Raise ``ValueError`` (one line naming the option) for a configuration that cannot run."""
    for name in ("img_size", "epochs", "batch_size", "accumulate"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    for name in ("train_samples", "val_samples"):
        value = getattr(cfg, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if cfg.num_workers < 0:
        raise ValueError(f"--workers must be >= 0, got {cfg.num_workers}")
    if cfg.resume not in (False, True, "auto"):
        raise ValueError(f"--resume takes no value or 'auto', got {cfg.resume!r}")
    if not cfg.lr > 0 or not math.isfinite(cfg.lr):
        raise ValueError(f"--lr must be a positive number, got {cfg.lr}")
    if cfg.optimizer.lower() not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}: expected rmsprop, adam or sgd")
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown lr_schedule {cfg.lr_schedule!r}: expected cosine or constant")
    if cfg.best_metric not in BEST_METRICS:
        raise ValueError(f"--best-metric must be one of {', '.join(BEST_METRICS)}, "
                         f"got {cfg.best_metric!r}")
    if cfg.encoder_lr is not None and not (cfg.encoder_lr > 0 and math.isfinite(cfg.encoder_lr)):
        raise ValueError(f"--encoder-lr must be a positive number, got {cfg.encoder_lr}")
    if cfg.unfreeze_after is not None:
        if not cfg.freeze_encoder:
            raise ValueError("--unfreeze-after needs --freeze-encoder")
        if cfg.unfreeze_after < 0:
            raise ValueError(f"--unfreeze-after must be >= 0, got {cfg.unfreeze_after}")
    if cfg.resume and cfg.overwrite:
        raise ValueError("--resume continues the run in --out and --overwrite replaces it: "
                         "choose one")


def _check_out(cfg: TrainConfig) -> tuple[Path, bool]:
    """The output folder and whether to resume the run in it, after refusing what would lose
    or mix up an earlier run."""
    out = Path(cfg.out)
    check_output_dir(out)
    last = out / "last.pt"
    if cfg.resume == "auto" and last.is_file():
        return out, True
    if cfg.resume is True and not last.is_file():
        raise ValueError(f"--resume: no checkpoint to resume from at {last}")
    if cfg.resume is not True and not cfg.overwrite:
        found = [n for n in ("last.pt", "best.pt") if (out / n).exists()]
        if found:
            raise ValueError(f"--out {out} already holds a run ({', '.join(found)}): pass "
                             "--resume to continue it or --overwrite to replace it")
    return out, cfg.resume is True


def _select_device(name: str, local_rank: int, world: int) -> torch.device:
    device = resolve_device(name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank if world > 1 else (device.index or 0))
        torch.cuda.set_device(device)
    return device


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


def _datasets(cfg: TrainConfig, train_set, val_set, class_names):
    if train_set is None or val_set is None:
        train_set, val_set, class_names = _resolve_datasets(cfg)
    class_names = list(class_names or getattr(train_set, "class_names", ()))
    if not class_names:
        raise ValueError("class names unknown: pass class_names=")
    if len(train_set) == 0 or len(val_set) == 0:
        raise ValueError(f"empty dataset: {len(train_set)} training, {len(val_set)} validation samples")
    if 0 <= cfg.ignore_index < len(class_names):
        raise ValueError(f"--ignore-index {cfg.ignore_index} is one of the {len(class_names)} "
                         "classes: choose a label no class uses (e.g. 255 or -100)")
    return train_set, val_set, class_names


def _model(cfg: TrainConfig, model: nn.Module | None, num_classes: int,
           device: torch.device) -> tuple[nn.Module, str]:
    """The network on ``device`` and the architecture name stored in the checkpoints."""
    arch_name = cfg.arch
    if model is None:
        declared = registered_tasks(cfg.arch)
        if declared is not None and cfg.task not in declared:
            raise ValueError(f"architecture {cfg.arch!r} is a {' and '.join(sorted(declared))} "
                             f"model, not a {cfg.task} model (--task {cfg.task})")
        model = build_model(cfg.arch, num_classes, cfg.arch_kwargs)
    elif not cfg.arch:
        arch_name = type(model).__name__
    model = model.to(device)
    if _channels_last(device):
        model = model.to(memory_format=torch.channels_last)
    return model, arch_name


def _sync_batchnorm(model: nn.Module, cfg: TrainConfig, device: torch.device) -> nn.Module:
    """With ``cfg.sync_bn``, every BatchNorm layer as a SyncBatchNorm (statistics over the
    whole global batch: what BN-heavy networks need when each process holds a few images)."""
    if not cfg.sync_bn:
        return model
    if device.type != "cuda":
        raise ValueError(f"--sync-bn needs CUDA devices (the nccl backend); SyncBatchNorm "
                         f"does not run on {device.type} (gloo): leave --sync-bn out there")
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def _config_dict(cfg: TrainConfig, arch_name: str, world: int) -> dict:
    return {**dataclasses.asdict(cfg), "arch": arch_name, "world_size": world}


# What the effective batch size is made of: (config field, option, value a checkpoint that
# predates the field had).
_BATCH_FACTORS = (("batch_size", "--batch-size", 8), ("accumulate", "--accumulate", 1),
                  ("world_size", "processes", 1))


def _batch_difference(saved: dict, current: dict) -> str | None:
    """How the effective batch size (batch x accumulate x processes) changed, if it did."""
    now = [current.get(k, d) for k, _, d in _BATCH_FACTORS]
    before = [saved.get(k, d) for k, _, d in _BATCH_FACTORS]
    if math.prod(now) == math.prod(before):
        return None
    changed = [f"{flag} {a} (checkpoint: {b})"
               for (_, flag, _), a, b in zip(_BATCH_FACTORS, now, before) if a != b]
    return (f"{', '.join(changed)}: effective batch size {math.prod(now)} (checkpoint: "
            f"{math.prod(before)}) = --batch-size x --accumulate x processes")


def _config_differences(saved: dict, current: dict) -> list[str]:
    """``--option value (checkpoint: value)`` for each field that defines the run and differs.
    A field the checkpoint predates counts with its default."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)
                if f.default is not dataclasses.MISSING}
    differences = []
    batch = _batch_difference(saved, current)
    if batch:
        differences.append(batch)
    for name, value in current.items():
        if name in _RUN_ONLY_FIELDS:
            continue
        before = saved.get(name, defaults.get(name, {} if name == "arch_kwargs" else None))
        if before != value:
            differences.append(f"--{name.replace('_', '-')} {value!r} (checkpoint: {before!r})")
    return differences


def _resume(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, config: dict,
            class_names: list[str], rank: int) -> tuple[int, list[dict]]:
    """Load the run saved at ``path`` into ``model`` and ``optimizer``; returns
    ``(epochs done, history)``. Refuses a checkpoint of another configuration."""
    # Read on the CPU: load_state_dict copies to the model's and optimizer's device (and
    # torch.load does not take every device string, e.g. "cpu:0").
    state = load_checkpoint(path, map_location="cpu")
    differences = _config_differences(state.get("config", {}), config)
    if list(state["class_names"]) != class_names:
        differences.append(f"classes {class_names} (checkpoint: {list(state['class_names'])})")
    if differences:
        raise ValueError(f"--resume: this run differs from {path}: {'; '.join(differences)}. "
                         "Resume with the same options, or train into another --out")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if "rng_state" in state:
        torch.set_rng_state(state["rng_state"].cpu())
    history = list(state.get("history", []))
    # last.pt is written before best.pt: a run stopped between the two left best.pt behind.
    best_pt = path.with_name("best.pt")
    if (rank == 0 and history and history[-1]["epoch"] == state["epoch"]
            and _best_record(history, config["best_metric"]) is history[-1]
            and not (best_pt.is_file()
                     and load_checkpoint(best_pt)["epoch"] == state["epoch"])):
        save_checkpoint(best_pt, state)
    return int(state["epoch"]), history


def _train_loader(cfg: TrainConfig, train_set: Dataset, rank: int, world: int,
                  device: torch.device):
    # One sampler for both cases: with world == 1 it is a seeded shuffle; set_epoch makes the
    # order a function of (seed, epoch), so a resumed run sees the same batches. Under DDP it
    # pads the shards to equal length (every rank must take the same number of steps).
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True,
                                 seed=cfg.seed, drop_last=False)
    fit_set, fit_sampler = train_set, sampler
    if cfg.hide_and_seek:
        from pyseg.data.patch_hiding import HideAndSeek  # lazy: optional module

        fit_set = _Augmented(train_set, HideAndSeek(grid_size=max(2, cfg.img_size // 16), p=0.5,
                                                    mean=_dataset_mean(train_set)), cfg.seed)
        fit_sampler = _WithEpoch(sampler)
    loader = _loader(fit_set, cfg.batch_size, fit_sampler, cfg.num_workers, device, cfg.seed)
    return loader, sampler


def _start_files(out: Path, history: list[dict], overwrite: bool) -> None:
    """Create the output folder; with ``overwrite`` remove the earlier run's files."""
    out.mkdir(parents=True, exist_ok=True)
    if overwrite:
        for name in OUTPUT_FILES:
            (out / name).unlink(missing_ok=True)
    # metrics.jsonl mirrors the history: rewritten on resume, appended per epoch.
    write_text_atomic(out / "metrics.jsonl", "".join(to_json(h) + "\n" for h in history))


# ----------------------------------------------------------------------- one epoch

def _groups(loader, size: int):
    """The batches of ``loader`` in lists of ``size`` (the last list may be shorter)."""
    group = []
    for batch in loader:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def _train_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                 cfg: TrainConfig, epoch: int, num_classes: int, device: torch.device,
                 world: int, show_progress: bool) -> float:
    """One pass over ``loader``, one optimizer step per ``cfg.accumulate`` batches; returns
    the mean training loss over all ranks."""
    from pyseg.interpret.acol import ACoL

    model.train()
    acol = isinstance(_unwrap(model), ACoL)  # trained with acol_loss (pyseg train --acol)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    n_seen = torch.zeros((), dtype=torch.float64, device=device)
    steps = math.ceil(len(loader) / cfg.accumulate)
    groups = _groups(loader, cfg.accumulate)
    bar = _progress(groups, steps, f"epoch {epoch + 1}/{cfg.epochs}", not show_progress)
    for step, group in enumerate(bar):
        # A pure function of the step, so a resumed run follows the same schedule.
        lr = _lr_at(cfg, epoch * steps + step, cfg.epochs * steps)
        for param_group in optimizer.param_groups:
            param_group["lr"] = lr * param_group.get("lr_scale", 1.0)
        optimizer.zero_grad(set_to_none=True)
        # The step's loss is the mean over all counted targets of the group, as if its
        # batches were one: each batch's summed loss is divided by the group's count.
        targets = [torch.as_tensor(y).to(device, non_blocking=True) for _, y in group]
        counted = sum((t != cfg.ignore_index).sum() for t in targets).clamp(min=1)
        step_loss = torch.zeros((), device=device)
        for k, ((x, _), y) in enumerate(zip(group, targets)):
            x = _images_to(x, device)
            # Under DDP the gradients are all-reduced once per step, in the last backward.
            last = k == len(group) - 1
            sync = contextlib.nullcontext() if last or world == 1 else model.no_sync()
            with sync:
                if acol:  # both branches' losses, the region erased for the label
                    outputs = model(x, y)
                    loss = sum(_loss_sum(o, y, cfg.ignore_index)[0] for o in outputs) / counted
                else:
                    logits = model(x)
                    _check_output_shape(logits, y, num_classes)
                    loss = _loss_sum(logits, y, cfg.ignore_index)[0] / counted
                loss.backward()
            step_loss += loss.detach()
        optimizer.step()
        n_images = sum(x.shape[0] for x, _ in group)
        loss_sum += step_loss.double() * n_images
        n_seen += n_images
        if bar is not groups:
            bar.set_postfix(loss=f"{step_loss.item():.4f}")
    if world > 1:
        dist.all_reduce(loss_sum)
        dist.all_reduce(n_seen)
    return (loss_sum / n_seen.clamp(min=1)).item()


def _check_finite(record: dict, cfg: TrainConfig, out: Path) -> None:
    """Stop the run at the first non-finite loss. Every rank sees the same all-reduced
    values, so every rank stops at the same epoch."""
    for key, what in (("train_loss", "training"), ("val_loss", "validation")):
        if not math.isfinite(record[key]):
            epoch = record["epoch"]
            kept = (f"{out / 'last.pt'} holds epoch {epoch - 1}, the last finite one"
                    if epoch > 1 else "no checkpoint was written")
            raise NonFiniteLossError(
                f"training stopped at epoch {epoch}: the {what} loss is {record[key]} "
                f"(is --lr {cfg.lr:g} too high?); {kept}")


def _checkpoint_state(net: nn.Module, optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                      arch_name: str, class_names: list[str], record: dict,
                      history: list[dict], config: dict) -> dict:
    state = model_fields(arch=arch_name, arch_kwargs=_stored_arch_kwargs(cfg.arch_kwargs, net),
                         class_names=class_names,
                         task=cfg.task, img_size=cfg.img_size, weights=net.state_dict())
    state.update(epoch=record["epoch"], optimizer=optimizer.state_dict(), metrics=record,
                 history=history, rng_state=torch.get_rng_state(), config=config)
    return state


def _print_epoch(record: dict, epochs: int) -> None:
    ious = " ".join(f"{k}={v:.3f}" for k, v in record["val_iou"].items() if v is not None)
    print(f"epoch {record['epoch']}/{epochs}  train_loss={record['train_loss']:.4f}  "
          f"val_loss={record['val_loss']:.4f}  val_acc={record['val_pixel_acc']:.3f}  "
          f"val_miou={record['val_miou']:.3f} ({ious})  {record['seconds']:.1f}s", flush=True)


def _epoch_record(epoch: int, train_loss: float, val: dict, seconds: float) -> dict:
    """One line of metrics.jsonl."""
    return {
        "epoch": epoch,
        "train_loss": train_loss,
        "val_loss": val["loss"],
        "val_pixel_acc": val["pixel_acc"],
        "val_iou": val["iou"],
        "val_miou": val["miou"],
        "seconds": round(seconds, 3),
    }


def _save_epoch(out: Path, state: dict, history: list[dict], cfg: TrainConfig, quiet: bool,
                plots: bool) -> list[str]:
    """Rank 0's files after an epoch (best.pt when it is the best so far, last.pt, the
    metrics line, the loss curve); returns the names written."""
    record = history[-1]
    save_checkpoint(out / "last.pt", state)  # first: resuming repairs a best.pt left behind
    written = ["last.pt"]
    if _best_record(history, cfg.best_metric) is record:
        save_checkpoint(out / "best.pt", state)
        written.append("best.pt")
    with open(out / "metrics.jsonl", "a") as f:
        f.write(to_json(record) + "\n")
    if not quiet:
        _print_epoch(record, cfg.epochs)
    if plots:
        from pyseg.engine.plots import plot_losses

        plot_losses(history, out / "loss.png")
        written.append("loss.png")
    return written


# ----------------------------------------------------------------------- end of the run

def _write_summary(out: Path, best: dict, history: list[dict], cfg: TrainConfig,
                   arch_name: str) -> None:
    summary = {**best, "best_epoch": best["epoch"], "best_metric": cfg.best_metric,
               "epochs": len(history), "arch": arch_name, "data": cfg.data,
               "img_size": cfg.img_size}
    write_text_atomic(out / "metrics.json", to_json(summary, indent=2) + "\n")


def _finish(out: Path, net: nn.Module, best: dict, history: list[dict], cfg: TrainConfig,
            arch_name: str, val_set: Dataset, device: torch.device, plots: bool) -> list[str]:
    """Rank 0's files at the end of the run; returns the names written."""
    _write_summary(out, best, history, cfg, arch_name)
    if not (plots and cfg.task == "segmentation"):
        return ["metrics.json"]
    from pyseg.engine.plots import plot_predictions

    plot_predictions(_best_model(net, out, best, history[-1]), val_set, out / "predictions.png",
                     device=device)
    return ["metrics.json", "predictions.png"]


def _best_model(net: nn.Module, out: Path, best: dict, last: dict) -> nn.Module:
    """``net`` with the weights of the best epoch (read back from best.pt if not the last)."""
    if best["epoch"] == last["epoch"] or not (out / "best.pt").is_file():
        return net
    best_net = copy.deepcopy(net)
    best_net.load_state_dict(load_checkpoint(out / "best.pt", map_location="cpu")["model"])
    return best_net


# ----------------------------------------------------------------------- training

def train(cfg: TrainConfig, model: nn.Module | None = None, train_set: Dataset | None = None,
          val_set: Dataset | None = None, class_names=None,
          on_epoch_end: Callable[[int, dict], None] | None = None, *, quiet: bool = False,
          plots: bool = True) -> TrainResult:
    """Train ``cfg.arch`` (or ``model``) on ``cfg.data`` (or the given datasets).

    Writes to ``cfg.out`` (rank 0 only): ``last.pt`` after every epoch, ``best.pt`` (best
    ``cfg.best_metric``: highest validation mIoU by default), ``metrics.jsonl`` (one line per
    epoch), ``metrics.json`` (best epoch) and, with ``plots``, ``loss.png`` and
    ``predictions.png``. With ``cfg.resume`` it continues from ``last.pt`` exactly where it
    stopped (the configuration must match the checkpoint's); with ``cfg.resume="auto"`` it
    does so when ``last.pt`` exists and starts otherwise; a folder that already holds a
    run needs ``cfg.overwrite`` otherwise. ``quiet`` hides the progress bar and the
    per-epoch lines. ``on_epoch_end(epoch, metrics)`` is called on every rank.

    Args:
        cfg: the run's :class:`TrainConfig`.
        model: a ready model to train instead of building ``cfg.arch``.
        train_set: a dataset of ``(image, target)`` pairs instead of ``cfg.data``.
        val_set: the validation dataset that goes with ``train_set``.
        class_names: the class names of the given datasets.
        on_epoch_end: called as ``on_epoch_end(epoch, metrics)`` after every epoch.
        quiet: no progress bar, no per-epoch lines.
        plots: also write ``loss.png`` and ``predictions.png``.

    Returns:
        A :class:`TrainResult`.

    Raises ``ValueError`` for a configuration or data that cannot be used, and
    :class:`NonFiniteLossError` when the loss becomes NaN or infinite.

    Example: one epoch of a tiny U-Net on four synthetic images::

        >>> import os, tempfile
        >>> from pyseg.engine import TrainConfig, train
        >>> out = os.path.join(tempfile.mkdtemp(), "run")
        >>> cfg = TrainConfig(arch="unet", arch_kwargs={"base_channels": 4, "depth": 2},
        ...                   img_size=16, epochs=1, batch_size=2, train_samples=2,
        ...                   val_samples=2, out=out)
        >>> result = train(cfg, quiet=True, plots=False)
        >>> len(result.history), sorted(result.written)
        (1, ['best.pt', 'last.pt', 'metrics.json', 'metrics.jsonl'])
    """
    check_config(cfg)
    started_dist = _maybe_init_distributed(cfg.device)
    try:
        result = _train(cfg, model, train_set, val_set, class_names, on_epoch_end, quiet, plots)
        if started_dist:
            # Rank 0 may still be writing its files: no rank tears its connections down while
            # another still uses the group (only on success: after an error a barrier could wait
            # for a rank that is gone).
            dist.barrier()
        return result
    finally:
        if started_dist and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg, model, train_set, val_set, class_names, on_epoch_end, quiet,
           plots) -> TrainResult:
    rank, world, local_rank = _dist_info()
    device = _select_device(cfg.device, local_rank, world)
    out, resuming = _check_out(cfg)
    train_set, val_set, class_names = _datasets(cfg, train_set, val_set, class_names)

    torch.manual_seed(cfg.seed)
    model, arch_name = _model(cfg, model, len(class_names), device)
    model = _sync_batchnorm(model, cfg, device)
    optimizer = _make_optimizer(cfg.optimizer, _param_groups(cfg, model), cfg.lr)
    config = _config_dict(cfg, arch_name, world)
    start_epoch, history = 0, []
    if resuming:
        start_epoch, history = _resume(out / "last.pt", model, optimizer, config, class_names,
                                       rank)
        if not quiet and rank == 0:
            print(f"resuming {out / 'last.pt'} at epoch {start_epoch} of {cfg.epochs}",
                  flush=True)

    def wrap(net: nn.Module) -> nn.Module:
        # DDP reduces the parameters that require gradients when it is built: after the
        # encoder is frozen or unfrozen it is built again.
        if world == 1:
            return net
        return nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None)

    frozen = None
    if not cfg.freeze_encoder:
        model = wrap(model)
    loader, sampler = _train_loader(cfg, train_set, rank, world, device)
    val_loader = _loader(val_set, max(cfg.batch_size, 32), _Shard(len(val_set), rank, world),
                         cfg.num_workers, device, cfg.seed)

    written: list[str] = []
    if rank == 0:
        _start_files(out, history, cfg.overwrite)
        written.append("metrics.jsonl")
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        if cfg.freeze_encoder and frozen != _encoder_frozen_at(cfg, epoch):
            frozen = _encoder_frozen_at(cfg, epoch)
            model = wrap(_unwrap(model).set_encoder_frozen(frozen))
        sampler.set_epoch(epoch)
        train_loss = _train_epoch(model, loader, optimizer, cfg, epoch, len(class_names), device,
                                  world, show_progress=not quiet and rank == 0)
        val = evaluate_model(model, val_set, class_names, device=device, rank=rank,
                             world=world, ignore_index=cfg.ignore_index, loader=val_loader)
        record = _epoch_record(epoch + 1, train_loss, val, time.perf_counter() - t0)
        _check_finite(record, cfg, out)
        history.append(record)
        if rank == 0:
            state = _checkpoint_state(_unwrap(model), optimizer, cfg, arch_name, class_names,
                                      record, history, config)
            written += _save_epoch(out, state, history, cfg, quiet, plots)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, record)

    if not history:
        raise ValueError(f"nothing to train: already at epoch {start_epoch} of {cfg.epochs}")
    best = _best_record(history, cfg.best_metric)
    net = _unwrap(model)
    if rank == 0:
        written += _finish(out, net, best, history, cfg, arch_name, val_set, device, plots)
    return TrainResult(best=best, history=history, out=out, model=net,
                       written=list(dict.fromkeys(written)))
