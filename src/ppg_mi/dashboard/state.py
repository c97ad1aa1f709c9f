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

Model versions and dead-letter (stage, reason) pairs come from whatever anyone writes to
``ppg.predictions`` and ``ppg.dlq``, so both are bounded too: a value is cut to
:data:`MAX_LABEL_CHARS` (control characters replaced), at most :data:`MAX_MODEL_VERSIONS`
versions present in the ring and :data:`MAX_DLQ_KEYS` (stage, reason) pairs are kept by
name, and the rest is folded into one :data:`OTHER` bucket whose count stays exact.
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
    # the operating point of the model that predicted it, from the message (NaN: none, argmax)
    "threshold": np.float32,
    "target_sensitivity": np.float32,
    "validation_sensitivity": np.float32,
    "validation_specificity": np.float32,
    "validation_brier": np.float32,
}
#: the operating-point columns, in :meth:`Prediction.operating_point_fields` order
OPERATING_POINT_COLUMNS = ("threshold", "target_sensitivity", "validation_sensitivity", "validation_specificity",
                           "validation_brier")
MI = LABELS.index("MI")

#: longest model version, stage or reason kept by name (longer values are cut, "…" appended)
MAX_LABEL_CHARS = 80
#: distinct model versions kept by name among the predictions in memory; more fold into OTHER
MAX_MODEL_VERSIONS = 32
#: distinct (stage, reason) pairs of dead letters kept by name; more fold into (OTHER, OTHER)
MAX_DLQ_KEYS = 64
#: the bucket overflowing values are counted in (a value equal to it is folded too, so it is unique)
OTHER = "(other)"


def bounded_label(value: str | None) -> str:
    """``value`` as shown: control characters replaced, at most :data:`MAX_LABEL_CHARS` long; "?" if empty."""
    if not value:
        return "?"
    if len(value) <= MAX_LABEL_CHARS and value.isprintable():
        return value
    text = "".join(ch if ch.isprintable() else "\ufffd" for ch in value[: MAX_LABEL_CHARS + 1])
    return text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 1] + "…"


class PredictionStore:
    """A ring of at most ``capacity`` predictions, one row per record id.

    Model versions are stored as codes.  A version's code is freed when its last row
    leaves the ring, so the names kept are those of predictions in memory; beyond
    ``max_versions`` of them, a new version's rows are stored under :data:`OTHER`
    (``folded_predictions`` counts them).
    """

    def __init__(self, capacity: int, max_versions: int = MAX_MODEL_VERSIONS) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if max_versions < 1:
            raise ValueError("max_versions must be at least 1")
        self.capacity = capacity
        self.max_versions = max_versions
        self._cols = {name: np.zeros(capacity, dtype=dtype) for name, dtype in COLUMNS.items()}
        # code 0 is OTHER; codes 1..max_versions name versions; a freed code is reused
        self._versions: list[str] = [OTHER]
        self._version_code: dict[str, int] = {}
        self._version_rows = np.zeros(max_versions + 1, dtype=np.int64)   # ring rows per code
        self._free_codes: list[int] = list(range(max_versions, 0, -1))
        self._version = np.zeros(capacity, dtype=np.int32)
        self._slot_of: dict[str, int] = {}
        self._written = 0                       # distinct rows ever written (ring position)
        self._lock = threading.Lock()
        self.duplicates = 0                     # predictions that replaced an earlier one
        self.evicted = 0                        # rows dropped to stay within capacity
        self.folded_predictions = 0             # predictions stored under OTHER (too many versions)
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
                self._release_version(int(self._version[slot]))
                self.evicted += 1
            self._written += 1
            self._slot_of[p.record_id] = slot
        else:
            self.duplicates += 1
            self._release_version(int(self._version[slot]))
        code = self._claim_version(p.model_version)
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
        for name, value in zip(OPERATING_POINT_COLUMNS, p.operating_point_fields()):
            c[name][slot] = np.nan if value is None else value
        self.generation += 1
        return new

    def _claim_version(self, version: str) -> int:
        """The code of ``version`` for one more row: its own, a free one, or OTHER's (0)."""
        name = bounded_label(version)
        code = self._version_code.get(name, 0) if name != OTHER else 0
        if code == 0 and name != OTHER and self._free_codes:
            code = self._free_codes.pop()
            self._version_code[name] = code
            self._set_version_name(code, name)
        if code == 0:
            self.folded_predictions += 1
        self._version_rows[code] += 1
        return code

    def _release_version(self, code: int) -> None:
        """One row of ``code`` left the ring; a version with no rows left frees its code."""
        self._version_rows[code] -= 1
        if code != 0 and self._version_rows[code] == 0:
            del self._version_code[self._versions[code]]
            self._free_codes.append(code)

    def _set_version_name(self, code: int, name: str) -> None:
        while len(self._versions) <= code:
            self._versions.append("")
        self._versions[code] = name

    @property
    def version_names(self) -> int:
        """Model versions currently kept by name (at most ``max_versions``)."""
        with self._lock:
            return len(self._version_code)

    def frame(self) -> pd.DataFrame:
        """A copy of the stored rows, oldest prediction first (by predicted time)."""
        with self._lock:
            n = len(self)
            data = {name: col[:n].copy() for name, col in self._cols.items() if name != "model_version"}
            codes = self._version[:n].copy()
            used = np.flatnonzero(self._version_rows > 0)
            versions = [self._versions[code] for code in used]
        # only the codes in use become categories: freed codes may hold stale (or duplicate) names
        remap = np.zeros(len(self._version_rows), dtype=np.int32)
        remap[used] = np.arange(len(used), dtype=np.int32)
        data["model_version"] = pd.Categorical.from_codes(remap[codes], categories=versions)
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
    """Dead letters read from the DLQ topic, by (stage, reason).

    The header values are cut to :data:`MAX_LABEL_CHARS`; beyond ``max_keys`` distinct
    pairs, a new pair is counted under (:data:`OTHER`, :data:`OTHER`), so ``total`` stays
    exact and ``folded`` says how many dead letters are in that bucket.
    """

    def __init__(self, max_keys: int = MAX_DLQ_KEYS) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.max_keys = max_keys
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self.folded = 0

    def add(self, stage: str, reason: str) -> None:
        key = (bounded_label(stage), bounded_label(reason))
        if OTHER in key:
            key = (OTHER, OTHER)
        with self._lock:
            if key not in self._counts and len(self._counts) >= self.max_keys:
                key = (OTHER, OTHER)
            if key == (OTHER, OTHER):
                self.folded += 1
            self._counts[key] += 1

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def table(self) -> pd.DataFrame:
        with self._lock:
            rows = [(s, r, n) for (s, r), n in sorted(self._counts.items())]
        return pd.DataFrame(rows, columns=["stage", "reason", "count"])


__all__ = ["COLUMNS", "OPERATING_POINT_COLUMNS", "MAX_DLQ_KEYS", "MAX_LABEL_CHARS", "MAX_MODEL_VERSIONS", "MI", "NO_LABEL", "OTHER",
           "bounded_label", "PredictionStore", "Waveform", "WaveformCache", "DeadLetterCounts"]
