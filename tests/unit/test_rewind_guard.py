"""After an abort, every owned partition is rewound to its committed offset, and its records
count again only from there (seek() can be lost); a commit is retried only within its budget."""

from __future__ import annotations

import time
import types

import pytest
from confluent_kafka import OFFSET_BEGINNING, OFFSET_INVALID, KafkaError, KafkaException, TopicPartition

from ppg_mi.config import Settings
from ppg_mi.local.kafka import free_port
from ppg_mi.streaming import loop as loop_module
from ppg_mi.streaming.exceptions import FencedError, ProducerFailed, StuckCall
from ppg_mi.streaming.loop import InputRecord, NullObserver, RewindPoint, StageLoop

from ..fakes import FixedCheckpoint, FixedModels


class RecordingConsumer:
    """Answers committed() from a dict and records seeks; nothing else is called."""

    def __init__(self, committed: dict[int, int], log_start: dict[int, int] | None = None) -> None:
        self.committed_offsets = committed
        self.seeks: list[tuple[str, int, int]] = []
        self.log_start = log_start or {}  # partition → first offset still in the log (default 0)

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float, cached: bool) -> tuple[int, int]:
        return self.log_start.get(tp.partition, 0), 1_000_000

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.committed_offsets.get(tp.partition, OFFSET_INVALID))
                for tp in partitions]

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))


