"""Rewinds against a real broker (#18 items 2 and 5): records deleted under a rewind, and committed
offsets that cannot be read after a commit whose reply was lost.

Each test drives one :class:`StageLoop` in this process on a one-partition topic of its own, so
that the fault lands at a known offset: the faults are injected at the exact step (a commit that
goes through but reports stuck, ``committed()`` failing, ``delete_records`` moving the log start).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from typing import Sequence

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from ppg_mi.config import Settings
from ppg_mi.streaming import loop as loop_module
from ppg_mi.streaming.clients import common_config
from ppg_mi.streaming.exceptions import StuckCall
from ppg_mi.streaming.loop import InputRecord, NullObserver, Output, StageLoop

from ..helpers import produce_raw, read_topic, wait_for


class Echo:
    def between_batches(self) -> None:
        return None

    def process(self, batch: Sequence[InputRecord]) -> list[Output]:
        return [Output(r.key, r.value) for r in batch]


class LostCounter(NullObserver):
    def __init__(self) -> None:
        self.lost: list[int] = []

    def lost_to_retention(self, offsets: int) -> None:
        self.lost.append(offsets)


def _topics(settings: Settings) -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    source, sink = f"rewind-in-{tag}", f"rewind-out-{tag}"
    admin = AdminClient(common_config(settings))
    for future in admin.create_topics([NewTopic(source, 1, 1), NewTopic(sink, 1, 1)], operation_timeout=30).values():
        future.result()
    return source, sink


def _stage(settings: Settings, source: str, sink: str) -> StageLoop:
    loop = StageLoop(settings, f"rewind-{uuid.uuid4().hex[:6]}", source, sink, f"group-{uuid.uuid4().hex[:8]}",
                     Echo(), LostCounter())
    loop._init_transactions()
    loop._subscribe()
    return loop


def _next_batch(loop: StageLoop, timeout: float = 60.0) -> list[InputRecord]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = loop._from_rewind_points(loop._owned(loop._fetch()))
        if batch:
            return batch
    raise AssertionError("no records reached the loop")


def _delete_before(settings: Settings, topic: str, offset: int) -> None:
    admin = AdminClient(common_config(settings))
    for future in admin.delete_records([TopicPartition(topic, 0, offset)], operation_timeout=30).values():
        assert future.result().low_watermark == offset  # the new log start


@pytest.fixture
def settings(broker_settings: Settings) -> Settings:
    return broker_settings.replace(batch_max_records=5)


@pytest.mark.parametrize("deleted", ["before-the-rewind", "between-the-rewind-and-the-fetch"])
def test_records_deleted_under_a_rewind_resume_at_the_log_start(settings: Settings, deleted: str) -> None:
    source, sink = _topics(settings)
    produce_raw(settings, [(f"r-{i}".encode(), b"v") for i in range(40)], topic=source)
    loop = _stage(settings, source, sink)
    try:
        first = _next_batch(loop)
        loop._process_batch(first)  # offsets 0..4 committed
        failed = _next_batch(loop)
        assert [r.offset for r in failed] == [5, 6, 7, 8, 9]
        # the failed batch is rewound to the committed offset 5; retention deletes records up to 20
        if deleted == "before-the-rewind":
            _delete_before(settings, source, 20)
            loop._rewind(failed)
        else:
            # the rewind read the log start just before the deletion: its seek to 5 goes out of
            # range, the consumer resets to the log start (20), past the rewind guard's bound (5)
            real = loop._log_start
            loop._log_start = lambda key: 0  # type: ignore[method-assign]
            loop._rewind(failed)
            loop._log_start = real  # type: ignore[method-assign]
            _delete_before(settings, source, 20)
        resumed = _next_batch(loop, timeout=30)
        assert resumed[0].offset == 20, [r.offset for r in resumed]
        loop._process_batch(resumed)
        while True:
            batch = loop._from_rewind_points(loop._owned(loop._fetch()))
            if not batch:
                break
            loop._process_batch(batch)
        assert loop.observer.lost == [15]  # type: ignore[attr-defined]
        got = Counter(r.key for r in read_topic(settings, sink, 25))
        assert got == Counter([f"r-{i}" for i in (*range(5), *range(20, 40))])
    finally:
        loop._close()


class CommitReplyLost(Producer):
    """A transactional producer whose ``lose``-th commit goes through on the broker but reports stuck,
    and which then makes ``consumer.committed()`` fail for ``committed_down_s`` (one broker restart)."""

    def __init__(self, config: dict, lose: int, consumer: "CommittedDown", committed_down_s: float) -> None:
        super().__init__(config)
        self.commits = 0
        self.lose = lose
        self.consumer = consumer
        self.committed_down_s = committed_down_s

    def commit_transaction(self, *args: float) -> None:
        super().commit_transaction(*args)
        self.commits += 1
        if self.commits == self.lose:
            self.consumer.down_until = time.monotonic() + self.committed_down_s
            raise StuckCall("commit_transaction did not return within 15 s (test fault: it did commit)")


class CommittedDown(Consumer):
    """A consumer whose ``committed()`` times out until ``down_until`` (librdkafka lost its coordinator)."""

    down_until = 0.0

    def committed(self, partitions: list[TopicPartition], timeout: float | None = None) -> list[TopicPartition]:
        if time.monotonic() < self.down_until:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "Failed to get committed offsets (test fault)"))
        return super().committed(partitions, timeout=timeout)


def test_a_commit_that_went_through_unseen_is_not_redone_when_committed_offsets_are_unavailable(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second transaction commits but reports stuck (its producer is replaced), and committed()
    fails longer than the rewind waits for it: the batch must not be redone, nor any record skipped."""
    monkeypatch.setattr(loop_module, "COMMITTED_WAIT_S", 1.0)
    source, sink = _topics(settings)
    ids = [f"r-{i}" for i in range(30)]
    produce_raw(settings, [(i.encode(), b"v") for i in ids], topic=source)
    loop = StageLoop(settings, f"unseen-{uuid.uuid4().hex[:6]}", source, sink, f"group-{uuid.uuid4().hex[:8]}", Echo())
    loop.consumer.close()
    consumer_config = loop_module.transactional_consumer_config(settings, loop.group_id)
    flaky = CommittedDown(consumer_config)
    loop.consumer = flaky  # type: ignore[assignment]
    producer_config = {**loop_module.transactional_producer_config(settings, loop.role), "error_cb": loop._on_error}
    loop.producer = CommitReplyLost(producer_config, 2, flaky, committed_down_s=4.0)
    runner = threading.Thread(target=loop.run, daemon=True)
    runner.start()
    try:
        got = wait_for(lambda: (keys := [r.key for r in read_topic(settings, sink, len(ids), timeout=5, idle=0.5)])
                       and len(keys) >= len(ids) and keys, 90, what="every record's output")
        read = Counter(got)
        assert read == Counter(ids), f"doubled: {sorted(k for k, n in read.items() if n > 1)}"
        assert loop.producers_replaced == 1, "the commit's reply was lost: its producer was replaced"
        assert loop.consumers_replaced == 1, "committed() failed past its wait: the assignment was given up"
    finally:
        loop._stop.set()  # what stop() sets, without its exit watchdog
        runner.join(30)
