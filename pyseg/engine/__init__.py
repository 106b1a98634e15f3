"""Training, evaluation and checkpoints."""

from pyseg.engine.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from pyseg.engine.devices import resolve_device
from pyseg.engine.metrics import confusion_matrix, metrics_from_confusion
from pyseg.engine.models import build_model
from pyseg.engine.trainer import (
    BEST_METRICS,
    DEFAULT_ARCH,
    NonFiniteLossError,
    TrainConfig,
    TrainResult,
    evaluate_model,
    train,
)

__all__ = [
    "BEST_METRICS",
    "DEFAULT_ARCH",
    "CheckpointError",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainResult",
    "build_model",
    "confusion_matrix",
    "evaluate_model",
    "load_checkpoint",
    "load_model",
    "metrics_from_confusion",
    "resolve_device",
    "save_checkpoint",
    "train",
]