def _loop(committed: dict[int, int]) -> StageLoop:
    # nothing listens on the port: the clients are created but never used
    settings = Settings.from_env({}, kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")
    loop = StageLoop(settings, "test", "in", "out", "group", processor=None, observer=NullObserver())  # type: ignore[arg-type]
    loop.consumer = RecordingConsumer(committed)  # type: ignore[assignment]
    loop._assigned = {("in", 0), ("in", 1)}
    return loop


def rec(partition: int, offset: int) -> InputRecord:
    return InputRecord(b"k", b"v", "in", partition, offset, 0)


def offsets(records: list[InputRecord]) -> list[tuple[int, int]]:
    return [(r.partition, r.offset) for r in records]


def test_an_aborted_batch_is_redone_from_the_committed_offsets() -> None:
    loop = _loop({0: 40, 1: 7})
    loop._rewind([rec(0, 40), rec(0, 41), rec(1, 7)])
    assert sorted(loop.consumer.seeks) == [("in", 0, 40), ("in", 1, 7)]
    # partition 0 resumed where it should; partition 1 came back from the position before the seek
    kept = loop._from_rewind_points([rec(0, 40), rec(0, 41), rec(1, 9), rec(1, 10)])
    assert offsets(kept) == [(0, 40), (0, 41)]
    assert loop.consumer.seeks[-1] == ("in", 1, 7)  # sought again
    # once a record the rewind point admits is back, everything after it counts
    kept = loop._from_rewind_points([rec(1, 7), rec(1, 8), rec(0, 42)])
    assert offsets(kept) == [(1, 7), (1, 8), (0, 42)]
    assert loop._rewound == {}


def test_records_from_before_the_committed_offset_are_dropped() -> None:
    loop = _loop({0: 40, 1: 7})
    loop._rewind([rec(0, 40)])
    # a position reset to an earlier (already committed) offset would redo committed records
    kept = loop._from_rewind_points([rec(0, 38), rec(0, 39), rec(0, 40), rec(0, 41)])
    assert [r.offset for r in kept] == [40, 41]
    assert ("in", 0, 40) in loop.consumer.seeks and len(loop.consumer.seeks) == 2  # no second seek


def test_a_commit_that_went_through_unseen_is_not_redone() -> None:
    # commit_transaction got stuck, its producer was replaced, yet the broker committed the batch
    loop = _loop({0: 42, 1: 7})
    loop._rewind([rec(0, 40), rec(0, 41)])
    assert ("in", 0, 42) in loop.consumer.seeks
    assert loop._rewound[("in", 0)] == RewindPoint(42, None)
    kept = loop._from_rewind_points([rec(0, 40), rec(0, 41), rec(0, 42)])
    assert offsets(kept) == [(0, 42)]


def test_committed_offsets_before_the_batch_redo_from_there() -> None:
    # the broker holds less as committed than the client saw (a lost commit): redo from the broker's word
    loop = _loop({0: 36, 1: 7})
    loop._rewind([rec(0, 40)])
    assert loop._rewound[("in", 0)] == RewindPoint(36, 40)
    kept = loop._from_rewind_points([rec(0, 37), rec(0, 38)])  # 36 was a transaction marker
    assert offsets(kept) == [(0, 37), (0, 38)]


def test_partitions_outside_the_batch_are_rewound_and_unbounded() -> None:
    loop = _loop({0: 40})  # partition 1 has no committed offset yet
    loop._rewind([rec(0, 40)])
    assert ("in", 1, OFFSET_BEGINNING) in loop.consumer.seeks
    assert loop._rewound[("in", 1)] == RewindPoint(0, None)
    assert offsets(loop._from_rewind_points([rec(1, 5)])) == [(1, 5)]


def test_a_revoked_partition_forgets_its_rewind() -> None:
    loop = _loop({0: 40, 1: 3})
    loop._rewind([rec(0, 40), rec(1, 3)])
    loop._on_revoke(None, [TopicPartition("in", 1)])  # type: ignore[arg-type]
    assert loop._rewound == {("in", 0): RewindPoint(40, 40)}


def test_no_rewind_while_stopping() -> None:
    loop = _loop({0: 40, 1: 3})
    loop._stop.set()  # what stop() sets (stop() itself would also arm the exit watchdog)
    loop._rewind([rec(0, 40)])
    assert loop.consumer.seeks == [] and loop._rewound == {}


def _retriable_timeout() -> KafkaException:
    return KafkaException(KafkaError(KafkaError._TIMED_OUT, "retry call to resume", retriable=True))


def test_a_retriable_commit_is_repeated_until_it_succeeds() -> None:
    loop = _loop({})
    calls = []

    def commit() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise _retriable_timeout()

    loop._retrying(commit, "commit_transaction")
    assert len(calls) == 3


def test_a_commit_still_retriable_after_its_budget_counts_as_stuck(monkeypatch: pytest.MonkeyPatch) -> None:
    # after a broker restart librdkafka answered _TIMED_OUT for minutes to the same commit
    monkeypatch.setattr(loop_module, "COMMIT_RETRY_BUDGET_S", 0.0)
    loop = _loop({})

    def commit() -> None:
        raise _retriable_timeout()

    with pytest.raises(StuckCall, match="commit_transaction still failing"):
        loop._retrying(commit, "commit_transaction")


def test_a_commit_that_requires_abort_is_not_retried() -> None:
    loop = _loop({})
    calls = []

    def commit() -> None:
        calls.append(1)
        raise KafkaException(KafkaError(KafkaError._STATE, "abortable", txn_requires_abort=True))

    with pytest.raises(KafkaException):
        loop._retrying(commit, "commit_transaction")
    assert len(calls) == 1


class FatalAbortProducer:
    """A producer whose abort_transaction fails fatally with ``code`` (what a broker restart once gave)."""

    def __init__(self, code: int) -> None:
        self.code = code

    def abort_transaction(self, timeout: float) -> None:
        raise KafkaException(KafkaError(self.code, "Failed to end transaction", fatal=True))


def _replacing_loop(monkeypatch: pytest.MonkeyPatch, code: int) -> tuple[StageLoop, list[object]]:
    loop = _loop({})
    created: list[object] = []

    def new_producer() -> object:
        created.append(FatalAbortProducer(code))
        return created[-1]

    monkeypatch.setattr(loop, "_new_producer", new_producer)
    monkeypatch.setattr(loop, "_init_transactions", lambda: None)
    loop.producer = FatalAbortProducer(code)  # type: ignore[assignment]
    return loop, created


def test_a_fatal_error_other_than_fencing_replaces_the_producer(monkeypatch: pytest.MonkeyPatch) -> None:
    loop, created = _replacing_loop(monkeypatch, KafkaError.INVALID_TXN_STATE)
    loop._abort()
    assert len(created) == 1 and loop.producer is created[0]
    assert loop.producers_replaced == 1


@pytest.mark.parametrize("code", [KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH])
def test_a_fenced_producer_is_not_replaced_the_process_exits(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    # replacing it would fence the process that took over the transactional id
    loop, created = _replacing_loop(monkeypatch, code)
    with pytest.raises(FencedError):
        loop._abort()
    assert created == []


def test_fatal_errors_again_and_again_end_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    loop, created = _replacing_loop(monkeypatch, KafkaError.INVALID_TXN_STATE)
    for _ in range(loop_module.MAX_FATAL_IN_A_ROW):
        loop._abort()
    with pytest.raises(ProducerFailed):
        loop._abort()
    assert len(created) == loop_module.MAX_FATAL_IN_A_ROW


# --- #18 item 3: abort_transaction is retried within a budget, like the commit -----------------
class TimingOutAbortProducer:
    """abort_transaction answers a retriable timeout, forever (a broker that keeps timing out aborts).

    Each call moves the loop's clock on by ``call_s``, as a timed-out call takes time."""

    def __init__(self, clock: list[float], call_s: float = 0.05) -> None:
        self.aborts = 0
        self.clock = clock
        self.call_s = call_s

    def abort_transaction(self, timeout: float) -> None:
        self.clock[0] += self.call_s
        self.aborts += 1
        if self.aborts > 200:  # the old loop retried without end: fail instead of hanging
            raise AssertionError("abort_transaction retried without a time budget")
        raise _retriable_timeout()


def test_an_abort_still_retriable_after_its_budget_replaces_the_producer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loop_module, "ABORT_RETRY_BUDGET_S", 0.2, raising=False)
    clock = [1000.0]
    monkeypatch.setattr(loop_module, "time", types.SimpleNamespace(
        monotonic=lambda: clock[0], perf_counter=time.perf_counter, sleep=time.sleep))
    loop = _loop({})
    stuck = TimingOutAbortProducer(clock)
    created: list[object] = []
    beats: list[float] = []
    monkeypatch.setattr(loop, "_new_producer", lambda: created.append(object()) or created[-1])
    monkeypatch.setattr(loop, "_init_transactions", lambda: None)  # the new producer's aborts the transaction
    monkeypatch.setattr(loop.observer, "heartbeat", lambda: beats.append(1), raising=False)
    loop.producer = stuck  # type: ignore[assignment]
    loop._abort()
    assert stuck.aborts >= 2, "a retriable abort is retried"
    assert created and loop.producer is created[0], "past its budget the producer is replaced"
    assert loop.producers_replaced == 1


# --- #18 items 1 and 8: what counts, and when -------------------------------------------------
class ScriptedProducer:
    """A transactional producer whose commits fail (abortably) as scripted, and that can refuse
    messages of a topic through their delivery reports."""

    def __init__(self, commit_failures: int = 0, refuse: dict[str, int] | None = None) -> None:
        self.commit_failures = commit_failures
        self.refuse = refuse or {}  # topic → refuse messages whose value is longer than this
        self.open: list[tuple[str, bytes, bytes]] = []
        self.committed: list[tuple[str, bytes, bytes]] = []
        self.reports: list[tuple[object, object]] = []
        self.failed = False

    def begin_transaction(self) -> None:
        self.open, self.failed = [], False

    def produce(self, topic: str, value: bytes, key: bytes, headers: object = None, on_delivery=None) -> None:  # noqa: ANN001
        refused = topic in self.refuse and len(value) > self.refuse[topic]
        if refused:
            self.failed = True
            self.reports.append((on_delivery, KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)))
        self.open.append((topic, key, value))

    def poll(self, timeout: float) -> int:
        reports, self.reports = self.reports, []
        for callback, err in reports:
            if callback is not None:
                callback(err, None)
        return len(reports)

    def send_offsets_to_transaction(self, offsets: object, group: object, timeout: float) -> None:
        if self.failed:
            raise KafkaException(KafkaError(KafkaError._STATE, "Erroneous state", txn_requires_abort=True))

    def commit_transaction(self, timeout: float) -> None:
        if self.commit_failures:
            self.commit_failures -= 1
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "delivery timed out", txn_requires_abort=True))
        self.committed += self.open
        self.open = []

    def abort_transaction(self, timeout: float) -> None:
        self.open = []


