"""The exactly-once consume-transform-produce loop shared by every consuming stage.

One transaction per micro-batch::

    consume ≤ batch_max_records (≤ batch_max_wait_ms)
    begin_transaction
      produce one output or one dead letter per input record
      send_offsets_to_transaction(next offsets, consumer group metadata)
    commit_transaction            (abort + rewind to the batch start on error)

Input is read ``read_committed``; offsets are committed only inside the transaction, so
an input record leads to exactly one output or dead letter, across crashes and
rebalances.  No transaction is open while ``consume()`` runs, so a partition revoked
by a rebalance never has uncommitted work in flight.

The loop knows nothing of PPG: a :class:`Processor` maps a batch of input records to
one :class:`Output` or :class:`DeadLetter` each.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from ..config import Settings
from .clients import transactional_consumer_config, transactional_producer_config
from .dlq import dead_letter_headers
from .exceptions import FencedError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputRecord:
    key: bytes | None
    value: bytes
    topic: str
    partition: int
    offset: int
    timestamp_ms: int

    @property
    def record_id(self) -> str:
        return self.key.decode("utf-8", errors="replace") if self.key else ""


@dataclass(frozen=True)
class Output:
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass(frozen=True)
class DeadLetter:
    reason: str
    detail: str = ""


Outcome = Output | DeadLetter


class Processor(Protocol):
    def process(self, batch: Sequence[InputRecord]) -> Sequence[Outcome]:
        """Return exactly one outcome per input record, in order."""

    def between_batches(self) -> None:
        """Called when no transaction is open (e.g. to switch models)."""


class LoopObserver(Protocol):
    """What the loop reports; :mod:`ppg_mi.observability.metrics` implements it."""

    def consumed(self, n: int) -> None: ...
    def produced(self, n: int) -> None: ...
    def dead_lettered(self, reason: str) -> None: ...
    def batch(self, size: int, seconds: float) -> None: ...
    def transaction(self, outcome: str) -> None: ...
    def lag(self, topic: str, partition: int, lag: int) -> None: ...
    def heartbeat(self) -> None: ...
    def assigned(self, partitions: int) -> None: ...


class NullObserver:
    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *a, **k: None


class StageLoop:
    """Runs one stage: ``input_topic`` → ``processor`` → ``output_topic`` (+ the DLQ)."""

    def __init__(
        self,
        settings: Settings,
        role: str,
        input_topic: str,
        output_topic: str,
        group_id: str,
        processor: Processor,
        observer: LoopObserver | None = None,
    ) -> None:
        self.settings = settings
        self.role = role
        self.input_topic = input_topic
        self.output_topic = output_topic
        self.group_id = group_id
        self.processor = processor
        self.observer: LoopObserver = observer or NullObserver()  # type: ignore[assignment]
        self._stop = threading.Event()
        consumer_cfg = transactional_consumer_config(settings, group_id)
        consumer_cfg["stats_cb"] = self._on_stats
        consumer_cfg["error_cb"] = self._on_error
        self.consumer = Consumer(consumer_cfg)
        producer_cfg = transactional_producer_config(settings, role)
        producer_cfg["error_cb"] = self._on_error
        self.producer = Producer(producer_cfg)
        self._assigned: set[tuple[str, int]] = set()

    # --- lifecycle -----------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to finish its current batch and leave; safe from signal handlers."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        self._init_transactions()
        self.consumer.subscribe([self.input_topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_revoke)
        log.info("stage started", extra={"stage": self.role, "input": self.input_topic,
                                         "output": self.output_topic, "group": self.group_id})
        try:
            while not self._stop.is_set():
                self.observer.heartbeat()
                self.processor.between_batches()
                messages = self.consumer.consume(
                    num_messages=self.settings.batch_max_records,
                    timeout=self.settings.batch_max_wait_ms / 1000,
                )
                batch = self._records(messages)
                if batch:
                    self._process_batch(batch)
        finally:
            self._close()

    def _init_transactions(self) -> None:
        # retried: at start-up the broker may still be coming up
        deadline = time.monotonic() + 120
        while True:
            try:
                self.producer.init_transactions(10)
                return
            except KafkaException as exc:
                if not exc.args[0].retriable() or time.monotonic() > deadline or self._stop.is_set():
                    raise
                log.warning("waiting for the transaction coordinator", extra={"error": str(exc.args[0])})

    def _close(self) -> None:
        try:
            self.consumer.close()  # leaves the group so the partitions move at once
        except KafkaException as exc:
            log.warning("consumer close failed", extra={"error": str(exc)})
        self.producer.flush(2)
        log.info("stage stopped", extra={"stage": self.role})

    # --- one batch --------------------------------------------------------------
    def _records(self, messages: list[Message]) -> list[InputRecord]:
        records = []
        for m in messages:
            err = m.error()
            if err is not None:
                if err.fatal():
                    raise KafkaException(err)
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error", extra={"error": str(err)})
                continue
            _, ts = m.timestamp()
            records.append(InputRecord(m.key(), m.value() or b"", m.topic(), m.partition(), m.offset(), ts))
        return records

    def _outcomes(self, batch: list[InputRecord]) -> list[Outcome]:
        limit = self.settings.max_message_bytes
        fits = [r for r in batch if len(r.value) <= limit]
        by_offset: dict[tuple[int, int], Outcome] = {
            (r.partition, r.offset): DeadLetter("oversized", f"{len(r.value)} bytes > {limit}")
            for r in batch if len(r.value) > limit
        }
        if fits:
            try:
                results = list(self.processor.process(fits))
                if len(results) != len(fits):
                    raise RuntimeError(f"processor returned {len(results)} outcomes for {len(fits)} records")
            except Exception:
                # One record broke the batch: process each alone so only the culprits are dead-lettered.
                log.exception("batch failed; retrying record by record", extra={"stage": self.role})
                results = [self._process_one(r) for r in fits]
            for r, outcome in zip(fits, results):
                by_offset[(r.partition, r.offset)] = outcome
        return [by_offset[(r.partition, r.offset)] for r in batch]

    def _process_one(self, record: InputRecord) -> Outcome:
        try:
            return list(self.processor.process([record]))[0]
        except Exception as exc:  # noqa: BLE001 - any failure of one record is a dead letter
            log.error("record failed", extra={"record_id": record.record_id, "error": repr(exc)})
            return DeadLetter("processing_error", repr(exc)[:500])

    def _process_batch(self, batch: list[InputRecord]) -> None:
        started = time.perf_counter()
        outcomes = self._outcomes(batch)
        try:
            self._transact(batch, outcomes)
        except KafkaException as exc:
            self.observer.transaction("aborted")
            log.warning("transaction failed; aborting and rewinding",
                        extra={"stage": self.role, "error": str(exc.args[0])})
            self._abort()
            self._rewind(batch)
            return
        # counted only once committed, so that in = out + dead letters holds across aborts
        self.observer.consumed(len(batch))
        self.observer.produced(sum(isinstance(o, Output) for o in outcomes))
        for o in outcomes:
            if isinstance(o, DeadLetter):
                self.observer.dead_lettered(o.reason)
        self.observer.transaction("committed")
        self.observer.batch(len(batch), time.perf_counter() - started)

    def _transact(self, batch: list[InputRecord], outcomes: list[Outcome]) -> None:
        try:
            self.producer.begin_transaction()
            for record, outcome in zip(batch, outcomes):
                if isinstance(outcome, Output):
                    self._produce(self.output_topic, outcome.key, outcome.value, outcome.headers)
                else:
                    log.warning("dead letter", extra={"stage": self.role, "record_id": record.record_id,
                                                      "reason": outcome.reason, "detail": outcome.detail})
                    value = record.value if len(record.value) <= self.settings.max_message_bytes \
                        else record.value[:1024]
                    self._produce(self.settings.topic_dlq, record.key, value,
                                  dead_letter_headers(self.role, outcome.reason, outcome.detail, record))
            offsets = _next_offsets(batch)
            self._retrying(lambda: self.producer.send_offsets_to_transaction(
                offsets, self.consumer.consumer_group_metadata(), 10))
            self._retrying(lambda: self.producer.commit_transaction(10))
        except KafkaException as exc:
            err = exc.args[0]
            if err.fatal() or err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED,
                                             KafkaError.INVALID_PRODUCER_EPOCH):
                raise FencedError(f"{self.role}: producer fenced or fatal error: {err}") from exc
            raise

    def _retrying(self, call: Callable[[], None]) -> None:
        """Retry a transactional call while its error is retriable (e.g. broker restarting)."""
        while True:
            try:
                call()
                return
            except KafkaException as exc:
                err = exc.args[0]
                if not err.retriable() or err.txn_requires_abort() or self._stop.is_set():
                    raise
                log.warning("retrying transactional call", extra={"stage": self.role, "error": str(err)})
                self.observer.heartbeat()

    def _produce(self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, headers=headers or None)
                return
            except BufferError:
                self.producer.poll(0.1)  # local queue full: let deliveries drain

    def _abort(self) -> None:
        try:
            self.producer.abort_transaction(10)
        except KafkaException as exc:
            err = exc.args[0]
            if err.fatal():
                raise FencedError(f"{self.role}: abort failed fatally: {err}") from exc
            log.warning("abort failed", extra={"error": str(err)})

    def _rewind(self, batch: list[InputRecord]) -> None:
        """Seek back to each partition's first record of the failed batch so it is redone."""
        first: dict[tuple[str, int], int] = {}
        for r in batch:
            first.setdefault((r.topic, r.partition), r.offset)
        for (topic, partition), offset in first.items():
            if (topic, partition) not in self._assigned:
                continue  # revoked meanwhile: its new owner resumes from the committed offset
            try:
                self.consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                log.warning("rewind failed", extra={"partition": partition, "error": str(exc)})

    # --- callbacks -------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned |= {(p.topic, p.partition) for p in partitions}
        self.observer.assigned(len(self._assigned))
        log.info("partitions assigned", extra={"stage": self.role,
                                               "partitions": sorted(p.partition for p in partitions)})

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned -= {(p.topic, p.partition) for p in partitions}
        self.observer.assigned(len(self._assigned))
        log.info("partitions revoked", extra={"stage": self.role,
                                              "partitions": sorted(p.partition for p in partitions)})

    def _on_stats(self, raw: str) -> None:
        try:
            stats = json.loads(raw)
        except ValueError:
            return
        for topic, t in stats.get("topics", {}).items():
            for pid, p in t.get("partitions", {}).items():
                if int(pid) >= 0 and (topic, int(pid)) in self._assigned and p.get("consumer_lag", -1) >= 0:
                    self.observer.lag(topic, int(pid), int(p["consumer_lag"]))

    def _on_error(self, err: KafkaError) -> None:
        level = logging.ERROR if err.fatal() else logging.WARNING
        log.log(level, "kafka client error", extra={"stage": self.role, "error": str(err)})


def _next_offsets(batch: list[InputRecord]) -> list[TopicPartition]:
    last: dict[tuple[str, int], int] = {}
    for r in batch:
        key = (r.topic, r.partition)
        last[key] = max(last.get(key, -1), r.offset)
    return [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]
