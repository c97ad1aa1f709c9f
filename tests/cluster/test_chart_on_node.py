"""The chart on a real single-node Kubernetes, installed with the real helm the way a user does.

The node (tests/cluster/node.py) has no pod network, cluster DNS or kube-proxy, so the release uses
the values docs/kubernetes.md promises for such clusters (`hostNetwork.enabled`) and nothing else
from outside the chart: no post-renderer. The pods run the image `scripts/image.sh` builds, imported
into the node's containerd; they reach the tests' broker on 127.0.0.1. Strimzi's, KEDA's and
prometheus-operator's objects are created against their CRDs (applied server-side from
../shared/crds); their operators do not run, so the test creates the topics the KafkaTopics declare.

Every helm command must succeed without a warning, except PodSecurity's one warning for the host
network in a namespace that enforces `privileged` and warns `restricted`: any other violation of
the restricted profile would show up in the same warning and fail.
"""

from __future__ import annotations

import random
import re
import shutil
import time
import uuid
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from ppg_mi.config import Settings
from ppg_mi.streaming.codec import decode_prediction

from ..chart import chartlib as cl
from ..conftest import ProjectImage
from ..helpers import read_topic, wait_for
from .node import SingleNodeCluster
from .release import RECORDS, RELEASE, Release, models_volume, create_namespace, node_values, helm

pytestmark = [pytest.mark.cluster, pytest.mark.chart, pytest.mark.integration, pytest.mark.e2e]


def test_install_trains_and_delivers_every_record_exactly_once(release: Release) -> None:
    assert (release.models / release.first_version / "model-card.json").is_file()
    release.assert_each_predicted_once(release.values["producer"]["seed"], RECORDS)
    raw = read_topic(release.settings, release.settings.topic_raw, RECORDS, timeout=60)
    assert len(raw) == RECORDS and len({r.key for r in raw}) == RECORDS
    predictions = read_topic(release.settings, release.settings.topic_predictions, RECORDS, timeout=60)
    assert {decode_prediction(p.value).model_version for p in predictions} == {release.first_version}
    assert {decode_prediction(p.value).shard for p in predictions} == {0, 1}, "both producer shards ran as pods"
    # the objects whose operators do not run here were accepted by their CRDs' schemas
    custom = client.CustomObjectsApi(release.cluster.api_client())
    topics = custom.list_namespaced_custom_object("kafka.strimzi.io", "v1", release.namespace, "kafkatopics")
    assert {t["spec"]["topicName"] for t in topics["items"]} == set(release.values["topics"]["names"].values())
    scaled = custom.list_namespaced_custom_object("keda.sh", "v1alpha1", release.namespace, "scaledobjects")
    assert len(scaled["items"]) == 2


def test_helm_test_passes(release: Release) -> None:
    # (no --logs: the hook's delete policy removes the pod once it succeeded)
    result = helm(release.cluster, "test", RELEASE, "-n", release.namespace)
    assert re.search(r"TEST SUITE:\s+ppg-ppg-mi-test\s+.*Phase:\s+Succeeded", result.stdout, re.S), result.stdout


def test_scaling_the_classifier_to_three_and_back_loses_and_doubles_nothing(release: Release) -> None:
    seed = random.randrange(1000, 10**6)
    records = 240
    with release.producing(records, seed, rate=12):
        release.scale("classifier", 3)
        release.wait_scaled("classifier", 3)
        release.scale("classifier", 1)
        release.wait_scaled("classifier", 1)
    release.assert_each_predicted_once(seed, records)


