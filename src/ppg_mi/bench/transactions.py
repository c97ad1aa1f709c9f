"""Transactions opened back to back, as a stage opens them when records keep arriving.

A transaction begun right after a commit is refused (``CONCURRENT_TRANSACTIONS``) until the
coordinator has written the previous one's markers; how long the client waits before it asks
again is ``retry.backoff.ms``.  This measures one transaction's round trip with the stages'
producer configuration, so the effect of that setting is a figure of the run, not a claim.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from ..config import Settings
from ..streaming.clients import transactional_consumer_config, transactional_producer_config
from .stats import percentiles


def back_to_back_transactions(settings: Settings, topic: str, *, transactions: int = 60,
                              warm_up: int = 5, timeout_s: float = 30.0) -> dict[str, Any]:
    """Open, fill with one record, send offsets to and commit ``transactions`` transactions in a row.

    Returns the percentiles (ms) of the whole transaction and of its two blocking calls, after
    ``warm_up`` transactions (the coordinator's first look-ups are not the steady state).
    """
    tag = uuid.uuid4().hex[:8]
    run = settings.replace(instance_id=f"bench-txn-{tag}")
    producer = Producer(transactional_producer_config(run, "bench"))
    # the group metadata of a consumer that never joins: send_offsets needs a group, not a member
    consumer = Consumer(transactional_consumer_config(run, f"bench-txn-{tag}"))
    try:
        producer.init_transactions(timeout_s)
        metadata = consumer.consumer_group_metadata()
        totals, offsets, commits = [], [], []
        for i in range(warm_up + transactions):
            t0 = time.perf_counter()
            producer.begin_transaction()
            producer.produce(topic, b"x" * 100)
            t1 = time.perf_counter()
            producer.send_offsets_to_transaction([TopicPartition(topic, 0, i)], metadata, timeout_s)
            t2 = time.perf_counter()
            producer.commit_transaction(timeout_s)
            t3 = time.perf_counter()
            if i >= warm_up:
                totals.append(1000 * (t3 - t0))
                offsets.append(1000 * (t2 - t1))
                commits.append(1000 * (t3 - t2))
    finally:
        consumer.close()
        producer.flush(timeout_s)
    return {"transactions": transactions, "retry_backoff_ms": settings.transaction_retry_backoff_ms,
            "total_ms": percentiles(totals), "send_offsets_ms": percentiles(offsets),
            "commit_ms": percentiles(commits)}
