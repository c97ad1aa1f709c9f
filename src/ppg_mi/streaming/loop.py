"""The exactly-once consume-transform-produce loop shared by every consuming stage.

One transaction per micro-batch::

    take the records already fetched, ≤ batch_max_records (waiting ≤ batch_max_wait_ms for one)
    drop records of partitions revoked meanwhile
    begin_transaction
      produce one output or one dead letter per input record
      send_offsets_to_transaction(next offsets, consumer group metadata)
    commit_transaction

With ``process_during_commit`` (the default) a turn also takes the *next* batch, what is already
fetched, before its transaction begins, and once the transaction's messages are produced a worker
thread processes it while the offsets are sent and the transaction commits: those waits for the
broker no longer idle the stage.  The next turn produces it, after dropping what a rebalance served
by that fetch revoked; after a failed transaction it is dropped unproduced, since the rewind seeks
back past it.

Errors are handled as librdkafka's transactional API asks: a *retriable* error of
``commit_transaction`` repeats the call (for up to :data:`COMMIT_RETRY_BUDGET_S`); any other
non-fatal error (``txn_requires_abort`` or a failed ``send_offsets_to_transaction``) aborts
the transaction; a *fatal* one that is fencing (a newer process has the same transactional
id) raises :class:`FencedError` and the process exits non-zero.  A call that blocks past its
own timeout, a commit still retriable after its budget (librdkafka bugs after a broker
restart), or any other fatal error, is abandoned: a new producer with the same transactional
id fences the old one and ends its transaction.  After an abort or a replacement every owned
partition is rewound to its *committed* offset, the broker's record of what is done: the
failed batch is redone, and a batch whose commit went through although the client never
heard so is not.

Failures are bounded.  ``abort_transaction`` is retried like the commit, within
:data:`ABORT_RETRY_BUDGET_S`.  A batch whose messages the broker refuses (a delivery report
such as ``MSG_SIZE_TOO_LARGE``: the same refusal on every redo), or that failed
:data:`MAX_BATCH_ATTEMPTS` times in a row, is redone one record per transaction, so only the
culprit is handled: a refused output becomes a ``refused`` dead letter, a refused dead letter is
written in its reduced form (:mod:`.dlq`).  A record that can be neither output nor
dead-lettered *blocks* the stage: it is not skipped, the ``delivery`` readiness check fails and
the heartbeat stops (so /healthz fails and the process is restarted) until it commits.

Input is read ``read_committed`` and offsets are committed only inside the
transaction, so an input record leads to exactly one output or dead letter across
crashes and rebalances.  Rebalance callbacks run only inside ``poll()``/``consume()``, when no
transaction is open, so a revoked partition never has uncommitted work in flight.

The loop knows nothing of PPG: a :class:`Processor` maps a batch of input records to
one :class:`Output` or :class:`DeadLetter` each.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from ..config import ConfigError, Settings
from .bounded import call_with_deadline
from .clients import transactional_consumer_config, transactional_producer_config
from .dlq import dead_letter
from .exceptions import ConsumerFailed, FencedError, ProducerFailed, StuckCall, TransactionExpired

log = logging.getLogger(__name__)

#: timeout of one transactional call while the loop runs normally (it is retried after it)
CALL_TIMEOUT_S = 10.0
#: grace beyond a call's own timeout after which it is stuck and its producer is replaced
STUCK_GRACE_S = 5.0
#: how long ``commit_transaction`` is retried on retriable errors before its producer is replaced
COMMIT_RETRY_BUDGET_S = 30.0
#: fatal errors that mean another process holds this transactional id: this one must exit
FENCING_ERRORS = frozenset({KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH})
#: other fatal producer errors in a row (no commit between) after which the process gives up
MAX_FATAL_IN_A_ROW = 3
#: how long a rewind waits for the committed offsets before it gives up the assignment instead (a new
#: consumer, whose assignment fetches them): never a guess that could redo a committed batch
COMMITTED_WAIT_S = 30.0
#: share of ``transaction_timeout_ms`` after which the loop stops working on an open transaction
#: (producing, sending offsets, retrying the commit) and ends it
TRANSACTION_WORK_FRACTION = 0.5
#: share of ``transaction_timeout_ms`` by which every call on a transaction's producer has returned or
#: been abandoned (the producer then replaced): the coordinator never times out one of our transactions
#: and bumps the epoch under a producer still in use, which would read as fencing (#18 item 4)
TRANSACTION_END_FRACTION = 0.9
#: shortest timeout worth giving a transactional call within a transaction's budget
MIN_CALL_S = 1.0
#: timeout of a watermark query (the log start of a rewound partition)
WATERMARK_TIMEOUT_S = 5.0
#: how long ``abort_transaction`` is retried on retriable errors before its producer is replaced
ABORT_RETRY_BUDGET_S = 30.0
#: failed transactions in a row (no commit between) after which a batch is redone record by record
MAX_BATCH_ATTEMPTS = 3
#: unexplained failures of one record's own transaction retried before the record blocks the stage
RECORD_RETRIES = 2
#: pause between attempts while the stage is blocked (a record can be neither output nor dead-lettered)
BLOCKED_BACKOFF_S = 1.0
#: delivery errors that blame the record itself, not the broker's state or the topic: the broker
#: will refuse that record every time (too large for the topic, invalid, refused by a policy)
RECORD_REFUSALS = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE,
                             KafkaError.INVALID_RECORD, KafkaError.POLICY_VIOLATION,
                             KafkaError.INVALID_TIMESTAMP})
#: delivery reports of messages purged by an abort: not a verdict on the message
_PURGED = frozenset({KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT})


@dataclass(frozen=True)
class InputRecord:
    key: bytes | None
    value: bytes
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    #: the assignment of its partition it was fetched under (#18 item 6): a partition revoked and
    #: assigned again while a batch is fetched must not contribute records of both assignments
    assignment: int = field(default=0, compare=False)

    @property
    def record_id(self) -> str:
        return self.key.decode("utf-8", errors="replace") if self.key else ""


@dataclass(frozen=True)
class Output:
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    #: called once the transaction holding this output committed (a processor's own counters:
    #: an aborted and redone batch must not count twice)
    on_commit: Callable[[], None] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class RewindPoint:
    """Where a rewound partition's records must resume: at ``low`` (its committed offset) or
    later, and no later than ``high`` when a record there is known to exist."""

    low: int
    high: int | None = None

    def admits(self, offset: int) -> bool:
        return self.low <= offset and (self.high is None or offset <= self.high)


@dataclass(frozen=True)
class TransactionBudget:
    """How long a transaction may stay open, as shares of the broker's ``transaction.timeout.ms``.

    Work on it (producing, ``send_offsets_to_transaction``, the commit and its retries) stops at
    ``work_s``; the abort that then follows, and any call of its producer, returns or is abandoned by
    ``end_s`` (each call's timeout is cut so that even its stuck grace ends there; a producer left
    with less than :data:`MIN_CALL_S` is replaced instead of called).  So no call is ever made on a
    producer whose transaction the coordinator may have timed out: that abort bumps the epoch,
    and the producer's next call fails with ``PRODUCER_FENCED``, which must keep meaning that
    another process took over (#18 item 4).
    """

    timeout_s: float

    @property
    def work_s(self) -> float:
        return self.timeout_s * TRANSACTION_WORK_FRACTION

    @property
    def end_s(self) -> float:
        return self.timeout_s * TRANSACTION_END_FRACTION

    @property
    def grace_s(self) -> float:
        """How long a call of the transaction may overrun its own timeout before it is stuck."""
        return min(STUCK_GRACE_S, 0.05 * self.timeout_s)

    def check(self) -> None:
        """Refuse a timeout too short to hold one call of each phase (a configuration error)."""
        smallest = MIN_CALL_S + self.grace_s
        if self.work_s < smallest or self.end_s - self.work_s < smallest:
            raise ConfigError(
                f"PPG_MI_TRANSACTION_TIMEOUT_MS={self.timeout_s * 1000:.0f} is too short: a transaction is given "
                f"up at {TRANSACTION_WORK_FRACTION:g} of it and ended by {TRANSACTION_END_FRACTION:g} of it, and "
                f"each phase must hold one call of {MIN_CALL_S:g} s plus {self.grace_s:g} s of grace; use at "
                f"least 3000")


@dataclass
class OpenTransaction:
    """The deadlines of the transaction begun at ``opened`` (monotonic seconds)."""

    opened: float
    budget: TransactionBudget

    @property
    def work_until(self) -> float:
        return self.opened + self.budget.work_s

    @property
    def end_by(self) -> float:
        return self.opened + self.budget.end_s


@dataclass(frozen=True)
class DeadLetter:
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class Failure:
    """A transaction that did not commit: ``refused`` maps the index of each message the broker
    refused to its delivery error; ``clean`` means it certainly did not commit (it was aborted:
    the batch may be redone from memory), as opposed to a stuck call or a replaced producer."""

    error: Exception
    refused: dict[int, KafkaError]
    clean: bool

    def record_refusal(self, index: int) -> KafkaError | None:
        err = self.refused.get(index)
        return err if err is not None and err.code() in RECORD_REFUSALS else None


Outcome = Output | DeadLetter


@dataclass(frozen=True)
class Processed:
    """A batch and its outcomes, not yet produced; ``started`` is when its processing began."""

    batch: list[InputRecord]
    outcomes: list[Outcome]
    started: float


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
    def transaction_seconds(self, seconds: float) -> None: ...
    def lag(self, topic: str, partition: int, lag: int) -> None: ...
    def heartbeat(self) -> None: ...
    def assigned(self, partitions: int) -> None: ...
    def blocked(self, why: str | None) -> None: ...
    def lost_to_retention(self, offsets: int) -> None: ...


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
        self._stop_deadline = float("inf")
        #: how long a transaction may stay open; a timeout too short for it is a configuration error
        self.budget = TransactionBudget(settings.transaction_timeout_ms / 1000)
        self.budget.check()
        self._txn: OpenTransaction | None = None  # the transaction being worked on, if any
        self.consumer = self._new_consumer()
        self.producer = self._new_producer()
        #: producers replaced because a call of theirs was stuck or failed fatally
        self.producers_replaced = 0
        #: consumers replaced because the committed offsets to rewind to could not be read
        self.consumers_replaced = 0
        self._fatal_in_a_row = 0  # fatal producer errors since the last commit
        self._consumer_fatal_in_a_row = 0  # fatal consumer errors since the last commit
        self._assigned: set[tuple[str, int]] = set()
        #: partition → the number of the assignment it is owned under (records are tagged with it)
        self._generation: dict[tuple[str, int], int] = {}
        self._assignments = 0  # assignments served so far: the next one's number
        #: partition → where it was rewound to, until its first record from there comes back
        self._rewound: dict[tuple[str, int], RewindPoint] = {}
        self._running = False  # the loop has turned once
        self._attempts = 0  # failed transactions since the last commit
        #: why the stage is blocked (a record can be neither output nor dead-lettered), and that record
        self._blocked: str | None = None
        self._blocked_at: tuple[str, int, int] | None = None
        self._attempt_no = 0  # tags delivery reports with the attempt whose message they report
        self._refused: dict[int, KafkaError] = {}
        self._closed = threading.Event()  # the consumer left the group and the producer flushed
        #: processes the next batch while a transaction commits (None: process_during_commit is off)
        self._worker = (ThreadPoolExecutor(1, thread_name_prefix=f"{role}-next-batch")
                        if settings.process_during_commit else None)
        self._next: Processed | None = None  # the next batch, processed during the last commit
        #: called once a transaction's messages are produced, before it commits (starts the next batch)
        self._while_committing: Callable[[], None] | None = None
        #: rewinds and consumer replacements so far: a batch fetched before one is behind the position
        self._repositioned = 0

    # --- lifecycle -----------------------------------------------------------
    def stop(self) -> None:
        """Finish (or abort) the current batch, leave the group and return from :meth:`run`.

        Safe from signal handlers.  The process then has ``shutdown_timeout_s`` (+1 s); a
        watchdog ends it when it overruns: with status 0 if the loop had closed cleanly,
        else 1 (an open transaction is then aborted by the broker, or by the successor's
        ``init_transactions``, so nothing is lost either way).
        """
        if self._stop.is_set():
            return
        self._stop_deadline = time.monotonic() + self.settings.shutdown_timeout_s
        self._stop.set()
        watchdog = threading.Timer(self.settings.shutdown_timeout_s + 1.0, self._overdue)
        watchdog.daemon = True
        watchdog.start()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        self._init_transactions()
        self._subscribe()
        log.info("stage started", extra={"stage": self.role, "input": self.input_topic,
                                         "output": self.output_topic, "group": self.group_id})
        try:
            while not self._stop.is_set():
                self._running = True
                self._beat()
                self._turn()
        except FencedError as exc:
            log.error("fenced: another process took over this transactional id; exiting",
                      extra={"stage": self.role, "error": str(exc)})
            raise
        except ProducerFailed as exc:
            log.error("the producer keeps failing fatally; exiting", extra={"stage": self.role, "error": str(exc)})
            raise
        except ConsumerFailed as exc:
            log.error("the consumer keeps failing fatally; exiting", extra={"stage": self.role, "error": str(exc)})
            raise
        finally:
            self._close()

    def _turn(self) -> None:
        """One turn of the loop: a batch fetched, filtered to what this process owns, processed, and
        committed in one transaction; with a worker, the next batch is processed meanwhile."""
        current, self._next = self._next, None
        if current is None:
            self.processor.between_batches()
            batch = self._fetch_owned()
            if not batch:
                return
            current = self._processed(batch)
        if self._worker is None:
            self._process_batch(current.batch, current.outcomes, current.started)
            return
        repositioned = self._repositioned
        following = self._fetch_owned(0.0)  # no transaction is open: rebalance callbacks may run here
        current = self._still_owned(current)
        if not current.batch:
            self._next = self._processed(following) if following else None
            return
        self.processor.between_batches()  # no transaction is open, and no processing runs
        worker = self._worker
        job: list[Future[Processed]] = []

        def process_following() -> None:
            if following and not job:
                job.append(worker.submit(self._processed, following))

        # only once the transaction's messages are produced: producing is Python work too, and two
        # threads taking turns at the interpreter cost more CPU per record than they save
        self._while_committing = process_following
        try:
            self._process_batch(current.batch, current.outcomes, current.started)
        finally:
            self._while_committing = None
            processed = job[0].result() if job else None
        if self._repositioned != repositioned or self._stop.is_set():
            return  # the records fetched after this batch come again from where the partitions now stand
        if processed is None and following:
            processed = self._processed(following)  # no transaction got as far as its commit
        self._next = processed

    def _fetch_owned(self, wait_s: float | None = None) -> list[InputRecord]:
        """The records :meth:`_fetch` returns that this process owns and may process now; a consumer
        that failed fatally is replaced (nothing of its fetch is kept)."""
        try:
            fetched = self._fetch(wait_s)
        except ConsumerFailed as exc:
            self._consumer_fatal_in_a_row += 1
            if self._consumer_fatal_in_a_row > MAX_FATAL_IN_A_ROW:
                raise
            self._replace_consumer("consumer failed fatally; replacing the consumer", str(exc))
            return []
        return self._from_rewind_points(self._owned(fetched))

    def _processed(self, batch: list[InputRecord]) -> Processed:
        started = time.perf_counter()
        return Processed(batch, self._outcomes(batch), started)

    def _still_owned(self, processed: Processed) -> Processed:
        """``processed`` without the records whose partitions a rebalance took away since it was fetched."""
        keep = [i for i, r in enumerate(processed.batch) if self._owns(r)]
        if len(keep) == len(processed.batch):
            return processed
        log.info("dropped processed records of revoked partitions", extra={
            "stage": self.role, "dropped": len(processed.batch) - len(keep)})
        return Processed([processed.batch[i] for i in keep], [processed.outcomes[i] for i in keep],
                         processed.started)

    def _subscribe(self) -> None:
        self.consumer.subscribe([self.input_topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_lost)

    def _fetch(self, wait_s: float | None = None) -> list[InputRecord]:
        """Wait up to ``wait_s`` (default ``batch_max_wait_ms``) for one record, then add those already fetched.

        Batches are self-clocking: as large as what arrived while the previous one was being
        processed (up to ``batch_max_records``), plus what arrives within ``batch_fill_ms``
        (0 by default).  ``consume(n, wait)`` alone would wait the whole ``wait`` unless ``n``
        records arrive, adding that wait to every record's latency below full load.

        One ``poll()`` per message, not ``consume(n)``: rebalance callbacks run inside either, and
        only between two polls can a record be tagged with the assignment it was fetched under
        (``consume`` returns records of a partition's revoked assignment and of its next one in one
        list, indistinguishable; #18 item 6).  A message a poll returns after serving a callback
        belongs to the new assignment: librdkafka drops fetched messages of an outdated one.
        """
        first = self.consumer.poll(self.settings.batch_max_wait_ms / 1000 if wait_s is None else wait_s)
        if first is None:
            return []
        messages = [self._tagged(first)]
        fill_until = time.monotonic() + self.settings.batch_fill_ms / 1000
        while len(messages) < self.settings.batch_max_records:
            m = self.consumer.poll(max(0.0, fill_until - time.monotonic()))
            if m is None:
                break
            messages.append(self._tagged(m))
        return self._records(messages)

    def _tagged(self, m: Message) -> tuple[Message, int]:
        """``m`` and the assignment its partition is owned under now (-1: not owned)."""
        return m, self._generation.get((m.topic(), m.partition()), -1)

    def _init_transactions(self) -> None:
        # retried: at start-up the broker may still be coming up.  This call also aborts
        # a transaction a killed predecessor with the same transactional id left open.
        deadline = time.monotonic() + 120
        while True:
            try:
                self._bounded(self.producer.init_transactions, CALL_TIMEOUT_S)
                return
            except StuckCall as exc:
                if time.monotonic() > deadline or self._stop.is_set():
                    raise
                log.warning("init_transactions stuck; retrying with a new producer", extra={"error": str(exc)})
                self.producer = self._new_producer()
            except KafkaException as exc:
                err = exc.args[0]
                if not err.retriable() or time.monotonic() > deadline or self._stop.is_set():
                    raise
                log.warning("waiting for the transaction coordinator", extra={"error": str(err)})
                if self._running:  # a replaced producer's wait; before the loop runs, readiness waits for it
                    self._beat()

    def _close(self) -> None:
        try:
            self.consumer.close()  # leaves the group so the partitions move at once
        except (KafkaException, RuntimeError) as exc:
            log.warning("consumer close failed", extra={"error": str(exc)})
        try:
            self.producer.flush(min(2.0, self._remaining()))
        except KafkaException as exc:  # a fenced or failed producer: its transaction is aborted anyway
            log.warning("producer flush failed", extra={"error": str(exc)})
        if self._worker is not None:
            self._worker.shutdown(wait=True)
        self._closed.set()
        log.info("stage stopped", extra={"stage": self.role})

    def _remaining(self) -> float:
        """Seconds a blocking call may take: CALL_TIMEOUT_S, less once shutting down."""
        return max(0.1, min(CALL_TIMEOUT_S, self._stop_deadline - time.monotonic()))

    def _new_consumer(self) -> Consumer:
        cfg = transactional_consumer_config(self.settings, self.group_id)
        cfg["stats_cb"] = self._on_stats
        cfg["error_cb"] = self._on_error
        return Consumer(cfg)

    def _new_producer(self) -> Producer:
        cfg = transactional_producer_config(self.settings, self.role)
        cfg["error_cb"] = self._on_error
        return Producer(cfg)

    def _bounded(self, call: Callable[[float], object], timeout: float, what: str = "",
                 grace: float = STUCK_GRACE_S) -> None:
        """``call(timeout)``, abandoned as stuck if it overruns by ``grace`` (raises :class:`StuckCall`)."""
        name = what or getattr(call, "__name__", "call")
        call_with_deadline(lambda: call(timeout), timeout + grace, f"{self.role} {name}")

    def _replace_stuck_producer(self, exc: StuckCall) -> None:
        """Give up a producer whose call is stuck, without giving up the process."""
        self._replace_producer("transactional call stuck beyond its timeout; replacing the producer", str(exc))

    def _replace_failed_producer(self, err: KafkaError) -> None:
        """Give up a producer that failed fatally, unless it was fenced or fails again and again.

        A fatal error other than fencing is the producer's state, not a rival's: after a broker
        restart the coordinator answered an abort with INVALID_TXN_STATE, which librdkafka makes
        fatal.  Raises :class:`FencedError` when another process took over the transactional
        id (replacing the producer would fence that process in turn), and
        :class:`ProducerFailed` after :data:`MAX_FATAL_IN_A_ROW` failures with no commit between.
        """
        if err.code() in FENCING_ERRORS:
            raise FencedError(f"{self.role}: producer fenced: {err}")
        self._fatal_in_a_row += 1
        if self._fatal_in_a_row > MAX_FATAL_IN_A_ROW:
            raise ProducerFailed(f"{self.role}: {self._fatal_in_a_row} fatal producer errors in a row, the last: {err}")
        self._replace_producer("producer failed fatally; replacing the producer", str(err))

    def _replace_producer(self, why: str, error: str) -> None:
        """A new producer with the same transactional id; the caller then rewinds and redoes the batch.

        Its ``init_transactions`` bumps the epoch: the old producer is fenced (nothing it still
        holds can commit) and its open transaction is aborted.
        """
        self.producers_replaced += 1
        log.error(why, extra={"stage": self.role, "error": error, "replaced": self.producers_replaced})
        self._beat()  # recovering, not stuck: /healthz must not restart the process meanwhile
        self.producer = self._new_producer()
        self._init_transactions()

    def _overdue(self) -> None:
        # the stream's state is clean once the loop closed; only the rest of the teardown was slow
        clean = self._closed.is_set()
        log.log(logging.WARNING if clean else logging.ERROR, "shutdown overran its deadline; exiting at once",
                extra={"stage": self.role, "shutdown_timeout_s": self.settings.shutdown_timeout_s,
                       "loop_closed": clean})
        logging.shutdown()
        os._exit(0 if clean else 1)

    # --- one batch --------------------------------------------------------------
    def _records(self, messages: list[tuple[Message, int]]) -> list[InputRecord]:
        records = []
        for m, assignment in messages:
            err = m.error()
            if err is not None:
                if err.fatal() or err.code() == KafkaError._FATAL:
                    # the consumer is unusable (e.g. a static member fenced by its own stale membership
                    # after a broker restart): this fetch is dropped and the consumer replaced
                    raise ConsumerFailed(str(err))
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error", extra={"error": str(err)})
                continue
            _, ts = m.timestamp()
            records.append(InputRecord(m.key(), m.value() or b"", m.topic(), m.partition(), m.offset(), ts,
                                       assignment))
        return records

    def _owned(self, records: list[InputRecord]) -> list[InputRecord]:
        """Drop records of partitions revoked by a rebalance served while the batch was fetched,
        and records fetched under an earlier assignment of a partition assigned again meanwhile.

        A revoked partition's new owner resumes from the committed offset; committing its records
        here too would hand one record to two transactions.  A partition revoked and assigned again
        within one fetch resumes from the committed offset as well: its records of the earlier
        assignment come again under the new one, and both in one batch would be one record twice.
        """
        owned = [r for r in records if self._owns(r)]
        if len(owned) != len(records):
            log.info("dropped records of revoked partitions or of an earlier assignment",
                     extra={"stage": self.role, "dropped": len(records) - len(owned)})
        return owned

    def _owns(self, record: InputRecord) -> bool:
        key = (record.topic, record.partition)
        return key in self._assigned and record.assignment == self._generation.get(key, 0)

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
            results = list(self.processor.process([record]))
            if len(results) != 1:
                raise RuntimeError(f"processor returned {len(results)} outcomes for 1 record")
            return results[0]
        except Exception as exc:  # noqa: BLE001 - any failure of one record is a dead letter
            log.error("record failed", extra={"record_id": record.record_id, "error": repr(exc)})
            return DeadLetter("processing_error", repr(exc)[:500])

    def _process_batch(self, batch: list[InputRecord], outcomes: list[Outcome] | None = None,
                       started: float | None = None) -> None:
        """Commit ``batch``'s outcomes (processed now unless given) in one transaction, or handle its failure."""
        if outcomes is None:
            started = time.perf_counter()
            outcomes = self._outcomes(batch)
        started = time.perf_counter() if started is None else started
        if self._attempts >= MAX_BATCH_ATTEMPTS:
            # the same work failed again and again for no reason the broker named: find the record
            self._one_by_one(batch, outcomes, started)
            return
        failure = self._attempt(batch, [self._message(r, o) for r, o in zip(batch, outcomes)])
        if failure is None:
            self._done(batch, outcomes, started)
        elif failure.clean and any(failure.record_refusal(i) is not None for i in range(len(batch))):
            # the broker refused records of this (aborted) batch: it would refuse them on every
            # redo, so redo it now, from memory, one record per transaction
            self._one_by_one(batch, outcomes, started)
        else:
            self._rewind(batch)
            self._after_failure()

    def _attempt(self, batch: list[InputRecord],
                 messages: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]]) -> Failure | None:
        """One transaction of ``messages`` (one per record of ``batch``) and the batch's offsets;
        None when it committed, else the failed transaction ended (aborted, or its producer replaced)."""
        self._attempt_no += 1
        self._refused = {}
        try:
            self._transact(batch, messages)
            return None
        except (StuckCall, KafkaException, TransactionExpired) as exc:
            self._attempts += 1
            producer = self.producer
            stuck = isinstance(exc, StuckCall)
            clean = isinstance(exc, TransactionExpired) or (not stuck and not exc.args[0].fatal())
            if clean:
                # serve the delivery reports that name refused messages (a fatally failed producer
                # raises its error from poll: it is replaced or fenced below, its reports do not matter)
                producer.poll(0)
            try:
                self._end_failed_transaction(exc)
            finally:
                self._txn = None
            if clean and producer is self.producer:
                producer.poll(0)
            self.observer.transaction("stuck" if stuck else "aborted")
            refused = dict(self._refused)
            if refused:
                log.warning("the broker refused messages of the transaction", extra={
                    "stage": self.role, "refused": {str(i): str(e) for i, e in sorted(refused.items())[:5]}})
            return Failure(exc, refused, clean)

    def _one_by_one(self, batch: list[InputRecord], outcomes: list[Outcome], started: float) -> None:
        """Redo ``batch`` one record per transaction, so that only the records the broker refuses
        are handled as such: an output the broker refuses becomes a ``refused`` dead letter; a dead
        letter it refuses is written in its reduced form (key and value cut, original sizes in
        headers); a record that can be neither (the reduced dead letter refused too, or a failure
        the broker does not blame on the record) blocks the stage: it stays uncommitted (nothing is
        skipped), the stage stops being ready and, with no heartbeat, live, and its partition is
        rewound to it and tried again until it goes through."""
        log.warning("redoing a failing batch record by record", extra={
            "stage": self.role, "records": len(batch), "attempts": self._attempts})
        for i, (record, outcome) in enumerate(zip(batch, outcomes)):
            if self._stop.is_set():
                return  # not committed: the next owner (or this process's restart) redoes the rest
            reduced = False
            unexplained = 0
            while True:
                failure = self._attempt([record], [self._message(record, outcome, reduced)])
                if failure is None:
                    self._done([record], [outcome], started)
                    break
                refusal = failure.record_refusal(0) if failure.clean else None
                if refusal is None and failure.clean and unexplained < RECORD_RETRIES:
                    # e.g. the transaction after a refused message fails with OUT_OF_ORDER_SEQUENCE_NUMBER
                    # (the broker never took the sequence number the refused one used); its abort bumps
                    # the producer epoch, and the same message then gets the broker's real verdict
                    unexplained += 1
                    continue
                if refusal is None:
                    self._block(record, f"the transaction of record {record.topic}[{record.partition}]@"
                                        f"{record.offset} keeps failing: {failure.error}")
                elif isinstance(outcome, Output):
                    outcome = DeadLetter("refused", f"{self.output_topic} refused the output: {refusal}")
                    continue
                elif not reduced:
                    reduced = True
                    continue
                else:
                    self._block(record, f"{self.settings.topic_dlq} refuses even the reduced dead letter of "
                                        f"{record.topic}[{record.partition}]@{record.offset}: {refusal}")
                self._rewind(batch[i:])
                self._after_failure()
                return

    def _done(self, batch: list[InputRecord], outcomes: list[Outcome], started: float) -> None:
        """Count a committed transaction; counted only once committed, so that in = out + dead
        letters holds across aborts."""
        self._fatal_in_a_row = 0
        self._consumer_fatal_in_a_row = 0
        self._attempts = 0
        self.observer.consumed(len(batch))
        self.observer.produced(sum(isinstance(o, Output) for o in outcomes))
        for o in outcomes:
            if isinstance(o, DeadLetter):
                self.observer.dead_lettered(o.reason)
            elif o.on_commit is not None:
                o.on_commit()
        self.observer.transaction("committed")
        self.observer.batch(len(batch), time.perf_counter() - started)
        if self._blocked is not None and (self._blocked_at is None or any(
                (r.topic, r.partition, r.offset) == self._blocked_at for r in batch)):
            self._unblock()

    def _after_failure(self) -> None:
        if self._blocked is not None:
            self._stop.wait(BLOCKED_BACKOFF_S)  # the same failure again: no hot loop of transactions

    def _beat(self) -> None:
        """The heartbeat behind /healthz, withheld while the stage is blocked: a process that cannot
        move a partition on must be restarted, not kept alive by its retries."""
        if self._blocked is None:
            self.observer.heartbeat()

    def _block(self, record: InputRecord, why: str) -> None:
        if self._blocked is None:
            log.error("stage blocked: a record can be neither output nor dead-lettered; not ready, and not "
                      "live once the liveness timeout passes", extra={"stage": self.role, "error": why})
        self._blocked, self._blocked_at = why, (record.topic, record.partition, record.offset)
        self.observer.blocked(why)

    def _unblock(self) -> None:
        log.warning("stage unblocked", extra={"stage": self.role, "was": self._blocked})
        self._blocked = self._blocked_at = None
        self.observer.blocked(None)

    def _end_failed_transaction(self, exc: StuckCall | KafkaException | TransactionExpired) -> None:
        """Make sure nothing of the failed batch's transaction can still commit."""
        if isinstance(exc, StuckCall):
            self._replace_stuck_producer(exc)
            return
        if isinstance(exc, TransactionExpired):
            log.warning("transaction open too long; aborting and rewinding", extra={"stage": self.role,
                                                                                   "error": str(exc)})
            self._abort()
            return
        err = exc.args[0]
        if err.fatal():
            self._replace_failed_producer(err)  # its init_transactions aborts the transaction
            return
        # abortable, or a retriable call given up at shutdown: nothing of the batch is visible
        log.warning("transaction failed; aborting and rewinding",
                    extra={"stage": self.role, "error": str(err), "abortable": err.txn_requires_abort()})
        self._abort()

    def _message(self, record: InputRecord, outcome: Outcome,
                 reduced: bool = False) -> tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]:
        """(topic, key, value, headers) written for ``record``: its output, or its dead letter
        (in the reduced form when it would not fit in one message, or ``reduced``)."""
        if isinstance(outcome, Output):
            return self.output_topic, outcome.key, outcome.value, outcome.headers
        return (self.settings.topic_dlq,
                *dead_letter(self.role, outcome.reason, outcome.detail, record, self.settings.max_message_bytes,
                             reduced))

    def _transact(self, batch: list[InputRecord],
                  messages: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]]) -> None:
        self._txn = OpenTransaction(time.monotonic(), self.budget)
        self.producer.begin_transaction()
        for i, (record, (topic, key, value, headers)) in enumerate(zip(batch, messages)):
            if topic == self.settings.topic_dlq:
                log.warning("dead letter", extra={"stage": self.role, "record_id": record.record_id[:200],
                                                  "reason": dict(headers).get("ppg-mi.reason", b"").decode(),
                                                  "bytes": len(value)})
            self._produce(topic, key, value, headers, i)
        self._hold_if_asked()
        if self._while_committing is not None:
            self._while_committing()
        # Not retried: an error here aborts and redoes the batch, which is always safe.
        offsets, group = _next_offsets(batch), self.consumer.consumer_group_metadata()
        producer = self.producer
        started = time.perf_counter()
        self._bounded(lambda timeout: producer.send_offsets_to_transaction(offsets, group, timeout),
                      self._work_timeout("send_offsets_to_transaction"), "send_offsets_to_transaction",
                      self.budget.grace_s)
        self._retrying(lambda: self._bounded(producer.commit_transaction, self._work_timeout("commit_transaction"),
                                             grace=self.budget.grace_s), "commit_transaction")
        self._txn = None
        self.observer.transaction_seconds(time.perf_counter() - started)

    def _work_timeout(self, what: str) -> float:
        """Timeout of a call working on the open transaction: :meth:`_remaining`, cut so that the call
        (its stuck grace included) ends within the transaction's work budget; raises
        :class:`TransactionExpired` when not even :data:`MIN_CALL_S` is left."""
        timeout = self._remaining()
        if self._txn is None:
            return timeout
        left = self._txn.work_until - time.monotonic() - self.budget.grace_s
        if left < MIN_CALL_S:
            raise TransactionExpired(f"{self.role} {what}: the transaction was open for "
                                     f"{time.monotonic() - self._txn.opened:.1f} s, its work budget is "
                                     f"{self.budget.work_s:g} s of the {self.budget.timeout_s:g} s timeout")
        return min(timeout, left)

    def _hold_if_asked(self) -> None:
        """Test fault: while ``fault_hold_transaction_file`` exists, hold the open transaction (its messages
        produced, its offsets not yet sent), within its work budget, having written ``<file>.held``:
        a test stops the broker while a transaction is provably open."""
        path = self.settings.fault_hold_transaction_file
        if not path or not os.path.exists(path) or self._txn is None:
            return
        log.warning("holding the open transaction (test fault)", extra={"stage": self.role, "file": path})
        self.producer.flush(max(0.1, min(self._remaining(), self._txn.work_until - time.monotonic() - MIN_CALL_S)))
        with open(f"{path}.held", "w") as held:
            held.write(f"{self._txn.opened}\n")
        until = self._txn.work_until - self.budget.grace_s - 2 * MIN_CALL_S
        while os.path.exists(path) and time.monotonic() < until and not self._stop.is_set():
            self._stop.wait(0.05)

    def _retrying(self, call: Callable[[], None], what: str) -> None:
        """Repeat a transactional call while its error is retriable (e.g. the broker restarting).

        Gives up (raising) on any other error, and at shutdown once the deadline passed.  Still
        retriable after :data:`COMMIT_RETRY_BUDGET_S`, or once the transaction's work budget is spent,
        is treated as stuck (:class:`StuckCall`): after a broker restart librdkafka can time out the
        same call forever (seen in the broker-restart test, where the coordinator meanwhile aborted
        the transaction), and a commit retried past the transaction's timeout would meet the
        coordinator's abort as ``PRODUCER_FENCED``.
        """
        give_up = time.monotonic() + COMMIT_RETRY_BUDGET_S
        while True:
            try:
                call()
                return
            except TransactionExpired as exc:
                raise StuckCall(f"{self.role} {what} still failing when the transaction's budget ran out: "
                                f"{exc.__context__ or exc}") from exc
            except KafkaException as exc:
                err = exc.args[0]
                if not err.retriable() or err.txn_requires_abort() or time.monotonic() >= self._stop_deadline:
                    raise
                if time.monotonic() >= give_up:
                    raise StuckCall(f"{self.role} {what} still failing after {COMMIT_RETRY_BUDGET_S:g} s: {err}") from exc
                log.warning("retrying transactional call", extra={"stage": self.role, "call": what, "error": str(err)})
                self._beat()


    def _produce(self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]],
                 index: int | None = None) -> None:
        """Produce one message; with ``index``, a refusal of it (its delivery report, or the local
        size check) is noted in ``_refused`` under that index for this attempt."""
        on_delivery = None if index is None else self._delivery_report(index)
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, headers=headers or None, on_delivery=on_delivery)
                return
            except BufferError:
                self._work_timeout("produce")  # a queue that does not drain within the budget ends the transaction
                self.producer.poll(0.1)  # local queue full: let deliveries drain
            except KafkaException as exc:  # refused before it left (e.g. above message.max.bytes)
                if index is not None:
                    self._refused.setdefault(index, exc.args[0])
                raise

    def _delivery_report(self, index: int) -> Callable[[KafkaError | None, Message], None]:
        attempt = self._attempt_no

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            # a late report of an earlier attempt (or a message purged by an abort) blames nothing here
            if err is not None and err.code() not in _PURGED and attempt == self._attempt_no:
                self._refused.setdefault(index, err)

        return on_delivery

    def _abort(self) -> None:
        """Abort the open transaction, retrying retriable errors for :data:`ABORT_RETRY_BUDGET_S`;
        past that, or when the call is stuck or failed fatally, the producer is replaced (its
        ``init_transactions`` aborts the transaction): a broker that keeps timing out aborts must
        not keep the process heart-beating forever."""
        give_up = time.monotonic() + ABORT_RETRY_BUDGET_S
        while True:
            timeout = self._end_timeout()
            if timeout is None:
                # no call may be made on this producer any more: the coordinator could time its
                # transaction out meanwhile, and the answer would read as fencing (#18 item 4)
                self._replace_stuck_producer(StuckCall(
                    f"{self.role} abort_transaction: the transaction's budget of {self.budget.end_s:g} s ran out"))
                return
            try:
                self._bounded(self.producer.abort_transaction, timeout,
                              grace=STUCK_GRACE_S if self._txn is None else self.budget.grace_s)
                return
            except StuckCall as exc:
                self._replace_stuck_producer(exc)  # its init_transactions aborts the transaction
                return
            except KafkaException as exc:
                err = exc.args[0]
                if err.fatal():
                    self._replace_failed_producer(err)  # its init_transactions aborts the transaction
                    return
                if not err.retriable() or time.monotonic() >= self._stop_deadline:
                    # e.g. no transaction was begun; the next begin_transaction reports the state
                    log.warning("abort failed", extra={"stage": self.role, "error": str(err)})
                    return
                if time.monotonic() >= give_up:
                    self._replace_stuck_producer(StuckCall(
                        f"{self.role} abort_transaction still failing after {ABORT_RETRY_BUDGET_S:g} s: {err}"))
                    return
                log.warning("retrying transactional call", extra={"stage": self.role, "call": "abort_transaction",
                                                                  "error": str(err)})
                self._beat()

    def _end_timeout(self) -> float | None:
        """Timeout of a call ending the open transaction: :meth:`_remaining`, cut so that the call ends
        (its stuck grace included) by the transaction's ``end_by``; None when less than
        :data:`MIN_CALL_S` is left (the producer must then be replaced, not called)."""
        timeout = self._remaining()
        if self._txn is None:
            return timeout
        left = self._txn.end_by - time.monotonic() - self.budget.grace_s
        return None if left < MIN_CALL_S else min(timeout, left)

    def _rewind(self, batch: list[InputRecord]) -> None:
        """Seek every owned partition back to its committed offset, after an abort or a replacement.

        The committed offsets say what is done: normally the failed batch's first offsets, but
        also the end of a batch whose commit went through unseen (a stuck ``commit_transaction``
        whose producer was replaced), so that batch is not redone.  Partitions outside the batch
        are rewound too: whatever was fetched past their committed offset is refetched.  A rewind
        point below the partition's log start (retention deleted those records) moves to the log
        start: the records lost are counted, not sought forever (#18 item 5).
        """
        self._repositioned += 1
        if self._stop.is_set():
            return  # leaving the group: the next owner resumes from the committed offsets anyway
        first: dict[tuple[str, int], int] = {}
        for r in batch:
            first.setdefault((r.topic, r.partition), r.offset)
        committed = self._committed(sorted(self._assigned))
        if committed is None:
            # Never guess: the failed batch's first offsets would redo a batch whose commit went
            # through unseen, and both faults come from the same broker restart (#18 item 2).
            self._replace_consumer("committed offsets unavailable; rejoining the group so that the assignment "
                                   "fetches them", f"no answer within {COMMITTED_WAIT_S:g} s")
            return
        ask_log_start = True  # until the broker fails to answer once: the guard asks again if it must
        for tp in committed:
            key = (tp.topic, tp.partition)
            if key not in self._assigned:
                continue  # revoked meanwhile: its new owner resumes from the committed offset
            # nothing committed yet: from the beginning, as auto.offset.reset=earliest would
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            low = max(offset, 0)
            log_start = self._log_start(key) if ask_log_start else None
            ask_log_start = log_start is not None
            if log_start is not None and low < log_start:
                self._lost_to_retention(key, low, log_start)
                offset = low = log_start
            # a record is known to exist at the batch's first offset, so the stream resumes there or earlier
            high = first[key] if key in first and first[key] >= low else None
            self._rewound[key] = RewindPoint(low, high)
            self._seek(key, offset)
        log.info("rewound to the committed offsets", extra={
            "stage": self.role, "offsets": {f"{t}[{p}]": point.low for (t, p), point in self._rewound.items()}})

    def _replace_consumer(self, why: str, error: str) -> None:
        """Give up the assignment: close the consumer and subscribe with a new one.

        The new consumer's assignment fetches the committed offsets itself, from a coordinator it
        looks up afresh (librdkafka's ``committed()`` can time out for minutes after a broker
        restart), and fetches nothing before it has them: no record is redone or skipped.  A close
        that does not return in time is left behind; its callbacks no longer touch this loop.
        """
        log.error(why, extra={"stage": self.role, "error": error, "replaced": self.consumers_replaced + 1})
        self._repositioned += 1
        old = self.consumer
        try:
            call_with_deadline(old.close, CALL_TIMEOUT_S, f"{self.role} consumer close")
        except (StuckCall, KafkaException, RuntimeError) as exc:
            log.warning("consumer close failed; leaving it behind", extra={"stage": self.role, "error": str(exc)})
        self._assigned.clear()
        self._generation.clear()
        self._rewound.clear()
        if self._blocked_at is not None:
            self._unblock()  # the blocking record comes back with the new assignment if it is still ours
        self.observer.assigned(0)
        self.consumers_replaced += 1
        self.consumer = self._new_consumer()
        self._subscribe()

    def _log_start(self, key: tuple[str, int]) -> int | None:
        """The partition's first offset still in the log, asked of the broker; None when it does not answer."""
        try:
            low, _high = self.consumer.get_watermark_offsets(TopicPartition(key[0], key[1]),
                                                             timeout=WATERMARK_TIMEOUT_S, cached=False)
        except KafkaException as exc:
            log.warning("log start unavailable", extra={"stage": self.role, "partition": key[1], "error": str(exc)})
            return None
        return low if low >= 0 else None

    def _lost_to_retention(self, key: tuple[str, int], offset: int, log_start: int) -> None:
        """Records from ``offset`` were to be redone, but the log now starts at ``log_start``."""
        lost = log_start - offset
        log.error("records deleted before they were processed (retention or delete-records); resuming at the "
                  "log start", extra={"stage": self.role, "topic": key[0], "partition": key[1],
                                      "from": offset, "log_start": log_start, "offsets_lost": lost})
        self.observer.lost_to_retention(lost)

    def _committed(self, owned: list[tuple[str, int]]) -> list[TopicPartition] | None:
        """The group's committed offsets of ``owned`` (stable: read_committed consumers ask the
        broker to wait for open transactions), retried for :data:`COMMITTED_WAIT_S`; None after."""
        deadline = time.monotonic() + COMMITTED_WAIT_S
        while True:
            try:
                result = self.consumer.committed([TopicPartition(t, p) for t, p in owned], timeout=CALL_TIMEOUT_S)
                failed = [tp.error for tp in result if tp.error is not None]
                if failed:
                    raise KafkaException(failed[0])
                return result
            except KafkaException as exc:
                if time.monotonic() > deadline or self._stop.is_set():
                    return None
                log.warning("waiting for the committed offsets to rewind to",
                            extra={"stage": self.role, "error": str(exc)})
                self._beat()

    def _seek(self, key: tuple[str, int], offset: int) -> None:
        try:
            self.consumer.seek(TopicPartition(key[0], key[1], offset))
        except KafkaException as exc:
            log.warning("rewind failed", extra={"partition": key[1], "error": str(exc)})

    def _from_rewind_points(self, records: list[InputRecord]) -> list[InputRecord]:
        """Drop a rewound partition's records until one its rewind point admits comes back.

        ``seek()`` is asynchronous and librdkafka can lose it: right after a broker restart the
        fetch position it was validating replaced ours, and the batch's records were skipped
        (lost) in a test, cf. confluentinc/librdkafka#2256.  So the first record after a rewind
        must lie between the committed offset and the failed batch's first record (which is
        known to exist: ``read_committed`` input never loses a committed record).  A record
        before that is already done (dropped); one beyond it means the seek was lost (dropped,
        and the seek repeated), unless the log start moved past the rewind point meanwhile
        (retention: the seek went out of range and the consumer reset to the log start): the
        point then moves to the log start and the records lost are counted (#18 item 5).
        """
        if not self._rewound:
            return records
        self._follow_log_starts(records)
        kept: list[InputRecord] = []
        astray: set[tuple[str, int]] = set()
        for r in records:
            key = (r.topic, r.partition)
            point = self._rewound.get(key)
            if point is None:
                kept.append(r)
            elif point.admits(r.offset):
                del self._rewound[key]
                astray.discard(key)
                kept.append(r)
            else:
                astray.add(key)
        for key in astray:
            log.warning("records did not resume at the rewind's offset; seeking again",
                        extra={"stage": self.role, "partition": key[1], "offset": self._rewound[key].low})
            self._seek(key, self._rewound[key].low)
        return kept

    def _follow_log_starts(self, records: list[InputRecord]) -> None:
        """Move the rewind point of a partition whose first record came back beyond it to the log
        start, when the log start has moved past the point (its records were deleted)."""
        beyond: dict[tuple[str, int], int] = {}
        for r in records:
            key = (r.topic, r.partition)
            point = self._rewound.get(key)
            if point is not None and key not in beyond and point.high is not None and r.offset > point.high:
                beyond[key] = r.offset
        for key in beyond:
            point = self._rewound[key]
            log_start = self._log_start(key)
            if log_start is None or log_start <= point.low:
                continue  # the records are there: the seek was lost, and is repeated
            self._lost_to_retention(key, point.low, log_start)
            high = point.high if point.high is not None and point.high >= log_start else None
            self._rewound[key] = RewindPoint(log_start, high)

    # --- callbacks (served inside poll() and consume(), never during a transaction) ----------
    def _current(self, consumer: Consumer | None) -> bool:
        """Whether a callback comes from the consumer in use (not one given up, still closing)."""
        return consumer is None or consumer is self.consumer

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if not self._current(consumer):
            return
        self._assignments += 1
        for p in partitions:
            self._generation[(p.topic, p.partition)] = self._assignments
        self._assigned |= {(p.topic, p.partition) for p in partitions}
        self.observer.assigned(len(self._assigned))
        log.info("partitions assigned", extra={"stage": self.role,
                                               "partitions": sorted(p.partition for p in partitions),
                                               "owned": len(self._assigned)})

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if not self._current(consumer):
            return
        self._assigned -= {(p.topic, p.partition) for p in partitions}
        for p in partitions:
            self._generation.pop((p.topic, p.partition), None)
            self._rewound.pop((p.topic, p.partition), None)  # the next owner starts from the committed offset
        if self._blocked_at is not None and self._blocked_at[:2] not in self._assigned:
            self._unblock()  # the blocking record is its next owner's now
        self.observer.assigned(len(self._assigned))
        log.info("partitions revoked", extra={"stage": self.role,
                                              "partitions": sorted(p.partition for p in partitions),
                                              "owned": len(self._assigned)})

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # the group moved on without us (session expired): same as a revoke, and the next
        # send_offsets_to_transaction would fail with a stale generation anyway
        log.warning("partitions lost", extra={"stage": self.role})
        self._on_revoke(consumer, partitions)

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
