"""Training, evaluation and checkpoints."""

from pyseg.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from pyseg.engine.metrics import confusion_matrix, metrics_from_confusion
from pyseg.engine.trainer import (
    DEFAULT_ARCH,
    TrainConfig,
    TrainResult,
    build_model,
    build_model_from_state,
    evaluate_model,
    train,
)

__all__ = [
    "DEFAULT_ARCH",
    "CheckpointError",
    "TrainConfig",
    "TrainResult",
    "build_model",
    "build_model_from_state",
    "confusion_matrix",
    "evaluate_model",
    "load_checkpoint",
    "metrics_from_confusion",
    "save_checkpoint",
    "train",
]
