"""Binary, versioned message contracts of ppg-mi (see docs/messages.md).

Every value starts with two bytes: the schema id and the schema version.  The
rest is a fixed little-endian header followed by variable parts (record id,
model version, float32 samples or scores).  Decoding anything else raises
:class:`DecodeError`, whose ``reason`` is a short, stable token used as the
dead-letter reason and as a metric label.
"""

from __future__ import annotations

import math
import struct
import time
from dataclasses import dataclass

import numpy as np

from .exceptions import DecodeError

SCHEMA_RECORDING = 1
SCHEMA_PREDICTION = 2
VERSION_RECORDING = 1
#: written by this code; version 1 (no operating point) is still read
VERSION_PREDICTION = 2
PREDICTION_VERSIONS_READ = (1, 2)

#: label codes on the wire; -1 means "no true label"
LABELS = ("Normal", "MI")
NO_LABEL = -1

# schema, version, label, flags, shard, id_len, sampling_rate, produced_us, filtered_us, n_samples
_RECORDING = struct.Struct("<BBbBHHfqqI")
# schema, version, true_label, predicted_label, shard, id_len, version_len, n_scores,
# produced_us, filtered_us, predicted_us
_PREDICTION = struct.Struct("<BBbbHHHHqqq")
# version 2 appends after the scores: threshold, target sensitivity, validation sensitivity,
# specificity and Brier score of the model's operating point (NaN: none)
_OPERATING_POINT = struct.Struct("<fffff")
_PREFIX = struct.Struct("<BB")
_F32 = np.dtype("<f4")

MAX_RECORD_ID_BYTES = 256
MAX_SAMPLES = 1 << 20


def now_us() -> int:
    """Wall-clock time in microseconds since the epoch (the unit of every timestamp)."""
    return time.time_ns() // 1000


def label_code(label: str | None) -> int:
    if label is None:
        return NO_LABEL
    return LABELS.index(label)


def label_name(code: int) -> str | None:
    return None if code == NO_LABEL else LABELS[code]


@dataclass
class Recording:
    """One PPG recording: raw on ``ppg.raw``, filtered on ``ppg.filtered``."""

    record_id: str
    samples: np.ndarray
    sampling_rate_hz: float
    label: str | None = None
    shard: int = 0
    produced_us: int = 0
    filtered_us: int = 0

    def encode(self) -> bytes:
        rid = self.record_id.encode("utf-8")
        if not rid or len(rid) > MAX_RECORD_ID_BYTES:
            raise ValueError(f"record id must be 1..{MAX_RECORD_ID_BYTES} bytes, got {len(rid)}")
        samples = np.ascontiguousarray(self.samples, dtype=_F32)
        header = _RECORDING.pack(
            SCHEMA_RECORDING,
            VERSION_RECORDING,
            label_code(self.label),
            0,
            self.shard,
            len(rid),
            self.sampling_rate_hz,
            self.produced_us,
            self.filtered_us,
            samples.size,
        )
        return b"".join((header, rid, samples.tobytes()))


@dataclass
class Prediction:
    """The classifier's verdict on one recording, on ``ppg.predictions``."""

    record_id: str
    predicted_label: str
    scores: dict[str, float]
    model_version: str
    true_label: str | None = None
    shard: int = 0
    produced_us: int = 0
    filtered_us: int = 0
    predicted_us: int = 0
    #: the model's operating point: ``predicted_label`` is MI when ``scores["MI"]`` (then a calibrated
    #: probability) reaches it; None for a model without one (the label is the argmax of the scores)
    threshold: float | None = None
    #: the MI sensitivity the threshold was chosen for, and the held-out (out-of-fold) sensitivity,
    #: specificity and Brier score it gave at training time (model card ``params.validation``)
    target_sensitivity: float | None = None
    validation_sensitivity: float | None = None
    validation_specificity: float | None = None
    validation_brier: float | None = None

    def operating_point_fields(self) -> tuple[float | None, ...]:
        return (self.threshold, self.target_sensitivity, self.validation_sensitivity,
                self.validation_specificity, self.validation_brier)

    def encode(self) -> bytes:
        rid = self.record_id.encode("utf-8")
        version = self.model_version.encode("utf-8")
        scores = np.array([self.scores.get(label, 0.0) for label in LABELS], dtype=_F32)
        header = _PREDICTION.pack(
            SCHEMA_PREDICTION,
            VERSION_PREDICTION,
            label_code(self.true_label),
            label_code(self.predicted_label),
            self.shard,
            len(rid),
            len(version),
            scores.size,
            self.produced_us,
            self.filtered_us,
            self.predicted_us,
        )
        operating_point = _OPERATING_POINT.pack(*(math.nan if v is None else v for v in self.operating_point_fields()))
        return b"".join((header, rid, version, scores.tobytes(), operating_point))

    @property
    def latency_s(self) -> float:
        """End-to-end latency, produced → predicted, in seconds."""
        return (self.predicted_us - self.produced_us) / 1e6


