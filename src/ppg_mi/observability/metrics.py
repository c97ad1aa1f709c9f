"""Prometheus metrics of every ppg-mi process (names and units by Prometheus conventions).

Counters and histograms are labelled by ``stage`` so one dashboard query covers the
producer, filter and classifier; ``records in = records out + dead letters`` holds per stage:
``ppg_mi_records_consumed_total == ppg_mi_records_produced_total + ppg_mi_records_dead_lettered_total``.
"""

from __future__ import annotations

import platform
import time
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram, Info

from .. import __version__

if TYPE_CHECKING:  # server.py imports this module; the type is only needed for annotations
    from .server import Health

RECORDS_CONSUMED = Counter(
    "ppg_mi_records_consumed", "Input records whose transaction committed.", ["stage"]
)
RECORDS_PRODUCED = Counter(
    "ppg_mi_records_produced", "Output records written (committed for consuming stages).", ["stage"]
)
RECORDS_DEAD_LETTERED = Counter(
    "ppg_mi_records_dead_lettered", "Input records sent to the dead-letter topic.", ["stage", "reason"]
)
BATCH_SIZE = Histogram(
    "ppg_mi_batch_size_records", "Records per committed micro-batch.", ["stage"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
BATCH_SECONDS = Histogram(
    "ppg_mi_batch_processing_seconds", "Wall time from consume to commit of one micro-batch.", ["stage"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TRANSACTIONS = Counter(
    "ppg_mi_transactions", "Kafka transactions by outcome (committed, aborted, stuck).", ["stage", "outcome"]
)
TRANSACTION_SECONDS = Histogram(
    "ppg_mi_transaction_seconds", "Time to commit one transaction: send_offsets_to_transaction + commit_transaction.",
    ["stage"], buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 10),
)
CONSUMER_LAG = Gauge(
    "ppg_mi_consumer_lag_records",
    "Committed lag of the stage's consumer group: last stable offset minus the group's committed offset "
    "(queried by the stage). An idle partition of a transactionally written topic shows 1: the commit marker.",
    ["stage", "topic", "partition"],
)
LAG_SCRAPES = Counter(
    "ppg_mi_consumer_lag_queries", "Lag queries by outcome (ok, error).", ["stage", "outcome"]
)
STAGE_BLOCKED = Gauge(
    "ppg_mi_stage_blocked",
    "1 while a record can be neither output nor dead-lettered (e.g. the DLQ refuses every write): the stage "
    "holds that record's partition, is not ready, and fails /healthz after the liveness timeout.",
    ["stage"],
)
ASSIGNED_PARTITIONS = Gauge("ppg_mi_assigned_partitions", "Partitions assigned to this process.", ["stage"])
LAST_LOOP = Gauge("ppg_mi_loop_last_turn_timestamp_seconds", "When the main loop last turned.", ["stage"])
E2E_LATENCY = Histogram(
    "ppg_mi_end_to_end_latency_seconds", "Produced → predicted latency of each prediction.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
PREDICTIONS = Counter("ppg_mi_predictions", "Predictions by predicted class and model version.",
                      ["predicted_class", "model_version"])
MODEL_INFO = Info("ppg_mi_model", "The model version the classifier currently serves.")
MODEL_RELOADS = Counter("ppg_mi_model_reloads", "Model switches by outcome (loaded, rejected).", ["outcome"])
CLASSIFIER_THREADS = Gauge(
    "ppg_mi_classifier_threads",
    "Threads the classifier's model transform runs on (PPG_MI_CLASSIFIER_THREADS, or the CPUs the process may use).",
)
MODEL_CURRENT_REJECTED = Gauge(
    "ppg_mi_model_current_rejected",
    "1 while the version the model store's `current` names failed to load or warm up (the classifier serves the "
    "version it had, the previous one, or none and is not ready), else 0.",
)
PRODUCER_SENT = Counter("ppg_mi_producer_records_sent", "Records the producer had acknowledged.", ["shard"])
PRODUCER_TOTAL = Gauge("ppg_mi_producer_records_total", "Records this producer shard has to send.", ["shard"])
PRODUCER_FAILED = Counter("ppg_mi_producer_records_failed", "Records whose delivery failed.", ["shard"])
READY = Gauge("ppg_mi_ready", "1 when the process passes its readiness checks (/readyz), else 0.", ["role"])
READY_CHECK = Gauge("ppg_mi_readiness_check", "1 when the named readiness check passes, else 0.", ["role", "check"])
LOST_TO_RETENTION = Counter(
    "ppg_mi_records_lost_to_retention",
    "Input offsets a rewind had to skip because the log no longer held them (retention or delete-records "
    "moved the log start past them before they were committed; transaction markers included).", ["stage"]
)
BUILD_INFO = Info("ppg_mi_build", "Version of ppg-mi and its runtime.")
BUILD_INFO.info({"version": __version__, "python": platform.python_version()})


class StageMetrics:
    """Implements the streaming loop's observer for one stage."""

    def __init__(self, stage: str, health: "Health | None" = None) -> None:
        self.stage = stage
        self._health = health
        self._consumed = RECORDS_CONSUMED.labels(stage)
        self._produced = RECORDS_PRODUCED.labels(stage)
        self._batch_size = BATCH_SIZE.labels(stage)
        self._batch_seconds = BATCH_SECONDS.labels(stage)
        self._last_turn = LAST_LOOP.labels(stage)
        self._assigned = ASSIGNED_PARTITIONS.labels(stage)
        self.last_turn = time.monotonic()
        self.partitions_assigned = 0
        for outcome in ("committed", "aborted"):
            TRANSACTIONS.labels(stage, outcome)
        RECORDS_DEAD_LETTERED.labels(stage, "none")  # the series exists before the first dead letter
        self._blocked = STAGE_BLOCKED.labels(stage)
        self._blocked.set(0)
        LOST_TO_RETENTION.labels(stage)  # the series exists (at 0) before the first loss, for its alert
        self.blocked_by: str | None = None
        if health is not None:
            health.add_check("delivery", lambda: (self.blocked_by is None, self.blocked_by or "outputs and dead "
                                                  "letters are written"))

    def consumed(self, n: int) -> None:
        self._consumed.inc(n)

    def produced(self, n: int) -> None:
        self._produced.inc(n)

    def dead_lettered(self, reason: str) -> None:
        RECORDS_DEAD_LETTERED.labels(self.stage, reason).inc()

    def batch(self, size: int, seconds: float) -> None:
        self._batch_size.observe(size)
        self._batch_seconds.observe(seconds)

    def transaction(self, outcome: str) -> None:
        TRANSACTIONS.labels(self.stage, outcome).inc()

    def transaction_seconds(self, seconds: float) -> None:
        TRANSACTION_SECONDS.labels(self.stage).observe(seconds)

    def lag(self, topic: str, partition: int, lag: int) -> None:
        """librdkafka's ``consumer_lag``, when it reports one: deliberately not exported.

        librdkafka computes it against the offset *this consumer* committed; in the
        transactional loop the producer commits the offsets, so the consumer never learns
        them and the statistic stays -1 (the loop skips it).  Were a number to arrive it
        would be measured against a stale offset, so the committed lag comes from
        :class:`ppg_mi.observability.lag.GroupLagMonitor` (last stable offsets and the group's committed offsets) instead: the same
        number KEDA and Strimzi's kafka-exporter compute.
        """
        return None

    def heartbeat(self) -> None:
        self.last_turn = time.monotonic()
        self._last_turn.set_to_current_time()
        if self._health is not None:
            self._health.beat()

    def blocked(self, why: str | None) -> None:
        """The loop cannot write a record's output or dead letter (``why``), or can again (None)."""
        self.blocked_by = why
        self._blocked.set(0 if why is None else 1)

    def assigned(self, partitions: int) -> None:
        self.partitions_assigned = partitions
        self._assigned.set(partitions)

    def lost_to_retention(self, offsets: int) -> None:
        """A rewind found its records deleted (retention, delete-records): ``offsets`` skipped."""
        LOST_TO_RETENTION.labels(self.stage).inc(offsets)
