"""A stage's consumer fetches again soon after its prefetch cap was reached (issue #20, goal 1).

librdkafka postpones a partition's next fetch by ``fetch.queue.backoff.ms`` (1000 ms by default)
whenever the prefetch queue is over its cap at fetch time.  A stage that empties its queue in
less time then idles until the back-off ends: the filter drained a backlog at half a CPU.  Here
a small cap makes every fetch reach it, so the drain time is the number of fetches times the
back-off: 0.02 s each as configured, a second each with librdkafka's default.
"""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Producer

from ppg_mi.config import Settings
from ppg_mi.streaming.clients import common_config, transactional_consumer_config

RECORDS = 6000
RECORD_BYTES = 8000


def test_a_backlog_behind_a_small_prefetch_cap_drains_without_idling(broker_settings: Settings) -> None:
    # a prefetch cap of ~250 records (2 MiB): the 48 MB backlog is fetched in ~25 rounds that each reach it
    settings = broker_settings.replace(queued_max_kbytes=2048)
    producer = Producer({**common_config(settings), "linger.ms": 20})
    for i in range(RECORDS):
        producer.produce(settings.topic_raw, key=str(i).encode(), value=bytes(RECORD_BYTES))
    assert producer.flush(30) == 0

    consumer = Consumer(transactional_consumer_config(settings, f"backoff-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([settings.topic_raw])
    try:
        got, first_at = 0, None
        deadline = time.monotonic() + 120
        while got < RECORDS and time.monotonic() < deadline:
            m = consumer.poll(1.0)
            if m is None or m.error():
                continue
            first_at = first_at or time.monotonic()
            got += 1
        assert got == RECORDS
        drained_s = time.monotonic() - first_at
    finally:
        consumer.close()
    # ~25 back-offs: 0.5 s as configured (20 ms), 13 s with librdkafka's 1000 ms (both measured here)
    assert drained_s < 8.0, f"{RECORDS} records behind a 256 KiB cap took {drained_s:.1f} s to drain"

