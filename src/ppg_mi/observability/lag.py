"""Committed consumer-group lag per partition: last stable offset minus the group's committed offset.

Why not librdkafka's statistics: ``consumer_lag`` there is measured against the offset
the *consumer* committed, and in the transactional loop the *producer* commits the
offsets (``send_offsets_to_transaction``), so the consumer's statistic stays -1.  The
Admin API gives the number every outside observer sees (KEDA's kafka scaler, Strimzi's
kafka-exporter): the partition's last stable offset minus the group's committed offset.

The transaction marker: a transactional producer appends a commit marker after each
transaction's records.  The marker takes an offset but is never delivered, so a group
that consumed everything has committed ``last record + 1`` while the last stable offset
is ``marker + 1``: an idle partition of a transactionally written topic shows a lag of
**1** (kedacore/keda#5675).  ``ppg.raw`` is written by the idempotent, non-transactional
producer and idles at 0; ``ppg.filtered`` is written by the filter's transactions and
idles at 1 per partition.

The committed offsets come from a consumer of the stage's group that never subscribes
(so it never joins the group) and never commits: ``Consumer.committed()``.  The Admin API's
``list_consumer_group_offsets`` would be the natural call, but librdkafka (2.16.0, in
confluent-kafka 2.16.1, included) dereferences a NULL consumer-group handle when that request meets
``NOT_COORDINATOR``, which a freshly started broker answers while it loads the group
coordinator: the process dies with SIGSEGV (confluentinc/librdkafka#5040,
confluentinc/confluent-kafka-python#1982; ``scripts/repro/offset_fetch_segv.py`` reproduces it).

Every replica of a stage reports the lag of *all* partitions of its group (the number
does not depend on who owns a partition, and it must still be reported when the owner
has died), so aggregate with ``max by (stage, topic, partition)`` before summing.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Mapping

from confluent_kafka import Consumer, IsolationLevel, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from ..config import Settings
from ..streaming.clients import common_config, reader_config
from . import metrics as m

log = logging.getLogger(__name__)


def partition_lag(end: Mapping[int, int], committed: Mapping[int, int], start: Mapping[int, int]) -> dict[int, int]:
    """Lag per partition: ``end - committed``; ``end - start`` where the group has committed nothing.

    Parameters
    ----------
    end
        Last stable offset (read_committed end) of each partition.
    committed
        The group's committed offset of each partition; negative or missing means none.
    start
        Earliest offset still in the log, used where nothing is committed (the group
        then starts from the beginning: ``auto.offset.reset=earliest``).
    """
    lag = {}
    for partition, end_offset in end.items():
        done = committed.get(partition, -1)
        base = done if done >= 0 else start.get(partition, 0)
        lag[partition] = max(end_offset - base, 0)
    return lag


class GroupLagMonitor:
    """Polls one group's committed lag on one topic and exports it as ``ppg_mi_consumer_lag_records``."""

    def __init__(self, settings: Settings, stage: str, group: str, topic: str, interval_s: float = 5.0,
                 wait_for: Callable[[], bool] | None = None) -> None:
        self.stage = stage
        self.group = group
        self.topic = topic
        self.interval_s = interval_s
        self._wait_for = wait_for
        # no Python logger: nothing would poll() this client to serve its queued log lines
        self._admin = AdminClient(common_config(settings))
        # the stage's group id, to read its committed offsets; never subscribes, so never joins
        self._offsets_reader = Consumer(reader_config(settings, group))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lag-{stage}", daemon=True)
        self.last: dict[int, int] = {}

    def start(self) -> "GroupLagMonitor":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.interval_s + 5)
        if not self._thread.is_alive():
            self._offsets_reader.close()

    def _run(self) -> None:
        # first query once the stage's own clients are up (``wait_for``), not while they start
        while self._wait_for is not None and not self._wait_for() and not self._stop.wait(0.2):
            pass
        while not self._stop.is_set():
            try:
                self.last = self.poll_once()
                m.LAG_SCRAPES.labels(self.stage, "ok").inc()
            except Exception as exc:  # noqa: BLE001 - a broker hiccup must not kill the thread
                m.LAG_SCRAPES.labels(self.stage, "error").inc()
                log.warning("lag query failed", extra={"stage": self.stage, "group": self.group, "error": repr(exc)})
            self._stop.wait(self.interval_s)

    def poll_once(self, timeout: float = 5.0) -> dict[int, int]:
        """Query the broker once, update the gauges and return the lag per partition."""
        md = self._admin.list_topics(self.topic, timeout=timeout)
        topic_md = md.topics.get(self.topic)
        if topic_md is None or topic_md.error is not None:
            raise KafkaException(topic_md.error if topic_md is not None else f"no topic {self.topic}")
        partitions = sorted(topic_md.partitions)
        end = self._offsets(partitions, OffsetSpec.latest(), timeout)
        committed = self._committed(partitions, timeout)
        missing = [p for p in partitions if committed.get(p, -1) < 0]
        start = self._offsets(missing, OffsetSpec.earliest(), timeout) if missing else {}
        lag = partition_lag(end, committed, start)
        for partition, value in lag.items():
            m.CONSUMER_LAG.labels(self.stage, self.topic, str(partition)).set(value)
        return lag

    def _offsets(self, partitions: list[int], spec: OffsetSpec, timeout: float) -> dict[int, int]:
        futures = self._admin.list_offsets(
            {TopicPartition(self.topic, p): spec for p in partitions},
            isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=timeout,
        )
        return {tp.partition: f.result().offset for tp, f in futures.items()}

    def _committed(self, partitions: list[int], timeout: float) -> dict[int, int]:
        committed = self._offsets_reader.committed([TopicPartition(self.topic, p) for p in partitions], timeout)
        return {tp.partition: tp.offset for tp in committed}
