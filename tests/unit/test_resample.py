"""Resampling a recording to its model's rate (issue 19): the pure functions and the classifier's use.

Before this, the classifier gave a model trained at 125 Hz a 250 Hz recording as it came: a pulse
at 72 beats a minute looked like one at 36.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ppg_mi.model import Checkpoint
from ppg_mi.services.classifier import ClassifierProcessor
from ppg_mi.signal import InvalidSignal, conform, fit_to_length, resample, resampling_factors
from ppg_mi.streaming.codec import Recording, decode_prediction, now_us
from ppg_mi.streaming.loop import DeadLetter, InputRecord, Output

LENGTH = 2000
MODEL_HZ = 125.0


def _sine(freq_hz: float, rate_hz: float, n: int) -> np.ndarray:
    return np.sin(2 * np.pi * freq_hz * np.arange(n) / rate_hz)


def _dominant_hz(x: np.ndarray, rate_hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(x - x.mean()))
    return float(np.fft.rfftfreq(x.size, 1 / rate_hz)[spectrum.argmax()])


@pytest.mark.parametrize("from_hz, to_hz, factors", [(100, 125, (5, 4)), (250, 125, (1, 2)), (125, 125, (1, 1)),
                                                      (128, 125, (125, 128)), (100.5, 125, (250, 201)),
                                                      (float(np.float32(62.5)), 125, (2, 1))])
def test_factors_are_the_rates_ratio_in_lowest_terms(from_hz, to_hz, factors) -> None:
    assert resampling_factors(from_hz, to_hz) == factors


@pytest.mark.parametrize("from_hz", [97.3333, 100.1, 0.0, -125.0, math.nan, math.inf])
def test_a_rate_without_a_small_integer_ratio_is_refused_as_bad_sampling_rate(from_hz) -> None:
    with pytest.raises(InvalidSignal) as info:
        resampling_factors(from_hz, MODEL_HZ)
    assert info.value.reason == "bad_sampling_rate"


@pytest.mark.parametrize("from_hz", [100.0, 250.0])
def test_resampling_keeps_the_pulse_rate_and_matches_sampling_at_the_target_rate(from_hz: float) -> None:
    x = _sine(1.2, from_hz, LENGTH)
    y = resample(x, from_hz, MODEL_HZ)
    assert y.dtype == np.float32 and y.size == math.ceil(LENGTH * MODEL_HZ / from_hz)
    expected = _sine(1.2, MODEL_HZ, y.size)
    inner = slice(50, -50)              # resample_poly's filter edges
    assert np.max(np.abs(y[inner] - expected[inner])) < 0.01
    assert _dominant_hz(y, MODEL_HZ) == pytest.approx(1.2, abs=0.1)


def test_same_rate_is_returned_unchanged() -> None:
    x = _sine(1.0, MODEL_HZ, 300)
    np.testing.assert_allclose(resample(x, MODEL_HZ, MODEL_HZ), x.astype(np.float32))


def test_fit_to_length_cuts_the_middle_and_z_scores() -> None:
    x = np.arange(2500, dtype=float)
    y = fit_to_length(x, LENGTH)
    assert y.size == LENGTH
    z = (x[250:2250] - x[250:2250].mean()) / x[250:2250].std()
    np.testing.assert_allclose(y, z, rtol=1e-5, atol=1e-5)


def test_fit_to_length_repeats_a_shorter_recording_down_to_half_the_window() -> None:
    x = _sine(1.0, MODEL_HZ, 1000) * 3 + 7
    y = fit_to_length(x, LENGTH)
    assert y.size == LENGTH and abs(y.mean()) < 1e-5 and y.std() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(y[:1000], y[1000:])
    with pytest.raises(InvalidSignal) as info:
        fit_to_length(x[:999], LENGTH)
    assert info.value.reason == "bad_sampling_rate" and "999 samples" in info.value.detail


@pytest.mark.parametrize("from_hz", [100.0, 250.0])
def test_conform_gives_the_model_its_window_at_its_rate(from_hz: float) -> None:
    y = conform(_sine(1.25, from_hz, LENGTH), from_hz, MODEL_HZ, LENGTH)
    assert y.size == LENGTH and _dominant_hz(y, MODEL_HZ) == pytest.approx(1.25, abs=0.05)


# --- the classifier ------------------------------------------------------------------
class _RecordsInput:
    """An estimator stand-in that records what the model is given."""

    classes_ = np.array(["Normal", "MI"], dtype=object)

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        self.seen.append(np.asarray(x)[:, 0, :].copy())
        return np.tile([0.6, 0.4], (len(x), 1))


class _Server:
    def __init__(self, checkpoint: Checkpoint) -> None:
        self.checkpoint = checkpoint
        self.samples_per_record = LENGTH


def _record(i: int, rate_hz: float, freq_hz: float = 1.25) -> InputRecord:
    rec = Recording(f"r{i}", _sine(freq_hz, rate_hz, LENGTH).astype(np.float32), rate_hz, "MI",
                    produced_us=now_us(), filtered_us=now_us())
    return InputRecord(rec.record_id.encode(), rec.encode(), "t", 0, i, 0)


def _processor(model_hz: float | None = MODEL_HZ) -> tuple[ClassifierProcessor, _RecordsInput]:
    estimator = _RecordsInput()
    card = {"version": "v", "classes": ["Normal", "MI"], "params": {},
            "training_data": {} if model_hz is None else {"sampling_rate_hz_assumed": model_hz}}
    return ClassifierProcessor(_Server(Checkpoint(estimator, card))), estimator  # type: ignore[arg-type]


def test_classifier_gives_the_model_every_recording_at_the_models_rate() -> None:
    processor, estimator = _processor()
    outcomes = processor.process([_record(0, 100.0), _record(1, 125.0), _record(2, 250.0)])
    assert all(isinstance(o, Output) for o in outcomes)
    seen = estimator.seen[0]
    assert seen.shape == (3, LENGTH)
    for row in seen:      # the same 1.25 Hz pulse at the model's rate, whatever rate it came at
        assert _dominant_hz(row, MODEL_HZ) == pytest.approx(1.25, abs=0.05)
    np.testing.assert_array_equal(seen[1], _sine(1.25, MODEL_HZ, LENGTH).astype(np.float32))  # 125 Hz untouched
    assert decode_prediction(outcomes[2].value).record_id == "r2"  # type: ignore[union-attr]


def test_a_rate_the_classifier_cannot_resample_is_a_dead_letter_saying_why() -> None:
    processor, estimator = _processor()
    outcomes = processor.process([_record(0, 97.3333), _record(1, 500.0), _record(2, 125.0)])
    odd, short, fine = outcomes
    assert isinstance(odd, DeadLetter) and odd.reason == "bad_sampling_rate"
    assert "97.3333 Hz" in odd.detail and "125 Hz" in odd.detail
    # 2000 samples at 500 Hz are 4 s: 1000 samples at 125 Hz, half the model's 16 s window
    assert isinstance(short, DeadLetter) and short.reason == "bad_sampling_rate" and "window" in short.detail
    assert isinstance(fine, Output) and estimator.seen[0].shape == (1, LENGTH)


def test_a_card_without_a_rate_gets_recordings_as_they_are() -> None:
    processor, estimator = _processor(model_hz=None)
    processor.process([_record(0, 250.0)])
    np.testing.assert_array_equal(estimator.seen[0][0], _sine(1.25, 250.0, LENGTH).astype(np.float32))
