"""What the broker says about a release: topic partitions, consumer-group lag, the canary round trip.

The broker address and topic names come, in this order, from the command's ``--bootstrap``
flag, the caller's own ``PPG_MI_*`` variables, and the literal env of the release's
Deployments (what the pods use). From a laptop the in-cluster bootstrap name may not
resolve: the functions here then raise :class:`BrokerUnreachable` quickly, and ``status``
shows what the API knows without the lag.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Mapping

from ..config import ENV_PREFIX, Settings

KAFKA_KEYS = ("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME",
              "TOPIC_RAW", "TOPIC_FILTERED", "TOPIC_PREDICTIONS", "TOPIC_DLQ", "TOPIC_PARTITIONS",
              "GROUP_FILTER", "GROUP_CLASSIFIER", "SAMPLES_PER_RECORD", "SAMPLING_RATE_HZ")


class BrokerUnreachable(RuntimeError):
    """The broker did not answer within the timeout."""


def release_settings(deployment_env: Mapping[str, str], bootstrap: str | None = None,
                     environ: Mapping[str, str] | None = None) -> Settings:
    """Kafka settings of a release as seen from here.

    Parameters
    ----------
    deployment_env
        Literal env of the release's Deployments (merged), e.g. from :func:`api.container_env`.
    bootstrap
        The ``--bootstrap`` flag; wins over everything.
    environ
        The caller's environment (default ``os.environ``): a ``PPG_MI_*`` variable set there wins
        over the Deployment's value.
    """
    env = dict(os.environ if environ is None else environ)
    merged = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}
    for key in KAFKA_KEYS:
        name = ENV_PREFIX + key
        if name not in env and name in deployment_env:
            merged[name] = deployment_env[name]
    return Settings.from_env(merged, kafka_bootstrap_servers=bootstrap or None,
                             instance_id=f"cluster-{uuid.uuid4().hex[:8]}")


def topic_partitions(settings: Settings, topic: str, timeout: float = 5.0) -> int:
    """Partitions of ``topic`` as the broker reports them.

    Raises
    ------
    BrokerUnreachable
        The broker did not answer, or the topic does not exist there.
    """
    from confluent_kafka.admin import AdminClient

    from ..streaming.clients import common_config

    admin = AdminClient({**common_config(settings), "socket.connection.setup.timeout.ms": int(timeout * 1000)})
    try:
        md = admin.list_topics(topic, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - KafkaException: transport failure or timeout
        raise BrokerUnreachable(f"broker {settings.bootstrap_servers} unreachable: {exc}") from None
    topic_md = md.topics.get(topic)
    if topic_md is None or topic_md.error is not None or not topic_md.partitions:
        raise BrokerUnreachable(f"topic {topic} not found on {settings.bootstrap_servers}")
    return len(topic_md.partitions)


def group_lag(settings: Settings, group: str, topic: str, timeout: float = 5.0) -> int:
    """Total committed lag of ``group`` on ``topic`` (the number KEDA's kafka scaler sees).

    An idle group on a transactionally written topic shows 1 per partition (the commit markers,
    kedacore/keda#5675; see ``ppg_mi.observability.lag``).
    """
    from confluent_kafka import Consumer, IsolationLevel, TopicPartition
    from confluent_kafka.admin import AdminClient, OffsetSpec

    from ..observability.lag import partition_lag
    from ..streaming.clients import common_config, reader_config

    partitions = range(topic_partitions(settings, topic, timeout))
    admin = AdminClient(common_config(settings))

    def offsets(parts: list[int], spec: OffsetSpec) -> dict[int, int]:
        futures = admin.list_offsets({TopicPartition(topic, p): spec for p in parts},
                                     isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=timeout)
        return {tp.partition: f.result().offset for tp, f in futures.items()}

    # a consumer of the group that never subscribes (never joins) and never commits
    reader = Consumer(reader_config(settings, group))
    try:
        end = offsets(list(partitions), OffsetSpec.latest())
        committed = {tp.partition: tp.offset
                     for tp in reader.committed([TopicPartition(topic, p) for p in partitions], timeout)}
    except Exception as exc:  # noqa: BLE001
        raise BrokerUnreachable(f"lag of {group} on {topic}: {exc}") from None
    finally:
        reader.close()
    missing = [p for p in partitions if committed.get(p, -1) < 0]
    start = offsets(missing, OffsetSpec.earliest()) if missing else {}
    return sum(partition_lag(end, committed, start).values())


@dataclass
class CanaryResult:
    """A canary recording's round trip through the pipeline."""

    record_id: str
    label: str | None
    model_version: str
    seconds: float


def send_canary(settings: Settings, deadline_s: float = 120.0,
                progress: Callable[[str], None] = lambda line: None) -> CanaryResult:
    """Send one synthetic recording to ``topic_raw``; wait for its prediction on ``topic_predictions``.

    The predictions are read ``read_committed`` from the offsets they had before the send, by a
    consumer that is assigned every partition (it joins no group and commits nothing). The
    record id ``canary-<random>`` never collides with a real recording's.

    Raises
    ------
    BrokerUnreachable
        The broker did not answer, the send failed, or no prediction came within ``deadline_s``.
    """
    from confluent_kafka import Consumer, Producer, TopicPartition

    from ..data import SyntheticConfig, generate
    from ..streaming.clients import idempotent_producer_config, reader_config
    from ..streaming.codec import Recording, decode_prediction, now_us

    started = time.monotonic()
    partitions = topic_partitions(settings, settings.topic_predictions)
    tag = uuid.uuid4().hex[:12]
    data = generate(SyntheticConfig(records=1, samples=settings.samples_per_record,
                                    sampling_rate_hz=settings.sampling_rate_hz, seed=int(tag[:6], 16),
                                    id_prefix=f"canary-{tag}"))
    record_id = data.record_ids[0]
    reader = Consumer({**reader_config(settings, f"ppg-mi-check-{tag}"), "enable.partition.eof": False})
    try:
        marks = {p: reader.get_watermark_offsets(TopicPartition(settings.topic_predictions, p), timeout=10)[1]
                 for p in range(partitions)}
        reader.assign([TopicPartition(settings.topic_predictions, p, marks[p]) for p in range(partitions)])
        producer = Producer({**idempotent_producer_config(settings), "message.timeout.ms": int(deadline_s * 1000)})
        errors: list[str] = []
        rec = Recording(record_id, data.samples[0], settings.sampling_rate_hz, data.labels[0], 0, now_us())
        producer.produce(settings.topic_raw, value=rec.encode(), key=record_id.encode(),
                         on_delivery=lambda err, msg: errors.append(str(err)) if err else None)
        if producer.flush(deadline_s) or errors:
            raise BrokerUnreachable(f"canary {record_id} not delivered to {settings.topic_raw}: "
                                    f"{'; '.join(errors) or 'timed out'}")
        progress(f"canary {record_id} sent to {settings.topic_raw}; waiting for it on {settings.topic_predictions}")
        while time.monotonic() - started < deadline_s:
            msg = reader.poll(1.0)
            if msg is None or msg.error() is not None:
                continue
            if (msg.key() or b"").decode() == record_id:
                prediction = decode_prediction(msg.value())
                return CanaryResult(record_id, prediction.predicted_label, prediction.model_version,
                                    round(time.monotonic() - started, 2))
        raise BrokerUnreachable(f"no prediction of canary {record_id} on {settings.topic_predictions} "
                                f"within {deadline_s:.0f} s")
    finally:
        reader.close()