def test_a_force_deleted_classifier_pod_comes_back_under_its_name_and_the_stream_goes_on(release: Release) -> None:
    """#18 item 7: the classifier is a StatefulSet, so the pod killed without notice (force delete:
    no grace period) is replaced under the same name, which is its instance id and transactional id;
    the replacement predicts the rest of the stream, nothing lost or doubled."""
    seed = random.randrange(1000, 10**6)
    # two minutes at 5/s: the pod goes while records keep coming, and they still come once its
    # replacement runs (30-60 s to Ready on a loaded 2-core node)
    records = 600
    (before,) = [(p.metadata.name, p.metadata.uid) for p in release.pods("classifier")]

    def mine() -> list:
        # the whole topic, until a second of silence (at least one record: the earlier tests' are there)
        batch = read_topic(release.settings, release.settings.topic_predictions, 1, timeout=30, idle=1.0)
        return [r for r in batch if r.key.startswith(f"synth{seed}-")]

    def replacement() -> object | None:
        alive = [p for p in release.pods("classifier") if p.metadata.deletion_timestamp is None]
        if len(alive) != 1 or alive[0].metadata.name != before[0] or alive[0].metadata.uid == before[1]:
            return None
        # the pod's own status, not only the StatefulSet's: its ready count can still be the old
        # pod's while the new one has no container status yet
        statuses = alive[0].status.container_statuses or []
        if statuses and all(s.ready and s.state.running for s in statuses) \
                and release.ready_replicas("classifier") == 1:
            return alive[0]
        return None

    with release.producing(records, seed, rate=5) as producer:
        wait_for(lambda: len(mine()) >= 20, 120, interval=1, what="the stream under way")
        assert producer.poll() is None, "the producer is still sending when the pod goes"
        release.core.delete_namespaced_pod(before[0], release.namespace, grace_period_seconds=0)
        deleted_at = time.monotonic()
        try:
            pod = wait_for(replacement, 300, interval=0.5, what=f"a new {before[0]} Ready")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{release.logs(before[0])[-3000:]}") from None
        ready_after = time.monotonic() - deleted_at
    release.assert_each_predicted_once(seed, records)
    # the replacement's classifier container started after the old process was gone; what it
    # predicted carries a later predicted_us (host and pods share this node's clock)
    started_us = pod.status.container_statuses[0].state.running.started_at.timestamp() * 1e6
    by_replacement = [r for r in mine() if decode_prediction(r.value).predicted_us >= started_us]
    assert by_replacement, "the replacement predicted part of the stream"
    print(f"\nforce-deleted {before[0]}: same-name replacement Ready after {ready_after:.1f} s; it predicted "
          f"{len(by_replacement)} of {records}")


def test_a_new_model_version_is_served_without_a_restart(release: Release) -> None:
    pods = {p.metadata.name: p.status.container_statuses[0].restart_count for p in release.pods("classifier")}
    # a new training seed; no second producer Job (it would resend the first recordings)
    values = {**release.values, "training": {**release.values["training"], "seed": 2},
              "producer": {**release.values["producer"], "enabled": False}}
    helm(release.cluster, "upgrade", RELEASE, str(cl.CHART), "-n", release.namespace,
         "-f", str(cl.write_values(release.values_file.with_name("values-2.yaml"), values)))
    wait_for(lambda: release.job_succeeded(f"{RELEASE}-ppg-mi-training-r2"), 600, interval=3,
             what="the revision-2 training Job")
    version = (release.models / "current").read_text().strip()
    assert version != release.first_version
    seed = random.randrange(1000, 10**6)
    producer = release.produce(20, seed, rate=0)
    assert producer.wait(120) == 0, producer.stdout.read()
    release.predictions(seed, 20)
    served = {decode_prediction(p.value).model_version
              for p in read_topic(release.settings, release.settings.topic_predictions, 0, timeout=30)
              if p.key.startswith(f"synth{seed}-")}
    assert served == {version}
    after = {p.metadata.name: p.status.container_statuses[0].restart_count for p in release.pods("classifier")}
    assert after == pods, "the classifier hot-reloaded: same pod, no restart"


