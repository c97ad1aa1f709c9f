"""What the tests that run rendered pods share: values, topics as the KafkaTopics declare them, probes."""

from __future__ import annotations

import uuid

from confluent_kafka.admin import AdminClient, NewTopic

from ..helpers import wait_for
from . import chartlib as cl
from .localpod import LocalPod


def pipeline_values(tag: str, seed: int, records: int) -> dict:
    return {
        # names unique to this test, set through the chart's own values
        "topics": {"partitions": 3, "replicas": 1,
                   "names": {"raw": f"raw-{tag}", "filtered": f"filtered-{tag}",
                             "predictions": f"predictions-{tag}", "dlq": f"dlq-{tag}"}},
        "filter": {"groupId": f"filter-{tag}", "autoscaling": {"maxReplicas": 3}},
        "classifier": {"groupId": f"classifier-{tag}", "modelReloadIntervalS": 1,
                       "autoscaling": {"maxReplicas": 3}},
        "dashboard": {"groupId": f"dashboard-{tag}"},
        "producer": {"shards": 2, "parallelism": 2, "synthetic": records, "seed": seed,
                     # paced so that each shard runs for a few seconds: its probes are checked live
                     "rate": 8},
        "config": {"batchMaxWaitMs": 100},
    }


def create_topics(objects: list[dict], bootstrap: str) -> dict[str, int]:
    """Create the topics exactly as the rendered KafkaTopics declare them (name, partitions, config)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = cl.of_kind(objects, "KafkaTopic")
    futures = admin.create_topics([NewTopic(t["spec"]["topicName"], t["spec"]["partitions"], t["spec"]["replicas"],
                                            config={k: str(v) for k, v in t["spec"].get("config", {}).items()})
                                   for t in topics], operation_timeout=30)
    for future in futures.values():
        future.result()
    return {t["spec"]["topicName"]: t["spec"]["partitions"] for t in topics}


def warm_group_coordinator(bootstrap: str, topic: str) -> None:
    """Join and leave a throw-away group once, so the broker's group coordinator is loaded.

    On a fresh broker the first group join (while ``__consumer_offsets`` is being created) has been
    seen to kill a stage process with SIGSEGV inside the Kafka client; Kubernetes would restart the
    pod, but that start-up race is not what this test is about (reported separately).
    """
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"warm-up-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([topic])
        wait_for(lambda: consumer.poll(0.2) is None and consumer.assignment(), 60, interval=0,
                 what="a first consumer group to be joined")
    finally:
        consumer.close()


def check_endpoints(pod: LocalPod, objects: list[dict]) -> None:
    """Every probe the container declares answers; so does every PodMonitor endpoint selecting it,
    and a pod on a pod network has one. On the host network (no named metrics port, so no
    PodMonitor) the exec probe command serves /metrics as well."""
    for kind, probe in pod.probes().items():
        assert pod.probe_ok(kind), f"{pod.name}: {kind} {probe} failed"
    labels = cl.pod_labels(pod.obj)
    monitors = [m for m in cl.of_kind(objects, "PodMonitor") if cl.selects(m["spec"]["selector"]["matchLabels"], labels)]
    if pod.pod_spec.get("hostNetwork"):
        metrics = pod.exec(["ppg-mi", "probe", "/metrics"])
        assert metrics.returncode == 0 and "ppg_mi_" in metrics.stdout, f"{pod.name}: /metrics {metrics}"
        return
    assert monitors, f"no PodMonitor scrapes {pod.name}"
    for monitor in monitors:
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            status, body = pod.get(endpoint["port"], endpoint["path"])
            assert status == 200 and "ppg_mi_" in body, f"{pod.name}: {endpoint} answered {status}"
