"""librdkafka configuration of every client ppg-mi creates, derived from :class:`Settings`."""

from __future__ import annotations

from typing import Any

from ..config import Settings


def common_config(settings: Settings) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "security.protocol": settings.kafka_security_protocol,
        "client.id": f"ppg-mi-{settings.instance_id}",
        # reconnect quickly after a broker restart instead of backing off for a second
        "reconnect.backoff.max.ms": 2000,
        # No `logger` here: forwarding librdkafka's logs into Python logging crashed consumers
        # with SIGSEGV on a fresh broker (seen in the chart's local run; cf.
        # confluentinc/confluent-kafka-python#874). Its few lines stay on stderr in its own format.
    }
    if settings.kafka_security_protocol.startswith("SASL"):
        cfg.update(
            {
                "sasl.mechanism": settings.kafka_sasl_mechanism,
                "sasl.username": settings.kafka_sasl_username,
                "sasl.password": settings.kafka_sasl_password,
            }
        )
    if settings.kafka_security_protocol.endswith("SSL"):
        for key, value in (
            ("ssl.ca.location", settings.kafka_ssl_ca_location),
            ("ssl.certificate.location", settings.kafka_ssl_certificate_location),
            ("ssl.key.location", settings.kafka_ssl_key_location),
        ):
            if value:
                cfg[key] = value
    return cfg


def idempotent_producer_config(settings: Settings) -> dict[str, Any]:
    """The producer of raw recordings: idempotent, acks=all, batched."""
    return {
        **common_config(settings),
        "enable.idempotence": True,
        "acks": "all",
        # at half load a record's whole way to its prediction has a budget of 250 ms (docs/performance.md),
        # and batches still fill at the rates where batching matters (8 kB records, 1 MB batches)
        "linger.ms": settings.producer_linger_ms,
        "compression.type": settings.compression,
        "message.max.bytes": settings.max_message_bytes + 4096,
        "queue.buffering.max.kbytes": 65536,
        "message.timeout.ms": settings.producer_delivery_timeout_ms,
    }


def transactional_producer_config(settings: Settings, role: str) -> dict[str, Any]:
    """One transactional producer per process; the id is stable across the process's restarts."""
    return {
        **idempotent_producer_config(settings),
        "transactional.id": f"ppg-mi-{role}-{settings.instance_id}",
        "transaction.timeout.ms": settings.transaction_timeout_ms,
        # librdkafka requires a record's delivery timeout to fit inside the transaction's
        "message.timeout.ms": min(settings.producer_delivery_timeout_ms, settings.transaction_timeout_ms),
        # A transaction begun right after a commit is refused (CONCURRENT_TRANSACTIONS) until the
        # broker has written the previous one's markers, a few ms; librdkafka then retries after
        # retry.backoff.ms. Its 100 ms default cost the filter ~90 ms per transaction (docs/performance.md).
        "retry.backoff.ms": settings.transaction_retry_backoff_ms,
        # one batch's outputs at most are in flight; the cap only bounds a pathological batch
        "queue.buffering.max.kbytes": 32768,
    }


def transactional_consumer_config(settings: Settings, group_id: str) -> dict[str, Any]:
    """A consumer whose offsets are committed by the producer's transaction, never by itself.

    A dynamic group member, on purpose: a static one (``group.instance.id`` = the pod name) would
    take over a killed predecessor's partitions without waiting for its session, but it does not
    leave the group on close, so every scale-down's partitions would wait for the session timeout
    instead, and librdkafka turns a static member's own session timeout (a broker restart longer
    than it) into a fatal ``FENCED_INSTANCE_ID`` of the consumer (confluentinc/librdkafka#3437;
    seen here in the broker restart test), which costs a consumer replacement (docs/reliability.md).
    """
    return {
        **common_config(settings),
        "group.id": group_id,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        # Bounded memory under a backlog: librdkafka prefetches until either cap is reached
        # (the kbytes cap covers the whole consumer queue, overshot by at most one fetch),
        # so a slow stage grows lag on the broker, not memory in the process.
        "queued.max.messages.kbytes": settings.queued_max_kbytes,
        "queued.min.messages": max(settings.batch_max_records * 4, 1000),
        # once a cap is reached librdkafka waits this long before fetching again (1000 ms by default):
        # a stage that empties its queue sooner then idles, which held the filter at half a CPU
        "fetch.queue.backoff.ms": settings.fetch_queue_backoff_ms,
        # how long a fetch waits at the broker for records: librdkafka's 500 ms default was most of a
        # record's wait between the filter and the classifier at half load (the bench's latency runs)
        "fetch.wait.max.ms": settings.fetch_wait_max_ms,
        "fetch.min.bytes": settings.fetch_min_bytes,
        "fetch.max.bytes": max(settings.max_message_bytes * 2, 4 * 1024 * 1024),
        "max.partition.fetch.bytes": settings.max_message_bytes + 4096,
        # a killed member keeps its partitions this long (a replacement pod waits for it); a broker
        # restart longer than it makes the members rejoin, partitions lost and rewound, which the
        # loop handles (test_faults' broker restart)
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": min(3000, settings.session_timeout_ms // 3),
        "max.poll.interval.ms": 300000,
        "statistics.interval.ms": 5000,
    }


def reader_config(settings: Settings, group_id: str) -> dict[str, Any]:
    """A read-only consumer (dashboard, tests): read_committed, never commits."""
    return {
        **common_config(settings),
        "group.id": group_id,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "queued.max.messages.kbytes": settings.queued_max_kbytes,
    }