class GroupConsumer(RecordingConsumer):
    def consumer_group_metadata(self) -> object:
        return "group-metadata"


class EchoProcessor:
    """Outputs each record's value; a record whose key starts with ``bad`` becomes a dead letter."""

    def between_batches(self) -> None:
        return None

    def process(self, batch: list[InputRecord]) -> list[object]:
        from ppg_mi.streaming.loop import DeadLetter, Output

        return [DeadLetter("unknown_schema", "test") if r.key.startswith(b"bad") else Output(r.key, r.value)
                for r in batch]


class CountingObserver(NullObserver):
    def __init__(self) -> None:
        self.counts = {"consumed": 0, "produced": 0, "dead": 0}
        self.blocked_by: list[str | None] = []

    def consumed(self, n: int) -> None:
        self.counts["consumed"] += n

    def produced(self, n: int) -> None:
        self.counts["produced"] += n

    def dead_lettered(self, reason: str) -> None:
        self.counts["dead"] += 1

    def blocked(self, why: str | None) -> None:
        self.blocked_by.append(why)


def _transacting_loop(producer: ScriptedProducer, processor: object, observer: object = None) -> StageLoop:
    loop = _loop({0: 0, 1: 0})
    loop.consumer = GroupConsumer({0: 0, 1: 0})  # type: ignore[assignment]
    loop.producer = producer  # type: ignore[assignment]
    loop.processor = processor  # type: ignore[assignment]
    loop.observer = observer or NullObserver()  # type: ignore[assignment]
    return loop


