"""Every kind of bad input reaches the dead-letter topic, with its reason, on the real broker (#4).

One filter process gets good and bad records interleaved; every bad one must be in
``ppg.dlq`` with headers naming the stage, the reason and its original coordinates,
every good one must be filtered, the process must keep running, and the metrics must
reconcile ``in = out + dead letters``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ppg_mi.config import Settings
from ppg_mi.streaming import dlq
from ppg_mi.streaming.codec import Recording, decode_recording

from ..helpers import ServiceProcess, produce_raw, read_topic, synthetic_raw, wait_for

SAMPLES = 256  # the filter needs no model: short recordings keep the test light
LIMIT = 16384  # max_message_bytes of this test: a 5000-sample recording (20 kB) is oversized


def _rec(rid: str, samples: np.ndarray, rate: float = 125.0) -> bytes:
    return Recording(rid, samples, rate).encode()


def _bad_records(good: bytes) -> dict[str, tuple[bytes | None, bytes, str]]:
    """record id → (key, value, expected reason): one or more of every refusal the filter knows."""
    wave = np.sin(np.linspace(0, 40, SAMPLES)).astype(np.float32)
    nan = wave.copy()
    nan[10] = np.nan
    inf = wave.copy()
    inf[-1] = np.inf
    no_id = bytearray(good[:32])
    struct.pack_into("<H", no_id, 6, 0)  # id_len = 0: the record id field is missing
    no_id = bytes(no_id) + good[32 + len(b"good-0"):]
    bad_label = bytearray(_rec("bad-label", wave))
    bad_label[2] = 7
    bad_id = bytearray(_rec("bad-idxx", wave))
    bad_id[32:36] = b"\xff\xfe\xfd\xfc"
    return {
        "corrupt": (b"corrupt", b"\x00\x01 not a recording at all", "unknown_schema"),
        "empty": (b"empty", b"", "truncated"),
        "cut": (b"cut", good[:20], "truncated"),
        "future-version": (b"future-version", b"\x01\x09" + good[2:], "unknown_version"),
        "trailing": (b"trailing", good + b"\x00\x00\x00\x00", "length_mismatch"),
        "short": (b"short", _rec("short", wave[:100]), "wrong_length"),
        "nan": (b"nan", _rec("nan", nan), "non_finite"),
        "inf": (b"inf", _rec("inf", inf), "non_finite"),
        "flat": (b"flat", _rec("flat", np.full(SAMPLES, 3.0, np.float32)), "constant_signal"),
        "no-id": (b"no-id", no_id, "missing_field"),
        "huge": (b"huge", _rec("huge", np.resize(wave, 5000)), "oversized"),
        "too-many": (b"too-many", good[:28] + struct.pack("<I", 1 << 21) + good[32:], "oversized"),
        "slow-rate": (b"slow-rate", _rec("slow-rate", wave, rate=10.0), "bad_sampling_rate"),
        "nan-rate": (b"nan-rate", _rec("nan-rate", wave, rate=float("nan")), "bad_sampling_rate"),
        "bad-label": (b"bad-label", bytes(bad_label), "bad_label"),
        "bad-id": (b"bad-id", bytes(bad_id), "bad_record_id"),
        "wrong-key": (b"wrong-key", _rec("another-id", wave), "key_mismatch"),
    }


def test_every_bad_record_is_dead_lettered_with_its_reason(broker_settings: Settings, tmp_path: Path) -> None:
    settings = broker_settings.replace(samples_per_record=SAMPLES, max_message_bytes=LIMIT, batch_max_records=8)
    good = synthetic_raw(24, "good", samples=SAMPLES)
    bad = _bad_records(good[0][1])
    # interleaved, so bad records share batches and transactions with good ones
    mixed: list[tuple[bytes | None, bytes]] = []
    bad_items = list(bad.values())
    for i, (key, value) in enumerate(good):
        mixed.append((key, value))
        if i < len(bad_items):
            mixed.append(bad_items[i][:2])
    mixed.extend(b[:2] for b in bad_items[len(good):])
    produce_raw(settings, mixed)

    service = ServiceProcess(settings, "filter", log_dir=tmp_path, name="filter-dlq")
    try:
        service.wait_ready()
        wait_for(lambda: service.metric("ppg_mi_records_consumed_total") >= len(mixed), 90,
                 what="the filter to commit every input record")
        dead = read_topic(settings, settings.topic_dlq, len(bad))
        filtered = read_topic(settings, settings.topic_filtered, len(good))
        assert service.proc.poll() is None, "a bad record must never stop the stream"
        consumed = service.metric("ppg_mi_records_consumed_total")
        produced = service.metric("ppg_mi_records_produced_total", stage="filter")
        dead_lettered = service.metric("ppg_mi_records_dead_lettered_total", stage="filter")
        by_reason = {reason: service.metric("ppg_mi_records_dead_lettered_total", stage="filter", reason=reason)
                     for reason in {b[2] for b in bad.values()}}
        assert service.terminate() == 0
    finally:
        service.close()

    assert sorted(r.key for r in filtered) == sorted(k.decode() for k, _ in good)
    assert all(decode_recording(r.value).filtered_us > 0 for r in filtered)

    got = {r.key: r for r in dead}
    assert sorted(got) == sorted(bad), "exactly one dead letter per bad record"
    raw_offsets = {(r.partition, r.offset): r.key for r in read_topic(settings, settings.topic_raw, len(mixed))}
    for rid, (key, value, reason) in bad.items():
        letter = got[rid]
        h = letter.headers
        assert h[dlq.H_STAGE] == "filter"
        assert h[dlq.H_REASON] == reason, f"{rid}: {h[dlq.H_REASON]} ({h[dlq.H_DETAIL]})"
        assert h[dlq.H_DETAIL] or reason in ("unknown_schema",)
        assert h[dlq.H_TOPIC] == settings.topic_raw
        # the original coordinates point at exactly this record on ppg.raw
        assert raw_offsets[(int(h[dlq.H_PARTITION]), int(h[dlq.H_OFFSET]))] == rid
        if len(value) > LIMIT:
            assert h[dlq.H_TRUNCATED] == "true" and letter.value == value[:1024]
        else:
            assert dlq.H_TRUNCATED not in h and letter.value == value

    # in = out + dead letters, from the stage's own metrics, and per reason
    assert consumed == len(mixed)
    assert produced == len(good) and dead_lettered == len(bad)
    expected_by_reason = {reason: sum(b[2] == reason for b in bad.values()) for reason in by_reason}
    assert by_reason == expected_by_reason
