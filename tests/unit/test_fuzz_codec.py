"""Hypothesis fuzzing of message bytes (#4).

Decoding never raises anything but :class:`DecodeError`, and each stage's processor
gives exactly one outcome per input record, whatever the bytes: an output that decodes,
or a dead letter with a reason.
"""

from __future__ import annotations

import random

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from ppg_mi.services.classifier import ClassifierProcessor
from ppg_mi.services.filter import FilterProcessor
from ppg_mi.signal import BandPass
from ppg_mi.streaming import codec
from ppg_mi.streaming.codec import Prediction, Recording, decode_prediction, decode_recording
from ppg_mi.streaming.exceptions import DecodeError
from ppg_mi.streaming.loop import DeadLetter, InputRecord, Output

from ..fakes import FixedCheckpoint, FixedModels

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


# --- large inputs (#18 item 12): hypothesis draws from a few KB of entropy, so large keys, ids and
# values are grown from a drawn seed and length instead of drawn byte by byte.
def _grown(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


@st.composite
def large_bytes(draw: st.DrawFn, min_size: int, max_size: int) -> bytes:
    """Random bytes of ``min_size``..``max_size``, sometimes valid UTF-8 text (a plausible id)."""
    size = draw(st.integers(min_size, max_size))
    if draw(st.booleans()):
        return (draw(st.text(min_size=1, max_size=8)) * size).encode("utf-8")[:size].decode("utf-8", "ignore").encode()
    return _grown(draw(st.integers(0, 2**32)), size)


@st.composite
def recording_with_id(draw: st.DrawFn, rid: bytes, filtered: bool, samples: int = N) -> bytes:
    """A recording whose header announces ``rid`` (any length the format holds: up to 65,535 bytes,
    far beyond what :meth:`Recording.encode` writes) and ``samples`` samples."""
    wave = np.sin(np.linspace(0, 20, samples)).astype(np.float32)
    header = codec._RECORDING.pack(codec.SCHEMA_RECORDING, codec.VERSION_RECORDING, 1, 0, 0, len(rid), 125.0,
                                   0, 2 if filtered else 0, samples)
    data = header + rid + wave.tobytes()
    return draw(mutated(data)) if draw(st.integers(0, 3)) == 0 else data


#: (key, value) pairs with keys of several KB, record ids up to the format's 65,535 bytes, values up to
#: a few MB (long recordings, or noise); the key is the record id, or not
@st.composite
def large_records(draw: st.DrawFn, filtered: bool) -> tuple[bytes, bytes]:
    kind = draw(st.sampled_from(["long-id", "large-key", "large-value", "many-samples"]))
    if kind == "long-id":
        rid = draw(large_bytes(200, 65_535))
        value = draw(recording_with_id(rid, filtered))
        key = rid if draw(st.booleans()) else draw(large_bytes(1, 12_000))
    elif kind == "large-key":
        key = draw(large_bytes(2_000, 20_000))
        value = draw(st.one_of(recording_with_id(key[:65_535], filtered), st.just(_valid(filtered=filtered))))
    elif kind == "large-value":
        key = b"rec-1"
        value = _grown(draw(st.integers(0, 2**32)), draw(st.integers(10_000, 3_000_000)))
    else:
        key = b"rec-1"
        value = draw(recording_with_id(b"rec-1", filtered, samples=draw(st.integers(N + 1, 300_000))))
    return key, value


LARGE = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.data_too_large])


@LARGE
@given(st.one_of(large_records(False), large_records(True)))
def test_large_keys_ids_and_values_decode_or_raise_decode_error(record: tuple[bytes, bytes]) -> None:
    _, data = record
    for decode in (decode_recording, decode_prediction):
        try:
            decode(data)
        except DecodeError as exc:
            assert exc.reason and " " not in exc.reason