def test_classifier_predictions_count_only_once_committed() -> None:
    import numpy as np

    from ppg_mi.observability import metrics as m
    from ppg_mi.services.classifier import ClassifierProcessor
    from ppg_mi.streaming.codec import Recording

    wave = np.sin(np.linspace(0, 20, 64)).astype(np.float32)
    batch = [InputRecord(f"r{i}".encode(), Recording(f"r{i}", wave, 125.0, filtered_us=1).encode(), "in", i % 2, i, 0)
             for i in range(4)]
    counter = m.PREDICTIONS.labels("MI", "v-count-test")
    before = counter._value.get()
    producer = ScriptedProducer(commit_failures=1)
    loop = _transacting_loop(producer, ClassifierProcessor(FixedModels(FixedCheckpoint("v-count-test", proba=(0.2, 0.8)), 64)))  # type: ignore[arg-type]
    loop._process_batch(batch)  # aborted: nothing may count
    assert counter._value.get() == before, "an aborted batch's predictions must not count"
    loop._process_batch(batch)  # the redo commits
    assert counter._value.get() == before + len(batch)
    assert len(producer.committed) == len(batch)


def test_a_refused_dead_letter_is_isolated_and_written_reduced() -> None:
    from ppg_mi.streaming import dlq

    observer = CountingObserver()
    producer = ScriptedProducer(refuse={"ppg.dlq": 2000})
    loop = _transacting_loop(producer, EchoProcessor(), observer)
    batch = [rec(0, 0), InputRecord(b"bad-1", b"x" * 5000, "in", 0, 1, 0), rec(1, 0), rec(0, 2)]
    loop._process_batch(batch)
    topics = [(t, k) for t, k, _ in producer.committed]
    assert topics == [("out", b"k"), ("ppg.dlq", b"bad-1"), ("out", b"k"), ("out", b"k")], "only the culprit"
    assert producer.committed[1][2] == b"x" * dlq.VALUE_KEPT_BYTES
    assert observer.counts == {"consumed": 4, "produced": 3, "dead": 1}
    assert loop._blocked is None and loop._attempts == 0


def test_a_dlq_that_refuses_everything_blocks_the_stage_and_stops_the_heartbeat() -> None:
    observer = CountingObserver()
    beats: list[int] = []
    observer.heartbeat = lambda: beats.append(1)  # type: ignore[method-assign]
    producer = ScriptedProducer(refuse={"ppg.dlq": 0})
    loop = _transacting_loop(producer, EchoProcessor(), observer)
    loop._stop_deadline = float("inf")
    batch = [rec(0, 0), InputRecord(b"bad-1", b"v", "in", 0, 1, 0), rec(0, 2)]
    loop._process_batch(batch)
    assert [k for _, k, _ in producer.committed] == [b"k"], "the record before the culprit commits, nothing after"
    assert loop._blocked is not None and loop._blocked_at == ("in", 0, 1)
    assert observer.blocked_by and observer.blocked_by[-1] is not None
    assert ("in", 0, 1) in loop.consumer.seeks or ("in", 0, 0) in loop.consumer.seeks  # rewound, not skipped
    loop._beat()
    assert beats == [], "no heartbeat while blocked: /healthz fails after the liveness timeout"
    # the DLQ takes dead letters again: the blocking record commits and the stage is live again
    producer.refuse = {}
    loop._process_batch(batch[1:])
    assert loop._blocked is None and observer.blocked_by[-1] is None
    loop._beat()
    assert beats == [1]
    assert observer.counts == {"consumed": 3, "produced": 2, "dead": 1}


