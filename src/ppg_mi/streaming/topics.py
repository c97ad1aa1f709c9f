"""Creating ppg-mi's topics idempotently through the Admin API."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from ..config import Settings
from .clients import common_config


@dataclass(frozen=True)
class TopicResult:
    name: str
    created: bool
    partitions: int


def topic_names(settings: Settings) -> list[str]:
    return [settings.topic_raw, settings.topic_filtered, settings.topic_predictions, settings.topic_dlq]


def ensure_topics(settings: Settings, names: list[str] | None = None, timeout: float = 30.0) -> list[TopicResult]:
    """Create the missing topics; existing ones are left as they are and reported."""
    admin = AdminClient(common_config(settings))
    wanted = names if names is not None else topic_names(settings)
    existing = admin.list_topics(timeout=timeout).topics
    missing = [n for n in wanted if n not in existing]
    results: dict[str, TopicResult] = {
        n: TopicResult(n, False, len(existing[n].partitions)) for n in wanted if n in existing
    }
    if missing:
        futures = admin.create_topics(
            [NewTopic(n, settings.topic_partitions, settings.topic_replication_factor) for n in missing],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        for name, future in futures.items():
            try:
                future.result()
                results[name] = TopicResult(name, True, settings.topic_partitions)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
                results[name] = TopicResult(name, False, settings.topic_partitions)
    return [results[n] for n in wanted]
