"""Dead letters at the broker's limits (#18, item 1), on the real broker.

A record the broker accepted can still be impossible to dead-letter as it is: its key, value and
the dead-letter headers together exceed the broker's message size.  The broker refuses such a
produce with a size error that is neither retriable nor fatal; the loop used to abort, rewind and
redo the same batch forever, with /healthz green.  Now the culprit is isolated (record by record,
so only it is dead-lettered), its dead letter is written in a reduced form, and the partition
moves on.  When the DLQ cannot take even the reduced form, the stage must say so: not ready,
then not live, and ``ppg_mi_stage_blocked`` at 1, without skipping anything; once the DLQ takes
dead letters again, the stage resumes and every record is accounted for.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from ppg_mi.config import Settings
from ppg_mi.streaming import dlq
from ppg_mi.streaming.clients import common_config, reader_config

from ..helpers import ServiceProcess, produce_raw, read_topic, synthetic_raw, wait_for

SAMPLES = 256  # the filter needs no model: short recordings keep the test light
GOOD = 50
KEY_BYTES = 8400
VALUE_BYTES = 1_040_100  # under max_message_bytes (1 MiB), so not `oversized` on the way in


def _set_topic_config(settings: Settings, topic: str, name: str, value: str | None) -> None:
    admin = AdminClient(common_config(settings))
    op = AlterConfigOpType.SET if value is not None else AlterConfigOpType.DELETE
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic,
                              incremental_configs=[ConfigEntry(name, value or "", incremental_operation=op)])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)


def _committed(settings: Settings) -> dict[int, int]:
    # a consumer of the group that never subscribes, as the lag monitor reads them: the Admin API's
    # offset fetch can crash the process (docs/reliability.md, "A crash in librdkafka")
    reader = Consumer(reader_config(settings, settings.group_filter))
    try:
        committed = reader.committed([TopicPartition(settings.topic_raw, p) for p in range(3)], 30)
    finally:
        reader.close()
    return {tp.partition: tp.offset for tp in committed}


def test_a_dead_letter_too_large_for_the_broker_is_written_reduced_and_the_stream_moves_on(
        broker_settings: Settings, tmp_path: Path) -> None:
    settings = broker_settings.replace(samples_per_record=SAMPLES, batch_max_records=64)
    big_key = ("big-" + "k" * (KEY_BYTES - 4)).encode()
    big_value = os.urandom(VALUE_BYTES)  # not a recording: dead-lettered as unknown_schema
    good = synthetic_raw(GOOD, "good", samples=SAMPLES)
    produce_raw(settings, [(big_key, big_value), *good])  # the broker accepts it: it fits as it is
    raw = read_topic(settings, settings.topic_raw, GOOD + 1)
    big_at = next((r.partition, r.offset) for r in raw if r.key.encode() == big_key)

    service = ServiceProcess(settings, "filter", log_dir=tmp_path, name="filter-big-dlq")
    try:
        service.wait_ready()
        started = time.monotonic()
        # bounded: on the old loop this never happened (the batch was redone forever)
        wait_for(lambda: service.metric("ppg_mi_records_consumed_total") >= GOOD + 1, 90,
                 what="the filter to commit every input record")
        elapsed = time.monotonic() - started
        dead = read_topic(settings, settings.topic_dlq, 1)
        filtered = read_topic(settings, settings.topic_filtered, GOOD)
        assert service.proc.poll() is None, "an undeliverable dead letter must never stop the stream"
        consumed = service.metric("ppg_mi_records_consumed_total")
        produced = service.metric("ppg_mi_records_produced_total", stage="filter")
        dead_lettered = service.metric("ppg_mi_records_dead_lettered_total", stage="filter")
        blocked = service.metric("ppg_mi_stage_blocked", stage="filter")
        live = service.get("/healthz")[0]
        assert service.terminate() == 0
    finally:
        service.close()
    print(f"every record committed {elapsed:.1f} s after the filter was ready")

    # only the culprit is dead-lettered; every good record is filtered exactly once
    assert sorted(r.key for r in filtered) == sorted(k.decode() for k, _ in good)
    assert len(dead) == 1, [r.headers for r in dead]
    letter = dead[0]
    h = letter.headers
    assert h[dlq.H_STAGE] == "filter" and h[dlq.H_REASON] == "unknown_schema"
    assert (h[dlq.H_TOPIC], int(h[dlq.H_PARTITION]), int(h[dlq.H_OFFSET])) == (settings.topic_raw, *big_at)
    # the reduced form: key and value cut, the original sizes in headers
    assert h[dlq.H_TRUNCATED] == "true"
    assert int(h[dlq.H_KEY_BYTES]) == KEY_BYTES and int(h[dlq.H_VALUE_BYTES]) == VALUE_BYTES
    assert letter.key.encode() == big_key[:dlq.KEY_KEPT_BYTES]
    assert letter.value == big_value[:dlq.VALUE_KEPT_BYTES]

    # in = out + dead letters
    assert consumed == GOOD + 1 and produced == GOOD and dead_lettered == 1
    assert blocked == 0 and live == 200


def test_a_dlq_that_takes_nothing_fails_readiness_then_liveness_and_skips_nothing(
        broker_settings: Settings, tmp_path: Path) -> None:
    settings = broker_settings.replace(samples_per_record=SAMPLES, batch_max_records=16, liveness_timeout_s=6.0)
    # the DLQ refuses every dead letter, even the reduced form (as a deleted topic or a missing ACL would)
    _set_topic_config(settings, settings.topic_dlq, "max.message.bytes", "200")
    good = synthetic_raw(GOOD, "good", samples=SAMPLES)
    bad = (b"corrupt", b"\x00\x01 not a recording at all")
    produce_raw(settings, [bad, *good])
    raw = read_topic(settings, settings.topic_raw, GOOD + 1)
    bad_partition, bad_offset = next((r.partition, r.offset) for r in raw if r.key == "corrupt")

    service = ServiceProcess(settings, "filter", log_dir=tmp_path, name="filter-dlq-blocked")
    try:
        service.wait_ready()
        started = time.monotonic()
        wait_for(lambda: service.get("/readyz")[0] == 503, 60, what="readiness to fail")
        not_ready_after = time.monotonic() - started
        wait_for(lambda: service.get("/healthz")[0] == 503, 60, what="liveness to fail")
        not_live_after = time.monotonic() - started
        assert service.metric("ppg_mi_stage_blocked", stage="filter") == 1
        assert "delivery" in service.get("/readyz")[1]
        # nothing skipped: the bad record's partition has not moved past it, nothing was dead-lettered
        assert _committed(settings).get(bad_partition, -1) <= bad_offset
        assert read_topic(settings, settings.topic_dlq, 0, timeout=5) == []
        assert service.proc.poll() is None

        # the DLQ takes dead letters again: the same process resumes, ready and live
        _set_topic_config(settings, settings.topic_dlq, "max.message.bytes", None)
        wait_for(lambda: service.metric("ppg_mi_records_consumed_total") >= GOOD + 1, 90,
                 what="the filter to commit every input record once the DLQ is back")
        wait_for(lambda: service.get("/readyz")[0] == 200 and service.get("/healthz")[0] == 200, 30,
                 what="the filter ready and live again")
        consumed = service.metric("ppg_mi_records_consumed_total")
        produced = service.metric("ppg_mi_records_produced_total", stage="filter")
        dead_lettered = service.metric("ppg_mi_records_dead_lettered_total", stage="filter")
        blocked = service.metric("ppg_mi_stage_blocked", stage="filter")
        assert service.terminate() == 0
    finally:
        service.close()
    print(f"not ready after {not_ready_after:.1f} s, not live after {not_live_after:.1f} s")

    dead = read_topic(settings, settings.topic_dlq, 1)
    filtered = read_topic(settings, settings.topic_filtered, GOOD)
    assert [r.key for r in dead] == ["corrupt"] and dead[0].headers[dlq.H_REASON] == "unknown_schema"
    assert sorted(r.key for r in filtered) == sorted(k.decode() for k, _ in good)
    assert consumed == GOOD + 1 and produced == GOOD and dead_lettered == 1 and blocked == 0


def test_only_the_refused_record_is_isolated_and_written_reduced(broker_settings: Settings, tmp_path: Path) -> None:
    # the DLQ takes less than PPG_MI_MAX_MESSAGE_BYTES: the full dead letter passes the stage's own
    # size check, and only the broker's refusal tells which record of the batch is at fault
    settings = broker_settings.replace(samples_per_record=SAMPLES, batch_max_records=64)
    _set_topic_config(settings, settings.topic_dlq, "max.message.bytes", "3000")
    good = synthetic_raw(GOOD, "good", samples=SAMPLES)
    bad_value = b"\x00\x01" + os.urandom(2800)  # not a recording; its dead letter is > 3000 bytes
    mixed = [*good[:GOOD // 2], (b"corrupt-big", bad_value), *good[GOOD // 2:]]
    produce_raw(settings, mixed)

    service = ServiceProcess(settings, "filter", log_dir=tmp_path, name="filter-dlq-isolate")
    try:
        service.wait_ready()
        wait_for(lambda: service.metric("ppg_mi_records_consumed_total") >= GOOD + 1, 90,
                 what="the filter to commit every input record")
        dead = read_topic(settings, settings.topic_dlq, 1)
        filtered = read_topic(settings, settings.topic_filtered, GOOD)
        produced = service.metric("ppg_mi_records_produced_total", stage="filter")
        dead_lettered = service.metric("ppg_mi_records_dead_lettered_total", stage="filter")
        aborted = service.metric("ppg_mi_transactions_total", stage="filter", outcome="aborted")
        assert service.terminate() == 0
    finally:
        service.close()
    assert "redoing a failing batch record by record" in service.log_path.read_text()
    assert sorted(r.key for r in filtered) == sorted(k.decode() for k, _ in good)
    assert [r.key for r in dead] == ["corrupt-big"]
    h = dead[0].headers
    assert h[dlq.H_REASON] == "unknown_schema" and h[dlq.H_TRUNCATED] == "true"
    assert int(h[dlq.H_VALUE_BYTES]) == len(bad_value) and dead[0].value == bad_value[:dlq.VALUE_KEPT_BYTES]
    assert produced == GOOD and dead_lettered == 1
    assert 1 <= aborted <= 3, "the batch is not redone again and again"