def test_an_output_the_broker_refuses_becomes_a_refused_dead_letter() -> None:
    observer = CountingObserver()
    producer = ScriptedProducer(refuse={"out": 100})
    loop = _transacting_loop(producer, EchoProcessor(), observer)
    batch = [rec(0, 0), InputRecord(b"big", b"y" * 500, "in", 1, 0, 0), rec(0, 1)]
    loop._process_batch(batch)
    assert [(t, k) for t, k, _ in producer.committed] == [("out", b"k"), ("ppg.dlq", b"big"), ("out", b"k")]
    assert observer.counts == {"consumed": 3, "produced": 2, "dead": 1}


# --- #18 item 2: committed offsets unavailable after a commit that went through unseen ------------
class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._t, self._p, self._o = topic, partition, offset

    def error(self) -> None:
        return None

    def key(self) -> bytes:
        return f"r{self._p}-{self._o}".encode()

    def value(self) -> bytes:
        return b"v"

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def timestamp(self) -> tuple[int, int]:
        return 0, 0


class FakeBroker:
    """One input partition of ``records`` records, the group's committed offset, and a coordinator
    that is lost (committed() and joins fail) for ``lost_polls`` polls once ``lose()`` is called."""

    def __init__(self, records: int) -> None:
        self.records = records
        self.group_committed: dict[int, int] = {}
        self.lost_polls = 0

    def coordinator_lost(self) -> bool:
        return self.lost_polls > 0


class SubscribedConsumer:
    """A subscribing consumer of a :class:`FakeBroker`: its assignment starts at the committed offset."""

    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self.position: dict[int, int] = {}
        self.callbacks: dict[str, object] = {}
        self.assigned = False
        self.closed = False
        self.seeks: list[tuple[str, int, int]] = []

    def subscribe(self, topics: list[str], on_assign, on_revoke, on_lost) -> None:  # noqa: ANN001
        self.callbacks = {"assign": on_assign, "revoke": on_revoke}

    def poll(self, timeout: float) -> FakeMessage | None:
        if self.broker.coordinator_lost():
            self.broker.lost_polls -= 1
            return None
        if not self.assigned:  # the assignment fetches the committed offset before anything is fetched
            self.assigned = True
            self.position[0] = self.broker.group_committed.get(0, 0)
            self.callbacks["assign"](self, [TopicPartition("in", 0)])
        offset = self.position[0]
        if offset >= self.broker.records:
            return None
        self.position[0] = offset + 1
        return FakeMessage("in", 0, offset)

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        if self.broker.coordinator_lost():
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "Failed to get committed offsets"))
        return [TopicPartition(tp.topic, tp.partition, self.broker.group_committed.get(tp.partition, OFFSET_INVALID))
                for tp in partitions]

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))
        self.position[tp.partition] = tp.offset

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float, cached: bool) -> tuple[int, int]:
        return 0, self.broker.records

    def consumer_group_metadata(self) -> object:
        return "group-metadata"

    def close(self) -> None:
        self.closed = True


class CommitReplyLostProducer:
    """Commits on the broker; the reply of the commit after ``lose_after`` good ones is lost
    (stuck), and the same broker restart loses the group coordinator for a while."""

    def __init__(self, broker: FakeBroker, lose_after: int) -> None:
        self.broker = broker
        self.lose_after = lose_after
        self.open: list[bytes] = []
        self.offsets: list[TopicPartition] = []
        self.committed: list[bytes] = []

    def begin_transaction(self) -> None:
        self.open, self.offsets = [], []

    def produce(self, topic: str, value: bytes, key: bytes, headers: object = None, on_delivery=None) -> None:  # noqa: ANN001
        self.open.append(key)

    def poll(self, timeout: float) -> int:
        return 0

    def send_offsets_to_transaction(self, offsets: list[TopicPartition], group: object, timeout: float) -> None:
        self.offsets = offsets

    def commit_transaction(self, timeout: float) -> None:
        self.committed += self.open
        for tp in self.offsets:
            self.broker.group_committed[tp.partition] = tp.offset
        self.lose_after -= 1
        if self.lose_after == -1:
            self.broker.lost_polls = 5
            raise StuckCall("commit_transaction did not return within 15 s")

    def abort_transaction(self, timeout: float) -> None:
        self.open = []


