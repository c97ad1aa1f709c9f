"""The next batch is processed while a transaction commits, and never produced out of turn: a
failed transaction drops it (the rewind refetches it), a rebalance it was fetched across drops
what it revoked from the batch that commits next."""

from __future__ import annotations

import threading

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from ppg_mi.streaming.loop import InputRecord, Output, StageLoop

from .test_rewind_guard import FakeBroker, FakeMessage, ScriptedConsumer, ScriptedProducer, SubscribedConsumer, _loop


class BrokerProducer:
    """Commits output keys and the group's offsets on a :class:`FakeBroker`; the commits numbered in
    ``fail`` (from 0) fail abortably; ``during_commit`` runs inside each commit."""

    def __init__(self, broker: FakeBroker, fail: set[int] | None = None, during_commit=None) -> None:  # noqa: ANN001
        self.broker = broker
        self.fail = fail or set()
        self.during_commit = during_commit
        self.commits = 0
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
        number, self.commits = self.commits, self.commits + 1
        if self.during_commit is not None:
            self.during_commit(self.open)
        if number in self.fail:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "delivery timed out", txn_requires_abort=True))
        self.committed += self.open
        for tp in self.offsets:
            self.broker.group_committed[tp.partition] = tp.offset

    def abort_transaction(self, timeout: float) -> None:
        self.open = []


class LoggingProcessor:
    """Echoes each record; notes every batch it processed (by key) and on which thread."""

    def __init__(self) -> None:
        self.batches: list[tuple[list[bytes], str]] = []
        self.processed = threading.Condition()

    def between_batches(self) -> None:
        return None

    def process(self, batch: list[InputRecord]) -> list[Output]:
        with self.processed:
            self.batches.append(([r.key for r in batch], threading.current_thread().name))
            self.processed.notify_all()
        return [Output(r.key, r.value) for r in batch]


def _broker_loop(records: int, producer_for, process_during_commit: bool = True) -> tuple[StageLoop, FakeBroker]:  # noqa: ANN001
    broker = FakeBroker(records=records)
    loop = _loop({})
    loop.settings = loop.settings.replace(batch_max_records=3, process_during_commit=process_during_commit)
    if not process_during_commit:
        loop._worker = None
    loop._assigned = set()
    loop.consumer = SubscribedConsumer(broker)  # type: ignore[assignment]
    loop.producer = producer_for(broker)  # type: ignore[assignment]
    loop.processor = LoggingProcessor()  # type: ignore[assignment]
    loop._subscribe()
    return loop, broker


def keys(first: int, last: int) -> list[bytes]:
    return [f"r0-{i}".encode() for i in range(first, last + 1)]


def test_the_next_batch_is_processed_on_the_worker_while_the_transaction_commits() -> None:
    seen_in_commit: list[tuple[list[bytes], list[list[bytes]]]] = []
    processor_box: list[LoggingProcessor] = []

    def during_commit(open_keys: list[bytes]) -> None:
        processor = processor_box[0]
        if open_keys[-1] == b"r0-6":
            return  # the last batch: nothing follows it
        with processor.processed:  # wait (bounded) for the next batch's processing to begin
            processor.processed.wait_for(lambda: any(b[0] and b[0][0] > open_keys[-1] for b in processor.batches),
                                         timeout=5.0)
            seen_in_commit.append((list(open_keys), [b[0] for b in processor.batches]))

    loop, _ = _broker_loop(7, lambda broker: BrokerProducer(broker, during_commit=during_commit))
    processor_box.append(loop.processor)  # type: ignore[arg-type]
    for _ in range(4):
        loop._turn()
    assert loop.producer.committed == keys(0, 6), "every record once, in order"  # type: ignore[attr-defined]
    assert seen_in_commit[0] == (keys(0, 2), [keys(0, 2), keys(3, 5)]), "batch 2 processed during commit 1"
    assert seen_in_commit[1] == (keys(3, 5), [keys(0, 2), keys(3, 5), keys(6, 6)])
    threads = [thread for _, thread in loop.processor.batches]  # type: ignore[attr-defined]
    assert threads[0] == threading.current_thread().name and all("next-batch" in t for t in threads[1:])
    loop._worker.shutdown()  # type: ignore[union-attr]


