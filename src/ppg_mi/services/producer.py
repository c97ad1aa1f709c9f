"""The producer: one ``ppg.raw`` message per recording of a dataset shard.

Idempotent and ``acks=all``; keyed by the record id so that a replayed shard is
recognisable downstream.  Paced at a fixed rate, in real time, or as fast as possible.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from typing import Callable

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from ..config import Settings
from ..data import Dataset
from ..observability import metrics as m
from ..streaming.clients import idempotent_producer_config
from ..streaming.codec import Recording, now_us
from .runtime import broker_check, on_termination, service

ROLE = "producer"
#: the finest wait of librdkafka's poll(), which takes whole milliseconds
PACING_RESOLUTION_S = 0.001
#: how long the producer waits to be connected before its first record (it then sends anyway), at most
CONNECT_TIMEOUT_S = 10.0
log = logging.getLogger(__name__)


@dataclass
class ProduceSummary:
    shard: str
    total: int
    delivered: int
    failed: int
    seconds: float
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.delivered == self.total and not self.interrupted

    def line(self) -> str:
        rate = self.delivered / self.seconds if self.seconds > 0 else 0.0
        state = "ok" if self.ok else ("interrupted" if self.interrupted else "FAILED")
        return (f"shard {self.shard}: {self.delivered}/{self.total} delivered, {self.failed} failed, "
                f"{self.seconds:.1f}s ({rate:.0f} records/s): {state}")


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"shard must look like i/N (e.g. 0/4), got {text!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"shard {text}: need 0 <= i < N")
    return index, count


def interval_s(settings: Settings, realtime: bool) -> float:
    if realtime:
        return settings.samples_per_record / settings.sampling_rate_hz
    return 1.0 / settings.producer_rate if settings.producer_rate > 0 else 0.0


def connect(producer: Producer, topic: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fetch ``topic``'s metadata before the first record, so the producer is connected when it
    stamps one: a record's ``produced_us`` then starts its way through the pipeline, not this client's
    start-up (a cold idempotent producer delivered its first record 0.5-1.1 s after sending it on the
    bench's broker, 8-10 ms after this).  A broker not reachable yet is not an error here: records
    then wait for it, up to their delivery timeout, as they always could."""
    try:
        producer.list_topics(topic, timeout=timeout_s)
    except KafkaException as exc:
        log.warning("broker not reachable yet; producing anyway (records wait for it up to their delivery "
                    "timeout)", extra={"topic": topic, "error": str(exc)})


def produce(settings: Settings, dataset: Dataset, shard: str, realtime: bool = False,
            progress: bool | None = None, heartbeat: Callable[[], None] = lambda: None) -> ProduceSummary:
    """Send ``dataset``'s shard to ``topic_raw``; returns once every message is acknowledged."""
    index, count = parse_shard(shard)
    part = dataset.shard(index, count)
    total = len(part)
    m.PRODUCER_TOTAL.labels(shard).set(total)
    sent_counter = m.PRODUCER_SENT.labels(shard)
    failed_counter = m.PRODUCER_FAILED.labels(shard)
    state = {"delivered": 0, "failed": 0}
    stop = {"now": False}

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is None:
            state["delivered"] += 1
            sent_counter.inc()
        else:
            state["failed"] += 1
            failed_counter.inc()
            log.error("delivery failed", extra={"record_id": (msg.key() or b"").decode(), "error": str(err)})

    producer = Producer(idempotent_producer_config(settings))
    # never longer than a record would wait for the broker anyway
    connect(producer, settings.topic_raw, min(CONNECT_TIMEOUT_S, settings.producer_delivery_timeout_ms / 1000))
    on_termination(lambda: stop.__setitem__("now", True))
    show_bar = sys.stderr.isatty() if progress is None else progress
    bar = None
    if show_bar:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="rec", desc=f"shard {shard}", file=sys.stderr)
    pause = interval_s(settings, realtime)
    started = time.monotonic()
    last_log = started
    next_send = started
    for i in range(total):
        if stop["now"]:
            break
        heartbeat()
        if pause:
            # poll() returns as soon as it served a delivery report, so one call is not a wait:
            # --rate 10 sent 40 records/s, one per delivery round trip. It also waits in whole
            # milliseconds, a shorter wait not at all: waiting out every sub-millisecond gap spun a
            # core (0.5 CPU at 1,700 records/s), so a record due within a millisecond goes now
            while (delay := next_send - time.monotonic()) >= PACING_RESOLUTION_S:
                producer.poll(delay)
            next_send += pause
        rec = Recording(part.record_ids[i], part.samples[i], settings.sampling_rate_hz,
                        part.labels[i], index, now_us())
        payload = rec.encode()
        while True:
            try:
                producer.produce(settings.topic_raw, value=payload, key=rec.record_id.encode(),
                                 on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
        if bar is not None:
            bar.update(1)
        elif time.monotonic() - last_log >= 5:
            last_log = time.monotonic()
            log.info("progress", extra={"shard": shard, "sent": i + 1, "total": total,
                                        "delivered": state["delivered"]})
    remaining = producer.flush(60)
    if bar is not None:
        bar.close()
    return ProduceSummary(shard, total, state["delivered"], state["failed"] + remaining,
                          time.monotonic() - started, stop["now"])


def run(settings: Settings, dataset: Dataset, shard: str, realtime: bool = False) -> int:
    with service(settings, ROLE) as health:
        health.add_check("broker", broker_check(settings))
        summary = produce(settings, dataset, shard, realtime, heartbeat=health.beat)
        log.info("summary", extra={"shard": summary.shard, "total": summary.total,
                                   "delivered": summary.delivered, "failed": summary.failed,
                                   "seconds": round(summary.seconds, 2)})
        print(summary.line(), file=sys.stderr)
    return 0 if summary.ok else 1