def test_a_commit_that_went_through_unseen_is_not_redone_when_committed_offsets_are_unavailable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The sequence of a broker restart: the commit is applied but its reply is lost (the producer is
    replaced), and committed() fails past its wait.  Guessing the failed batch's first offsets redid
    the committed batch; giving up the assignment lets the new one start from the committed offset."""
    monkeypatch.setattr(loop_module, "COMMITTED_WAIT_S", 0.0)
    broker = FakeBroker(records=10)
    loop = _loop({})
    loop.settings = loop.settings.replace(batch_max_records=3)
    loop._assigned = set()
    first = SubscribedConsumer(broker)
    consumers = [first]
    producer = CommitReplyLostProducer(broker, lose_after=1)

    def new_consumer() -> SubscribedConsumer:
        consumers.append(SubscribedConsumer(broker))
        return consumers[-1]

    monkeypatch.setattr(loop, "_new_consumer", new_consumer)
    monkeypatch.setattr(loop, "_new_producer", lambda: producer)
    monkeypatch.setattr(loop, "_init_transactions", lambda: None)
    loop.consumer = first  # type: ignore[assignment]
    loop.producer = producer  # type: ignore[assignment]
    loop.processor = EchoProcessor()  # type: ignore[assignment]
    loop._subscribe()
    for _ in range(20):
        loop._turn()
    expected = [f"r0-{i}".encode() for i in range(10)]
    assert sorted(producer.committed) == sorted(expected), "every record committed exactly once"
    assert ("in", 0, 3) not in first.seeks, "no guess at the failed batch's first offsets"
    assert first.closed and len(consumers) == 2 and loop.consumers_replaced == 1


# --- #18 item 6: a partition revoked and assigned again within one fetch ---------------------------
class ScriptedConsumer:
    """poll() serves a script of messages and rebalance events, as librdkafka serves its queue."""

    def __init__(self, script: list[object]) -> None:
        self.script = list(script)
        self.callbacks: dict[str, object] = {}

    def subscribe(self, topics: list[str], on_assign, on_revoke, on_lost) -> None:  # noqa: ANN001
        self.callbacks = {"assign": on_assign, "revoke": on_revoke}

    def _next(self) -> FakeMessage | None:
        while self.script:
            event = self.script.pop(0)
            if isinstance(event, tuple):  # ("assign" | "revoke", [partitions])
                self.callbacks[event[0]](self, [TopicPartition("in", p) for p in event[1]])
            else:
                return event
        return None

    def poll(self, timeout: float) -> FakeMessage | None:
        return self._next()

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        out: list[FakeMessage] = []
        while len(out) < num_messages and (m := self._next()) is not None:
            out.append(m)
        return out


def test_a_partition_revoked_and_reassigned_within_one_fetch_contributes_each_record_once() -> None:
    loop = _loop({})
    loop._assigned = set()
    m = lambda p, o: FakeMessage("in", p, o)  # noqa: E731
    consumer = ScriptedConsumer([
        ("assign", [0, 1]),
        m(0, 10), m(0, 11), m(1, 5),
        ("revoke", [0]), ("assign", [0]),  # the new assignment resumes at the committed offset, 10
        m(0, 10), m(0, 11), m(0, 12), m(1, 6),
    ])
    loop.consumer = consumer  # type: ignore[assignment]
    loop._subscribe()
    batch = loop._owned(loop._fetch())
    assert offsets(batch) == [(1, 5), (0, 10), (0, 11), (0, 12), (1, 6)]


def test_records_of_a_revoked_assignment_are_dropped_even_if_the_new_one_starts_later() -> None:
    # another member committed up to 20 while the partition was away: 10 and 11 are done
    loop = _loop({})
    loop._assigned = set()
    m = lambda p, o: FakeMessage("in", p, o)  # noqa: E731
    loop.consumer = ScriptedConsumer([("assign", [0]), m(0, 10), m(0, 11), ("revoke", [0]), ("assign", [0]),
                                      m(0, 20)])  # type: ignore[assignment]
    loop._subscribe()
    assert offsets(loop._owned(loop._fetch())) == [(0, 20)]


# --- #18 item 5: retention moved the log start past the rewind point -----------------------------
class LostCounter(NullObserver):
    def __init__(self) -> None:
        self.lost: list[int] = []

    def lost_to_retention(self, offsets: int) -> None:
        self.lost.append(offsets)


def test_a_rewind_below_the_log_start_goes_to_the_log_start_and_counts_the_loss() -> None:
    loop = _loop({0: 10, 1: 7})
    loop.consumer = RecordingConsumer({0: 10, 1: 7}, log_start={0: 30})  # type: ignore[assignment]
    loop.observer = observer = LostCounter()  # type: ignore[assignment]
    loop._rewind([rec(0, 10), rec(0, 11)])
    assert ("in", 0, 30) in loop.consumer.seeks and ("in", 0, 10) not in loop.consumer.seeks
    assert loop._rewound[("in", 0)] == RewindPoint(30, None)
    assert observer.lost == [20]
    assert offsets(loop._from_rewind_points([rec(0, 30), rec(0, 31)])) == [(0, 30), (0, 31)]


def test_a_log_start_that_moves_past_the_rewind_point_after_the_seek_is_followed_not_sought_forever() -> None:
    loop = _loop({0: 10, 1: 7})
    loop.observer = observer = LostCounter()  # type: ignore[assignment]
    loop._rewind([rec(0, 10), rec(0, 11)])
    assert loop._rewound[("in", 0)] == RewindPoint(10, 10)
    # retention deletes up to 30 before the fetch: the seek is out of range, the consumer resets to 30
    loop.consumer.log_start = {0: 30}
    seeks = len(loop.consumer.seeks)
    kept = loop._from_rewind_points([rec(0, 30), rec(0, 31)])
    assert offsets(kept) == [(0, 30), (0, 31)]
    assert len(loop.consumer.seeks) == seeks, "no seek back to the deleted offset"
    assert observer.lost == [20] and ("in", 0) not in loop._rewound


def test_a_lost_seek_is_still_repeated_when_the_log_start_did_not_move() -> None:
    loop = _loop({0: 10, 1: 7})
    loop._rewind([rec(0, 10)])
    assert loop._from_rewind_points([rec(0, 30)]) == []
    assert loop.consumer.seeks[-1] == ("in", 0, 10)


# --- #18 item 4: a transaction ends well within transaction.timeout.ms ---------------------------
def test_a_transaction_timeout_too_short_for_the_budget_is_a_configuration_error() -> None:
    from ppg_mi.config import ConfigError

    settings = Settings.from_env({}, kafka_bootstrap_servers=f"127.0.0.1:{free_port()}", transaction_timeout_ms=2000)
    with pytest.raises(ConfigError, match="PPG_MI_TRANSACTION_TIMEOUT_MS=2000 is too short"):
        StageLoop(settings, "test", "in", "out", "group", processor=None)  # type: ignore[arg-type]


class TimingOutProducer(ScriptedProducer):
    """commit_transaction and abort_transaction answer a retriable timeout, forever, each taking the
    timeout it was given on the loop's (fake) clock; every call's end is noted."""

    def __init__(self, clock: list[float], abortable: bool = False) -> None:
        super().__init__()
        self.clock = clock
        self.abortable = abortable
        self.call_ends: list[tuple[str, float]] = []

    def _time_out(self, what: str, timeout: float, requires_abort: bool = False) -> None:
        self.clock[0] += timeout
        self.call_ends.append((what, self.clock[0]))
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"{what} timed out", retriable=not requires_abort,
                                        txn_requires_abort=requires_abort))

    def send_offsets_to_transaction(self, offsets: object, group: object, timeout: float) -> None:
        self.call_ends.append(("send_offsets_to_transaction", self.clock[0]))

    def commit_transaction(self, timeout: float) -> None:
        self._time_out("commit_transaction", timeout, requires_abort=self.abortable)

    def abort_transaction(self, timeout: float) -> None:
        self._time_out("abort_transaction", timeout)


@pytest.mark.parametrize("abortable", [False, True], ids=["commit-retriable", "commit-abortable-abort-retriable"])
def test_no_call_is_made_on_a_transaction_past_its_budget(monkeypatch: pytest.MonkeyPatch, abortable: bool) -> None:
    """A commit (or an abort) that keeps timing out: every call on the transaction's producer ends
    before 0.9 × transaction.timeout.ms, then the producer is replaced, so the coordinator never times
    out a transaction the loop still works on (its epoch bump would read as fencing)."""
    clock = [1000.0]
    monkeypatch.setattr(loop_module, "time", types.SimpleNamespace(
        monotonic=lambda: clock[0], perf_counter=time.perf_counter, sleep=time.sleep))
    producer = TimingOutProducer(clock, abortable=abortable)
    loop = _transacting_loop(producer, EchoProcessor())
    loop.budget = loop_module.TransactionBudget(20.0)  # transaction.timeout.ms = 20 s; the retry budgets are 30 s
    replaced: list[object] = []
    monkeypatch.setattr(loop, "_new_producer", lambda: replaced.append(ScriptedProducer()) or replaced[-1])
    monkeypatch.setattr(loop, "_init_transactions", lambda: None)
    opened = clock[0]
    loop._process_batch([rec(0, 0), rec(1, 0)])
    assert producer.call_ends, "the transaction was tried"
    last_end = max(end for _, end in producer.call_ends)
    assert last_end - opened <= 0.9 * 20.0 + 1e-6, producer.call_ends
    assert replaced and loop.producer is replaced[0], "past its budget the producer is replaced, not called"


# --- a fatal consumer error (seen: a static member fenced by its own stale membership after a broker
# restart) replaces the consumer instead of leaving the loop polling a dead one while live -------------
class FatalErrorMessage(FakeMessage):
    def error(self) -> KafkaError:
        # as the consumer's poll() delivers it: code _FATAL, yet not flagged fatal()
        return KafkaError(KafkaError._FATAL, "Fatal error: Broker: Static consumer fenced by other consumer with "
                                             "same group.instance.id")


def test_a_fatal_consumer_error_replaces_the_consumer(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = _loop({})
    loop._assigned = set()
    dead = ScriptedConsumer([("assign", [0]), FakeMessage("in", 0, 3), FatalErrorMessage("in", 0, -1)])
    dead.closed = False

    def close() -> None:
        dead.closed = True

    dead.close = close  # type: ignore[attr-defined]
    fresh = ScriptedConsumer([("assign", [0]), FakeMessage("in", 0, 3)])
    monkeypatch.setattr(loop, "_new_consumer", lambda: fresh)
    processed: list[list[InputRecord]] = []
    monkeypatch.setattr(loop, "_process_batch", lambda batch, *_: processed.append(batch))
    loop.processor = EchoProcessor()  # type: ignore[assignment]
    loop.consumer = dead  # type: ignore[assignment]
    loop._subscribe()
    loop._turn()
    assert processed == [], "nothing of the failed consumer's fetch is processed"
    assert dead.closed and loop.consumer is fresh and loop.consumers_replaced == 1
    loop._turn()
    assert [offsets(b) for b in processed] == [[(0, 3)]], "the new consumer's assignment carries on"


def test_a_consumer_that_keeps_failing_fatally_ends_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from ppg_mi.streaming.exceptions import ConsumerFailed

    loop = _loop({})
    monkeypatch.setattr(loop, "_new_consumer", lambda: ScriptedConsumer([FatalErrorMessage("in", 0, -1)]))
    loop.processor = EchoProcessor()  # type: ignore[assignment]
    loop.consumer = ScriptedConsumer([FatalErrorMessage("in", 0, -1)])  # type: ignore[assignment]
    loop.consumer.close = lambda: None  # type: ignore[attr-defined]
    for _ in range(loop_module.MAX_FATAL_IN_A_ROW):
        loop._turn()
        loop.consumer.close = lambda: None  # type: ignore[attr-defined]
    with pytest.raises(ConsumerFailed):
        loop._turn()