def test_without_process_during_commit_nothing_is_processed_during_a_commit() -> None:
    seen: list[int] = []
    processor_box: list[LoggingProcessor] = []
    loop, _ = _broker_loop(7, lambda broker: BrokerProducer(
        broker, during_commit=lambda _keys: seen.append(len(processor_box[0].batches))), process_during_commit=False)
    processor_box.append(loop.processor)  # type: ignore[arg-type]
    for _ in range(4):
        loop._turn()
    assert loop.producer.committed == keys(0, 6)  # type: ignore[attr-defined]
    assert seen == [1, 2, 3], "each commit sees only its own batch processed"


def test_a_failed_transaction_drops_the_processed_next_batch_and_every_record_commits_once() -> None:
    loop, broker = _broker_loop(9, lambda broker: BrokerProducer(broker, fail={1}))
    for _ in range(8):
        loop._turn()
    assert loop.producer.committed == keys(0, 8), "every record once, in order"  # type: ignore[attr-defined]
    assert broker.group_committed == {0: 9}
    processed = [b[0] for b in loop.processor.batches]  # type: ignore[attr-defined]
    # batch 2 failed; batch 3, processed during its commit, was dropped: both are processed again
    assert processed.count(keys(6, 8)) == 2 and processed.count(keys(3, 5)) == 2
    loop._worker.shutdown()  # type: ignore[union-attr]


class GroupScriptedConsumer(ScriptedConsumer):
    def consumer_group_metadata(self) -> object:
        return "group-metadata"


def test_records_revoked_by_the_fetch_of_the_next_batch_are_not_produced() -> None:
    loop = _loop({})
    loop.settings = loop.settings.replace(batch_max_records=2)
    loop._assigned = set()
    m = lambda p, o: FakeMessage("in", p, o)  # noqa: E731
    loop.consumer = GroupScriptedConsumer([  # type: ignore[assignment]
        ("assign", [0, 1]), m(0, 0), m(1, 0),
        ("revoke", [1]), m(0, 1),  # served by the fetch of the next batch, before the first one commits
    ])
    loop.producer = producer = ScriptedProducer()  # type: ignore[assignment]
    loop.processor = LoggingProcessor()  # type: ignore[assignment]
    loop._subscribe()
    loop._turn()
    assert [k for _, k, _ in producer.committed] == [b"r0-0"], "partition 1's record is its next owner's"
    loop._turn()
    assert [k for _, k, _ in producer.committed] == [b"r0-0", b"r0-1"]
    loop._worker.shutdown()  # type: ignore[union-attr]


class WatchingProducer(BrokerProducer):
    """Notes, at each message produced, how many batches the processor had begun; at a transaction's
    first message it gives the worker a moment to begin the next one, which it must not."""

    def __init__(self, broker: FakeBroker, processor_box: list[LoggingProcessor]) -> None:
        super().__init__(broker)
        self.processor_box = processor_box
        self.begun_at_produce: list[tuple[bytes, int]] = []

    def produce(self, topic: str, value: bytes, key: bytes, headers: object = None, on_delivery=None) -> None:  # noqa: ANN001
        processor = self.processor_box[0]
        with processor.processed:
            if not self.open:
                begun = len(processor.batches)
                processor.processed.wait_for(lambda: len(processor.batches) > begun, timeout=0.3)
            self.begun_at_produce.append((key, len(processor.batches)))
        super().produce(topic, value, key, headers, on_delivery)


def test_the_next_batch_is_not_processed_while_the_transaction_is_produced() -> None:
    processor_box: list[LoggingProcessor] = []
    loop, _ = _broker_loop(7, lambda broker: WatchingProducer(broker, processor_box))
    processor_box.append(loop.processor)  # type: ignore[arg-type]
    for _ in range(4):
        loop._turn()
    producer = loop.producer
    assert producer.committed == keys(0, 6), "every record once, in order"  # type: ignore[attr-defined]
    # batch n's messages are produced with batches 1..n begun, never n+1: producing and processing
    # do not take turns at the interpreter
    assert producer.begun_at_produce == [(k, 1) for k in keys(0, 2)] + [(k, 2) for k in keys(3, 5)] + \
        [(k, 3) for k in keys(6, 6)]  # type: ignore[attr-defined]
    loop._worker.shutdown()  # type: ignore[union-attr]
