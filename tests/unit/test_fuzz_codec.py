"""Hypothesis fuzzing of message bytes (#4).

Decoding never raises anything but :class:`DecodeError`, and each stage's processor
gives exactly one outcome per input record, whatever the bytes: an output that decodes,
or a dead letter with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from ppg_mi.services.classifier import ClassifierProcessor
from ppg_mi.services.filter import FilterProcessor
from ppg_mi.signal import BandPass
from ppg_mi.streaming.codec import Prediction, Recording, decode_prediction, decode_recording
from ppg_mi.streaming.exceptions import DecodeError
from ppg_mi.streaming.loop import DeadLetter, InputRecord, Output

N = 128  # samples per record in these tests: the logic does not depend on the length

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _valid(rid: str = "rec-1", filtered: bool = False) -> bytes:
    wave = np.sin(np.linspace(0, 20, N)).astype(np.float32)
    return Recording(rid, wave, 125.0, "MI", 0, 1, 2 if filtered else 0).encode()


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    """A valid message with bytes flipped, cut or appended: near misses find more bugs than noise."""
    data = bytearray(base)
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    if draw(st.booleans()):
        data = data[:cut]
    return bytes(data) + draw(st.binary(max_size=8))


MESSAGES = st.one_of(st.binary(max_size=600), mutated(_valid()), mutated(_valid(filtered=True)),
                     mutated(Prediction("rec-1", "MI", {"Normal": 0.2, "MI": 0.8}, "v1").encode()))


@FUZZ
@given(MESSAGES)
def test_decoding_raises_only_decode_error(data: bytes) -> None:
    for decode in (decode_recording, decode_prediction):
        try:
            decode(data)
        except DecodeError as exc:
            assert exc.reason and " " not in exc.reason  # a stable token: a metric label and DLQ header


def _batch(values: list[bytes]) -> list[InputRecord]:
    return [InputRecord(b"rec-1", v, "in", 0, i, 0) for i, v in enumerate(values)]


def _check(outcomes: list, values: list[bytes], decode) -> None:  # noqa: ANN001
    assert len(outcomes) == len(values), "exactly one outcome per input record"
    for outcome in outcomes:
        assert isinstance(outcome, (Output, DeadLetter))
        if isinstance(outcome, Output):
            decode(outcome.value)  # an output is always a valid message
            assert outcome.key == b"rec-1"
        else:
            assert outcome.reason


@FUZZ
@given(st.lists(MESSAGES, min_size=1, max_size=6))
def test_filter_gives_one_outcome_per_input(values: list[bytes]) -> None:
    processor = FilterProcessor(BandPass(), N)
    _check(processor.process(_batch(values)), values, decode_recording)


@dataclass
class _FixedModel:
    """Stands in for a fitted checkpoint: the property under test is the processor's bookkeeping."""

    version: str = "fuzz-1"
    classes: tuple[str, ...] = ("Normal", "MI")

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        assert x.ndim == 2 and x.shape[1] == N
        return np.tile([0.3, 0.7], (len(x), 1))


@dataclass
class _Models:
    checkpoint: _FixedModel
    samples_per_record: int = N

    def maybe_reload(self) -> bool:
        return False


@FUZZ
@given(st.lists(MESSAGES, min_size=1, max_size=6))
def test_classifier_gives_one_outcome_per_input(values: list[bytes]) -> None:
    processor = ClassifierProcessor(_Models(_FixedModel()))  # type: ignore[arg-type]
    _check(processor.process(_batch(values)), values, decode_prediction)


def test_the_fuzzer_reaches_outputs() -> None:
    """Guard: the strategies are not all-garbage; an unmutated record is processed."""
    assert isinstance(FilterProcessor(BandPass(), N).process(_batch([_valid()]))[0], Output)
    out = ClassifierProcessor(_Models(_FixedModel())).process(_batch([_valid(filtered=True)]))  # type: ignore[arg-type]
    assert isinstance(out[0], Output)


def test_both_stages_dead_letter_a_record_keyed_by_another_id() -> None:
    """Found by the fuzzer: a record id changed in flight came out of the classifier under that id."""
    wrong = [InputRecord(b"rec-2", _valid(filtered=True), "in", 0, 0, 0)]
    classified = ClassifierProcessor(_Models(_FixedModel())).process(wrong)  # type: ignore[arg-type]
    filtered = FilterProcessor(BandPass(), N).process([InputRecord(b"rec-2", _valid(), "in", 0, 0, 0)])
    for (outcome,) in (classified, filtered):
        assert isinstance(outcome, DeadLetter) and outcome.reason == "key_mismatch"