@LARGE
@given(st.lists(large_records(False), min_size=1, max_size=3), st.lists(MESSAGES, max_size=2))
def test_filter_gives_one_outcome_per_large_input(large: list[tuple[bytes, bytes]], small: list[bytes]) -> None:
    records = [*large, *((b"rec-1", v) for v in small)]
    processor = FilterProcessor(BandPass(), N)
    _check_keyed(processor.process(_keyed_batch(records)), records, decode_recording)


@LARGE
@given(st.lists(large_records(True), min_size=1, max_size=3), st.lists(MESSAGES, max_size=2))
def test_classifier_gives_one_outcome_per_large_input(large: list[tuple[bytes, bytes]], small: list[bytes]) -> None:
    records = [*large, *((b"rec-1", v) for v in small)]
    processor = ClassifierProcessor(_models())  # type: ignore[arg-type]
    _check_keyed(processor.process(_keyed_batch(records)), records, decode_prediction)


def _keyed_batch(records: list[tuple[bytes, bytes]]) -> list[InputRecord]:
    return [InputRecord(k, v, "in", 0, i, 0) for i, (k, v) in enumerate(records)]


def _check_keyed(outcomes: list, records: list[tuple[bytes, bytes]], decode) -> None:  # noqa: ANN001
    """One outcome per input; an output decodes, carries its input's key and the record id inside it."""
    assert len(outcomes) == len(records), "exactly one outcome per input record"
    for outcome, (key, _) in zip(outcomes, records):
        assert isinstance(outcome, (Output, DeadLetter))
        if isinstance(outcome, Output):
            decoded = decode(outcome.value)
            assert outcome.key == key and decoded.record_id.encode() == key
        else:
            assert outcome.reason and " " not in outcome.reason


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


def _models() -> FixedModels:
    return FixedModels(FixedCheckpoint(version="fuzz-1", samples=N), N)


@FUZZ
@given(st.lists(MESSAGES, min_size=1, max_size=6))
def test_classifier_gives_one_outcome_per_input(values: list[bytes]) -> None:
    processor = ClassifierProcessor(_models())  # type: ignore[arg-type]
    _check(processor.process(_batch(values)), values, decode_prediction)


def test_the_fuzzer_reaches_outputs() -> None:
    """Guard: the strategies are not all-garbage; an unmutated record is processed."""
    assert isinstance(FilterProcessor(BandPass(), N).process(_batch([_valid()]))[0], Output)
    out = ClassifierProcessor(_models()).process(_batch([_valid(filtered=True)]))  # type: ignore[arg-type]
    assert isinstance(out[0], Output)


def test_both_stages_dead_letter_a_record_keyed_by_another_id() -> None:
    """Found by the fuzzer: a record id changed in flight came out of the classifier under that id."""
    wrong = [InputRecord(b"rec-2", _valid(filtered=True), "in", 0, 0, 0)]
    classified = ClassifierProcessor(_models()).process(wrong)  # type: ignore[arg-type]
    filtered = FilterProcessor(BandPass(), N).process([InputRecord(b"rec-2", _valid(), "in", 0, 0, 0)])
    for (outcome,) in (classified, filtered):
        assert isinstance(outcome, DeadLetter) and outcome.reason == "key_mismatch"


def test_large_strategies_reach_outputs_and_the_id_limit() -> None:
    """Guard: a 256-byte id under a key of the same bytes is processed; 257 bytes is a ``bad_record_id``
    dead letter (found by the large-input fuzzing: the filter raised writing it on)."""
    wave = np.sin(np.linspace(0, 20, N)).astype(np.float32).tobytes()

    def raw(rid: bytes) -> bytes:
        return codec._RECORDING.pack(codec.SCHEMA_RECORDING, codec.VERSION_RECORDING, 1, 0, 0, len(rid), 125.0,
                                     0, 0, N) + rid + wave

    ok, long = b"i" * 256, b"i" * 257
    outcomes = FilterProcessor(BandPass(), N).process(_keyed_batch([(ok, raw(ok)), (long, raw(long))]))
    assert isinstance(outcomes[0], Output) and outcomes[0].key == ok
    assert isinstance(outcomes[1], DeadLetter) and outcomes[1].reason == "bad_record_id"
