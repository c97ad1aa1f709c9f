"""The chart's wiring runs: rendered pods started as local processes against the real broker.

Each workload's (StatefulSets, Deployment, the producer Job) command, arguments and environment are taken exactly as
``helm template`` renders them; only the broker address, the volumes (temporary directories) and
the container ports (free local ports) are mapped. The pipeline must then deliver every produced
record exactly once, every probe path and metrics port the manifests declare must answer, the
consumer groups KEDA watches must be the ones the processes join, and SIGTERM must stop each pod
within its grace period.
"""

from __future__ import annotations

import random
import shutil
import uuid
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from ppg_mi.config import Settings
from ppg_mi.streaming.codec import decode_prediction

from ..helpers import read_topic, wait_for
from . import chartlib as cl
from . import rendered
from .localpod import LocalPod

pytestmark = [pytest.mark.chart, pytest.mark.integration, pytest.mark.e2e]


def test_rendered_pods_run_the_pipeline(kafka_bootstrap: str, trained_models_dir: Path, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    seed = random.randrange(1000, 10**6)
    records = 32
    objects = cl.render([cl.write_values(tmp_path / "values.yaml", rendered.pipeline_values(tag, seed, records))])
    partitions = rendered.create_topics(objects, kafka_bootstrap)
    rendered.warm_group_coordinator(kafka_bootstrap, f"raw-{tag}")
    claims = tmp_path / "claims"
    deployments = {cl.pod_labels(d)["app.kubernetes.io/component"]: d
                   for d in cl.of_kind(objects, "Deployment") + cl.of_kind(objects, "StatefulSet")}
    # the model PVC holds a trained store, as the training Job leaves it
    models_claim = next(v["persistentVolumeClaim"]["claimName"]
                        for v in deployments["classifier"]["spec"]["template"]["spec"]["volumes"] if v["name"] == "models")
    shutil.copytree(trained_models_dir, claims / models_claim)

    pods: list[LocalPod] = []
    try:
        for component in ("filter", "classifier"):
            d = deployments[component]
            pods.append(LocalPod(d, cl.pod_spec(d), pod_name=f"{d['metadata']['name']}-0",
                                 bootstrap=kafka_bootstrap, root=tmp_path / component, claims_root=claims))
        for pod in pods:
            wait_for(lambda: pod.alive() and pod.probe_ok("readinessProbe"), 180, what=f"{pod.name} ready")

        # the Indexed Job: one process per completion index, the index from the pod annotation
        (job,) = [j for j in cl.of_kind(objects, "Job") if cl.pod_labels(j)["app.kubernetes.io/component"] == "producer"]
        shards = []
        for index in range(job["spec"]["completions"]):
            shards.append(LocalPod(job, cl.pod_spec(job), pod_name=f"{job['metadata']['name']}-{index}-x7k2p",
                                   bootstrap=kafka_bootstrap, root=tmp_path / f"producer-{index}", claims_root=claims,
                                   annotations={"batch.kubernetes.io/job-completion-index": str(index)}))
        for shard in shards:
            # its probes and metrics port answer while it runs (it is paced to run for seconds)
            wait_for(lambda: shard.alive() and shard.probe_ok("readinessProbe"), 60, interval=0.05,
                     what=f"{shard.name} ready")
            rendered.check_endpoints(shard, objects)
        for shard in shards:
            assert shard.proc.wait(120) == 0, shard.log()
            assert f"shard {shard.env['PPG_MI_PRODUCER_SHARD']}: " in shard.log()

        settings = Settings.from_env({}, kafka_bootstrap_servers=kafka_bootstrap,
                                     topic_raw=f"raw-{tag}", topic_predictions=f"predictions-{tag}")
        raw = read_topic(settings, settings.topic_raw, records, timeout=60)
        predictions = read_topic(settings, settings.topic_predictions, records, timeout=180)

        for pod in pods:
            pod.alive()
            rendered.check_endpoints(pod, objects)
        # KEDA measures the groups the running processes actually joined
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        groups = {g.group_id for g in admin.list_consumer_groups().result(timeout=30).valid}
        for scaled in cl.of_kind(objects, "ScaledObject"):
            meta = scaled["spec"]["triggers"][0]["metadata"]
            assert meta["consumerGroup"] in groups, f"{meta['consumerGroup']} was never joined"
            assert scaled["spec"]["maxReplicaCount"] <= partitions[meta["topic"]]
        for pod in pods:
            assert pod.terminate() == 0, pod.log()
    finally:
        for pod in pods + locals().get("shards", []):
            pod.close()

    expected = {f"synth{seed}-{i}" for i in range(records)}
    assert sorted(r.key for r in raw) == sorted(expected), "each shard sent its part, together all, once"
    counts = Counter(p.key for p in predictions)
    assert set(counts) == expected and set(counts.values()) == {1}, "every record predicted exactly once"
    decoded = [decode_prediction(p.value) for p in predictions]
    assert {d.shard for d in decoded} == {0, 1}
    version = (trained_models_dir / "current").read_text().strip()
    assert {d.model_version for d in decoded} == {version}


def test_rendered_dashboard_pod_serves_its_probes(kafka_bootstrap: str, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    objects = cl.render([cl.write_values(tmp_path / "values.yaml", rendered.pipeline_values(tag, 1, 4))])
    rendered.create_topics(objects, kafka_bootstrap)
    (d,) = [o for o in cl.of_kind(objects, "Deployment") if cl.pod_labels(o)["app.kubernetes.io/component"] == "dashboard"]
    pod = LocalPod(d, cl.pod_spec(d), pod_name=f"{d['metadata']['name']}-7f8b9-da0", bootstrap=kafka_bootstrap,
                   root=tmp_path / "dashboard", claims_root=tmp_path / "claims")
    try:
        wait_for(lambda: pod.alive() and pod.probe_ok("readinessProbe"), 120, what="dashboard ready")
        rendered.check_endpoints(pod, objects)
        # the Service's target port serves the Streamlit page
        (svc,) = cl.of_kind(objects, "Service")
        target = svc["spec"]["ports"][0]["targetPort"]
        wait_for(lambda: pod.get(target, "/")[0] == 200, 60, what="the dashboard page on the Service's port")
        assert pod.terminate() == 0, pod.log()
    finally:
        pod.close()
