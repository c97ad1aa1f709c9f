"""A stage's consumer fetches again soon after its prefetch cap was reached (issue #20, goal 1).

librdkafka postpones a partition's next fetch by ``fetch.queue.backoff.ms`` (1000 ms by default)
whenever the prefetch queue is over its cap at fetch time.  A stage that empties its queue in
less time then idles until the back-off ends: the filter drained a backlog at half a CPU.  Here
a small cap makes every fetch reach it, so the drain time is about the number of fetches times
the back-off; the configured value and librdkafka's default drain the same backlog.
"""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Producer

from ppg_mi.config import Settings
from ppg_mi.streaming.clients import common_config, transactional_consumer_config

RECORDS = 6000
RECORD_BYTES = 8000


def _drain_seconds(settings: Settings) -> float:
    """Seconds from the first record to the last of the backlog, read by a fresh group as fast as it can."""
    consumer = Consumer(transactional_consumer_config(settings, f"backoff-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([settings.topic_raw])
    try:
        got, first_at = 0, 0.0
        deadline = time.monotonic() + 120
        while got < RECORDS and time.monotonic() < deadline:
            m = consumer.poll(1.0)
            if m is None or m.error():
                continue
            first_at = first_at or time.monotonic()
            got += 1
        assert got == RECORDS
        return time.monotonic() - first_at
    finally:
        consumer.close()


def test_a_backlog_behind_a_small_prefetch_cap_drains_without_idling(broker_settings: Settings) -> None:
    # a prefetch cap of ~250 records (2 MiB): the 48 MB backlog is fetched in ~25 rounds that each reach it
    settings = broker_settings.replace(queued_max_kbytes=2048)
    producer = Producer({**common_config(settings), "linger.ms": 20})
    for i in range(RECORDS):
        producer.produce(settings.topic_raw, key=str(i).encode(), value=bytes(RECORD_BYTES))
        producer.poll(0)
    assert producer.flush(30) == 0

    configured = _drain_seconds(settings)
    librdkafka_default = _drain_seconds(settings.replace(fetch_queue_backoff_ms=1000))
    # measured: 0.5 s with a 20 ms back-off, 13 s with 1000 ms; the configured value must not idle like the default
    assert configured < librdkafka_default / 2, (
        f"{RECORDS} records behind a 2 MiB cap: {configured:.1f} s as configured "
        f"({settings.fetch_queue_backoff_ms} ms), {librdkafka_default:.1f} s with 1000 ms")
