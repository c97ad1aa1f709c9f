"""Stand-ins for pure-logic unit tests of the classifier's bookkeeping (no model is fitted)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class FixedCheckpoint:
    """Stands in for a fitted checkpoint: every row gets ``proba``; no resampling, no operating point."""

    version: str = "fixed-1"
    classes: tuple[str, ...] = ("Normal", "MI")
    proba: tuple[float, ...] = (0.3, 0.7)
    samples: int | None = None  # the input length it insists on, if any

    sampling_rate_hz: float | None = None    # no resampling
    threshold: float | None = None           # no operating point: argmax
    operating_point: dict | None = None

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        assert x.ndim == 2 and (self.samples is None or x.shape[1] == self.samples)
        return np.tile(self.proba, (len(x), 1))

    def decide(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        proba = self.predict_proba(x)
        return proba, np.array(self.classes, dtype=object)[proba.argmax(axis=1)]


@dataclass
class FixedModels:
    """Stands in for the classifier's model server: one checkpoint, never reloaded."""

    checkpoint: FixedCheckpoint
    samples_per_record: int

    def maybe_reload(self) -> bool:
        return False