def test_rollback_and_uninstall(release: Release) -> None:
    helm(release.cluster, "rollback", RELEASE, "1", "-n", release.namespace, "--wait", "--timeout", "5m")
    history = helm(release.cluster, "history", RELEASE, "-n", release.namespace, "-o", "json").stdout
    assert '"revision":3' in history.replace(" ", "")
    helm(release.cluster, "uninstall", RELEASE, "-n", release.namespace, "--wait", "--timeout", "5m")
    assert not release.apps.list_namespaced_deployment(release.namespace).items
    assert not release.apps.list_namespaced_stateful_set(release.namespace).items
    claims = release.core.list_namespaced_persistent_volume_claim(release.namespace).items
    assert [c.metadata.name for c in claims] == [release.claim], \
        "the model claim outlives the release (helm.sh/resource-policy: keep)"


def test_restricted_namespace_admits_the_chart_where_no_host_network_is_needed(
        k8s_cluster: SingleNodeCluster, node_image: str, crds: None, project_image: ProjectImage,
        tmp_path: Path) -> None:
    """The chart's pods pass `restricted` as they are: the training Job (it needs no network) runs
    to completion in a namespace enforcing it, with no PodSecurity warning; a root pod is refused."""
    namespace = f"restricted-{uuid.uuid4().hex[:8]}"
    create_namespace(k8s_cluster, namespace, enforce="restricted")
    values = {"image": node_values("x", 1, "127.0.0.1:9", node_image)["image"],
              "training": {"synthetic": 40, "seed": 3, "folds": 0},
              "producer": {"enabled": False}, "dashboard": {"enabled": False}, "tests": {"enabled": False},
              "filter": {"replicas": 0, "autoscaling": {"enabled": False}},
              "classifier": {"replicas": 0, "autoscaling": {"enabled": False}},
              "monitoring": {"podMonitors": {"enabled": False}}}
    values_file = cl.write_values(tmp_path / "values.yaml", values)
    objects = cl.render([values_file], namespace=namespace)
    (claim,) = [o["metadata"]["name"] for o in cl.of_kind(objects, "PersistentVolumeClaim")]
    models_volume(k8s_cluster, tmp_path / "models", namespace, claim, project_image.uid)
    try:
        helm(k8s_cluster, "install", RELEASE, str(cl.CHART), "-n", namespace, "-f", str(values_file), allowed=None)
        rel = Release(k8s_cluster, namespace, values_file, values, objects, tmp_path / "models",
                      Settings.from_env({}), "", claim)
        wait_for(lambda: rel.job_succeeded(f"{RELEASE}-ppg-mi-training"), 600, interval=3,
                 what="the training Job under `restricted`")
        assert (tmp_path / "models" / "current").is_file()

        (job,) = [o for o in cl.of_kind(objects, "Job") if "training" in o["metadata"]["name"]]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "as-root"},
               "spec": {**cl.pod_spec(job), "securityContext": {**cl.pod_spec(job)["securityContext"],
                                                                 "runAsNonRoot": False, "runAsUser": 0}}}
        pod["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] = False
        with pytest.raises(ApiException) as refused:
            k8s_cluster.core_v1().create_namespaced_pod(namespace, pod)
        assert refused.value.status == 403 and "runAsNonRoot" in refused.value.body
    finally:
        k8s_cluster.core_v1().delete_namespace(namespace)
        k8s_cluster.core_v1().delete_persistent_volume(f"models-{namespace}")


def test_helm_warnings_fail_the_check(k8s_cluster: SingleNodeCluster, tmp_path: Path) -> None:
    """Negative control of the warning check: a misspelt field deploys with only a warning."""
    chart = tmp_path / "misspelt"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: misspelt\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: misspelt\ndatta:\n  a: b\n")
    namespace = f"misspelt-{uuid.uuid4().hex[:8]}"
    create_namespace(k8s_cluster, namespace, enforce="restricted")
    try:
        result = helm(k8s_cluster, "install", "misspelt", str(chart), "-n", namespace, check=False)
        assert result.returncode == 0, "helm deploys a misspelt field"
        assert re.search(r'unknown field \\?"datta', result.stderr), result.stderr
        with pytest.raises(AssertionError, match="warned"):
            helm(k8s_cluster, "upgrade", "misspelt", str(chart), "-n", namespace)
    finally:
        k8s_cluster.core_v1().delete_namespace(namespace)
        shutil.rmtree(chart)