def _prefix(data: bytes, expected_schema: int, expected_version: int) -> None:
    if len(data) < _PREFIX.size:
        raise DecodeError("truncated", f"{len(data)} bytes is shorter than the 2-byte schema prefix")
    schema, version = _PREFIX.unpack_from(data)
    if schema != expected_schema:
        raise DecodeError("unknown_schema", f"schema id {schema}, expected {expected_schema}")
    if version != expected_version:
        raise DecodeError("unknown_version", f"schema {schema} version {version}, expected {expected_version}")


def _label(code: int) -> str | None:
    if code == NO_LABEL:
        return None
    if 0 <= code < len(LABELS):
        return LABELS[code]
    raise DecodeError("bad_label", f"label code {code}")


def _record_id(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("bad_record_id", "record id is not UTF-8") from None


def decode_recording(data: bytes) -> Recording:
    """Decode a recording; the samples are a read-only float32 view of ``data``."""
    _prefix(data, SCHEMA_RECORDING, VERSION_RECORDING)
    if len(data) < _RECORDING.size:
        raise DecodeError("truncated", f"{len(data)} bytes is shorter than the {_RECORDING.size}-byte header")
    (_, _, label, _, shard, id_len, rate, produced, filtered, n) = _RECORDING.unpack_from(data)
    if id_len == 0:
        raise DecodeError("missing_field", "empty record id")
    if id_len > MAX_RECORD_ID_BYTES:
        # the header holds up to 65,535 bytes, but no stage could write such a record on (found by the fuzzer)
        raise DecodeError("bad_record_id", f"record id of {id_len} bytes, more than {MAX_RECORD_ID_BYTES}")
    if n > MAX_SAMPLES:
        raise DecodeError("oversized", f"{n} samples exceeds the limit of {MAX_SAMPLES}")
    expected = _RECORDING.size + id_len + 4 * n
    if len(data) != expected:
        raise DecodeError("length_mismatch", f"{len(data)} bytes, header announces {expected}")
    if not (math.isfinite(rate) and rate > 0):
        raise DecodeError("bad_sampling_rate", f"sampling rate {rate}")
    start = _RECORDING.size
    rid = _record_id(data[start : start + id_len])
    samples = np.frombuffer(data, dtype=_F32, count=n, offset=start + id_len)
    return Recording(rid, samples, float(rate), _label(label), shard, produced, filtered)



def decode_keyed_recording(key: bytes | None, data: bytes) -> Recording:
    """Decode a recording and check that its message is keyed by its record id.

    Every output is keyed by the record id, so a message whose key says otherwise would come out
    under another key than it went in with: it is a dead letter (``key_mismatch``) instead.
    """
    rec = decode_recording(data)
    if key is not None and key.decode("utf-8", "replace") != rec.record_id:
        raise DecodeError("key_mismatch", f"key {key[:64]!r} != record id {rec.record_id!r}")
    return rec

def decode_prediction(data: bytes) -> Prediction:
    """Decode a prediction of version 2, or of version 1 (before operating points: those fields None)."""
    read_version = VERSION_PREDICTION
    if len(data) >= _PREFIX.size and _PREFIX.unpack_from(data)[1] in PREDICTION_VERSIONS_READ:
        read_version = _PREFIX.unpack_from(data)[1]
    _prefix(data, SCHEMA_PREDICTION, read_version)
    if len(data) < _PREDICTION.size:
        raise DecodeError("truncated", f"{len(data)} bytes is shorter than the {_PREDICTION.size}-byte header")
    (_, _, true, pred, shard, id_len, v_len, n, produced, filtered, predicted) = _PREDICTION.unpack_from(data)
    trailer = _OPERATING_POINT.size if read_version >= 2 else 0
    expected = _PREDICTION.size + id_len + v_len + 4 * n + trailer
    if len(data) != expected:
        raise DecodeError("length_mismatch", f"{len(data)} bytes, header announces {expected}")
    if id_len == 0 or n != len(LABELS):
        raise DecodeError("missing_field", f"record id length {id_len}, {n} scores")
    start = _PREDICTION.size
    rid = _record_id(data[start : start + id_len])
    version = data[start + id_len : start + id_len + v_len].decode("utf-8", errors="replace")
    scores = np.frombuffer(data, dtype=_F32, count=n, offset=start + id_len + v_len)
    predicted_label = _label(pred)
    if predicted_label is None:
        raise DecodeError("missing_field", "no predicted label")
    operating_point: tuple[float | None, ...] = (None, None, None, None, None)
    if trailer:
        operating_point = tuple(None if math.isnan(v) else float(v)
                                for v in _OPERATING_POINT.unpack_from(data, expected - trailer))
    threshold, target, sensitivity, specificity, brier = operating_point
    return Prediction(
        record_id=rid,
        predicted_label=predicted_label,
        scores={label: float(s) for label, s in zip(LABELS, scores)},
        model_version=version,
        true_label=_label(true),
        shard=shard,
        produced_us=produced,
        filtered_us=filtered,
        predicted_us=predicted,
        threshold=threshold,
        target_sensitivity=target,
        validation_sensitivity=sensitivity,
        validation_specificity=specificity,
        validation_brier=brier,
    )
