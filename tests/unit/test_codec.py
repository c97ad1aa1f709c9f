import numpy as np
import pytest

from ppg_mi.streaming.codec import (
    Prediction,
    Recording,
    decode_prediction,
    decode_recording,
)
from ppg_mi.streaming.exceptions import DecodeError


def _recording(**kw) -> Recording:
    base = dict(record_id="rec-1", samples=np.linspace(-1, 1, 2000, dtype=np.float32),
                sampling_rate_hz=125.0, label="MI", shard=3, produced_us=111, filtered_us=222)
    base.update(kw)
    return Recording(**base)


def test_recording_round_trip_keeps_every_field() -> None:
    rec = _recording()
    back = decode_recording(rec.encode())
    assert back.record_id == "rec-1"
    assert back.label == "MI" and back.shard == 3
    assert back.sampling_rate_hz == 125.0
    assert (back.produced_us, back.filtered_us) == (111, 222)
    np.testing.assert_array_equal(back.samples, rec.samples)


def test_unlabelled_recording_round_trip() -> None:
    assert decode_recording(_recording(label=None).encode()).label is None


def test_recording_is_compact_float32() -> None:
    # 2000 float32 samples + a 32-byte header + the id: no JSON, no float64
    assert len(_recording().encode()) == 32 + len("rec-1") + 4 * 2000


def test_prediction_round_trip() -> None:
    p = Prediction("rec-9", "Normal", {"Normal": 0.75, "MI": 0.25}, "m-1", "MI", 2, 10, 20, 30)
    back = decode_prediction(p.encode())
    assert back == Prediction("rec-9", "Normal", {"Normal": 0.75, "MI": 0.25}, "m-1", "MI", 2, 10, 20, 30)
    assert back.latency_s == pytest.approx(20e-6)


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda b: b[:1], "truncated"),
        (lambda b: b[:20], "truncated"),
        (lambda b: bytes([9]) + b[1:], "unknown_schema"),
        (lambda b: b[:1] + bytes([7]) + b[2:], "unknown_version"),
        (lambda b: b[:-3], "length_mismatch"),
        (lambda b: b + b"xx", "length_mismatch"),
    ],
)
def test_corrupt_recordings_raise_decode_error_with_reason(mutate, reason) -> None:
    with pytest.raises(DecodeError) as err:
        decode_recording(mutate(_recording().encode()))
    assert err.value.reason == reason


def test_a_prediction_is_not_a_recording() -> None:
    p = Prediction("r", "MI", {"Normal": 0.1, "MI": 0.9}, "v")
    with pytest.raises(DecodeError) as err:
        decode_recording(p.encode())
    assert err.value.reason == "unknown_schema"


def test_bad_sampling_rate_is_refused() -> None:
    with pytest.raises(DecodeError) as err:
        decode_recording(_recording(sampling_rate_hz=float("nan")).encode())
    assert err.value.reason == "bad_sampling_rate"


def test_empty_record_id_cannot_be_encoded() -> None:
    with pytest.raises(ValueError):
        _recording(record_id="").encode()
