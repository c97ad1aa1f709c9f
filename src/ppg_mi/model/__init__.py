"""What a model checkpoint is (estimator + model card), how it is saved, loaded and served."""

from .checkpoint import (
    Checkpoint,
    ModelCardMismatch,
    ModelDigestMismatch,
    ModelError,
    load_checkpoint,
    save_checkpoint,
)
from .estimators import MODEL_KINDS, build_estimator
from .store import ModelStore

__all__ = [
    "Checkpoint",
    "MODEL_KINDS",
    "ModelCardMismatch",
    "ModelDigestMismatch",
    "ModelError",
    "ModelStore",
    "build_estimator",
    "load_checkpoint",
    "save_checkpoint",
]
