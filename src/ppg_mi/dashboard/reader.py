"""The dashboard's one Kafka reader: a daemon thread filling the shared state.

It assigns itself every partition of the four topics (no group subscription, so no
rebalances and nothing to share with the pipeline's groups), reads ``read_committed``
and never commits offsets.  Predictions and dead letters are read from the beginning;
raw and filtered recordings only from near the end of each partition, because only
the most recent waveforms are kept.  librdkafka reconnects by itself after a broker
outage; the thread only notices the outage (a metadata request fails) and says so.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from ..config import Settings
from ..streaming.clients import reader_config
from ..streaming.codec import decode_prediction, decode_recording
from ..streaming.dlq import H_REASON, H_STAGE, headers_dict
from ..streaming.exceptions import DecodeError
from .state import DeadLetterCounts, PredictionStore, WaveformCache

log = logging.getLogger(__name__)

METADATA_INTERVAL_S = 3.0   # how often partitions and broker reachability are checked


def reader_group_id(settings: Settings) -> str:
    """``group_dashboard`` plus a per-process suffix: two dashboards never share an id."""
    return f"{settings.group_dashboard}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class StreamReader:
    """Reads predictions, dead letters and recent waveforms into the shared state."""

    def __init__(self, settings: Settings, store: PredictionStore, raw: WaveformCache,
                 filtered: WaveformCache, dlq: DeadLetterCounts,
                 on_turn: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.raw = raw
        self.filtered = filtered
        self.dlq = dlq
        self.on_turn = on_turn
        self.group_id = reader_group_id(settings)
        self.connected = False
        self.last_error = "not connected yet"
        self.last_turn = time.monotonic()
        self.last_metadata_ok = 0.0      # monotonic time of the last successful metadata request
        self.undecodable = 0
        self.read = {"predictions": 0, "raw": 0, "filtered": 0, "dlq": 0}
        self._assigned: set[tuple[str, int]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dashboard-reader", daemon=True)

    # --- lifecycle --------------------------------------------------------------
    def start(self) -> "StreamReader":
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # --- the loop ---------------------------------------------------------------
    def _run(self) -> None:
        cfg = {**reader_config(self.settings, self.group_id), "enable.partition.eof": False,
               "error_cb": self._on_error}
        consumer = Consumer(cfg)
        next_metadata = 0.0
        try:
            while not self._stop.is_set():
                self.last_turn = time.monotonic()
                if self.on_turn is not None:
                    self.on_turn()
                if time.monotonic() >= next_metadata:
                    self._refresh(consumer)
                    next_metadata = time.monotonic() + METADATA_INTERVAL_S
                if not self._assigned:
                    self._stop.wait(0.5)
                    continue
                messages = consumer.consume(1000, 0.5)
                if messages:
                    self._handle(messages)
        except Exception:  # noqa: BLE001 - a dead reader must be visible, not silent
            log.exception("dashboard reader stopped")
            self.connected = False
            raise
        finally:
            consumer.close()

    def _on_error(self, err: KafkaError) -> None:
        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            self.connected = False
            self.last_error = err.str()

    def _refresh(self, consumer: Consumer) -> None:
        """Check the broker; assign partitions that appeared since the last check."""
        s = self.settings
        try:
            md = consumer.list_topics(timeout=2.0)
        except KafkaException as exc:
            self.connected = False
            self.last_error = str(exc.args[0]) if exc.args else repr(exc)
            return
        self.connected = True
        self.last_error = ""
        self.last_metadata_ok = time.monotonic()
        new: list[TopicPartition] = []
        for topic, from_start in ((s.topic_predictions, True), (s.topic_dlq, True),
                                  (s.topic_raw, False), (s.topic_filtered, False)):
            meta = md.topics.get(topic)
            if meta is None or meta.error is not None:
                continue
            for p in meta.partitions:
                if (topic, p) in self._assigned:
                    continue
                offset = OFFSET_BEGINNING if from_start else self._tail_offset(consumer, topic, p,
                                                                                len(meta.partitions))
                new.append(TopicPartition(topic, p, offset))
        if new:
            consumer.incremental_assign(new)
            self._assigned.update((tp.topic, tp.partition) for tp in new)
            log.info("dashboard reader assigned partitions", extra={"partitions": len(new)})

    def _tail_offset(self, consumer: Consumer, topic: str, partition: int, partitions: int) -> int:
        """Start near the end: enough to refill the waveform cache, not the whole history."""
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=2.0)
        except KafkaException:
            return OFFSET_BEGINNING
        # keys spread unevenly over partitions: take twice the fair share of the cache
        keep = 2 * max(1, self.raw.capacity // max(1, partitions))
        return max(low, high - keep)

    def _handle(self, messages: list) -> None:  # noqa: ANN001 - confluent_kafka.Message
        s = self.settings
        predictions = []
        now = time.time()
        for m in messages:
            if m.error():
                continue
            topic = m.topic()
            value = m.value() or b""
            try:
                if topic == s.topic_predictions:
                    predictions.append(decode_prediction(value))
                    self.read["predictions"] += 1
                elif topic == s.topic_dlq:
                    h = headers_dict(m.headers())
                    self.dlq.add(h.get(H_STAGE, ""), h.get(H_REASON, ""))
                    self.read["dlq"] += 1
                elif topic in (s.topic_raw, s.topic_filtered):
                    rec = decode_recording(value)
                    cache = self.raw if topic == s.topic_raw else self.filtered
                    cache.put(rec.record_id, rec.samples, rec.sampling_rate_hz)
                    self.read["raw" if topic == s.topic_raw else "filtered"] += 1
            except (DecodeError, UnicodeDecodeError, ValueError):
                # the pipeline dead-letters what it cannot decode; here it is only counted
                self.undecodable += 1
        if predictions:
            self.store.add_many(predictions, now)
