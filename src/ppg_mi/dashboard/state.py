"""The dashboard's in-memory state: bounded, deduplicated, columnar.

Nothing here knows Kafka or Streamlit.  The reader thread writes, page sessions read
snapshots; a lock guards each structure, and snapshots are copies, so a session never
sees a half-written row.

- :class:`PredictionStore` keeps at most ``capacity`` predictions in numpy columns (a
  ring: the oldest recording is dropped first).  A recording is counted once: a
  second prediction with the same record id (a producer shard run twice, a replay)
  replaces the first in place instead of adding a row.
- :class:`WaveformCache` keeps the samples of the most recent recordings of one topic.
- :class:`DeadLetterCounts` counts dead letters by stage and reason.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..streaming.codec import LABELS, NO_LABEL, Prediction, label_code

#: column name → dtype of a snapshot (see :meth:`PredictionStore.frame`)
COLUMNS = {
    "record_id": object,
    "true_code": np.int8,      # -1: no true label
    "pred_code": np.int8,
    "score_mi": np.float32,
    "model_version": object,   # categorical in the snapshot
    "shard": np.int32,
    "produced_us": np.int64,
    "filtered_us": np.int64,
    "predicted_us": np.int64,
    "received_s": np.float64,  # wall time the dashboard read it
}
MI = LABELS.index("MI")


class PredictionStore:
    """A ring of at most ``capacity`` predictions, one row per record id."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._cols = {name: np.zeros(capacity, dtype=dtype) for name, dtype in COLUMNS.items()}
        self._versions: list[str] = []          # model version strings, coded as int in the ring
        self._version_code: dict[str, int] = {}
        self._version = np.zeros(capacity, dtype=np.int32)
        self._slot_of: dict[str, int] = {}
        self._written = 0                       # distinct rows ever written (ring position)
        self._lock = threading.Lock()
        self.duplicates = 0                     # predictions that replaced an earlier one
        self.evicted = 0                        # rows dropped to stay within capacity
        self.generation = 0                     # bumps on every change (for caching)

    def __len__(self) -> int:
        return min(self._written, self.capacity)

    def add(self, p: Prediction, received_s: float) -> bool:
        """Store ``p``; True if it is a new recording, False if it replaced a known one."""
        with self._lock:
            return self._add(p, received_s)

    def add_many(self, predictions: list[Prediction], received_s: float) -> int:
        """Store several predictions under one lock; returns how many were new recordings."""
        with self._lock:
            return sum(self._add(p, received_s) for p in predictions)

    def _add(self, p: Prediction, received_s: float) -> bool:
        slot = self._slot_of.get(p.record_id)
        new = slot is None
        if new:
            slot = self._written % self.capacity
            if self._written >= self.capacity:
                old = self._cols["record_id"][slot]
                if self._slot_of.get(old) == slot:
                    del self._slot_of[old]
                self.evicted += 1
            self._written += 1
            self._slot_of[p.record_id] = slot
        else:
            self.duplicates += 1
        code = self._version_code.get(p.model_version)
        if code is None:
            code = self._version_code[p.model_version] = len(self._versions)
            self._versions.append(p.model_version)
        c = self._cols
        c["record_id"][slot] = p.record_id
        c["true_code"][slot] = label_code(p.true_label)
        c["pred_code"][slot] = label_code(p.predicted_label)
        c["score_mi"][slot] = p.scores.get("MI", 0.0)
        self._version[slot] = code
        c["shard"][slot] = p.shard
        c["produced_us"][slot] = p.produced_us
        c["filtered_us"][slot] = p.filtered_us
        c["predicted_us"][slot] = p.predicted_us
        c["received_s"][slot] = received_s
        self.generation += 1
        return new

    def frame(self) -> pd.DataFrame:
        """A copy of the stored rows, oldest prediction first (by predicted time)."""
        with self._lock:
            n = len(self)
            data = {name: col[:n].copy() for name, col in self._cols.items() if name != "model_version"}
            codes = self._version[:n].copy()
            versions = list(self._versions)
        data["model_version"] = pd.Categorical.from_codes(codes, categories=versions)
        df = pd.DataFrame(data, columns=list(COLUMNS))
        order = np.argsort(df["predicted_us"].to_numpy(), kind="stable")
        return df.iloc[order].reset_index(drop=True)


@dataclass
class Waveform:
    record_id: str
    samples: np.ndarray
    sampling_rate_hz: float


class WaveformCache:
    """The samples of the ``capacity`` most recently seen recordings of one topic (LRU)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, Waveform] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, record_id: str, samples: np.ndarray, sampling_rate_hz: float) -> None:
        # own a copy: decoded samples are views into the Kafka message buffer
        wave = Waveform(record_id, np.array(samples, dtype=np.float32), sampling_rate_hz)
        with self._lock:
            self._items[record_id] = wave
            self._items.move_to_end(record_id)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def get(self, record_id: str) -> Waveform | None:
        with self._lock:
            return self._items.get(record_id)


class DeadLetterCounts:
    """Dead letters read from the DLQ topic, by (stage, reason)."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def add(self, stage: str, reason: str) -> None:
        with self._lock:
            self._counts[(stage or "?", reason or "?")] += 1

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def table(self) -> pd.DataFrame:
        with self._lock:
            rows = [(s, r, n) for (s, r), n in sorted(self._counts.items())]
        return pd.DataFrame(rows, columns=["stage", "reason", "count"])


__all__ = ["COLUMNS", "MI", "NO_LABEL", "PredictionStore", "Waveform", "WaveformCache", "DeadLetterCounts"]
