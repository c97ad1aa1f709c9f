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

import os
import random
import re
import shutil
import subprocess
import sys
import uuid
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from ppg_mi.config import Settings
from ppg_mi.local.kafka import free_port
from ppg_mi.streaming.codec import decode_prediction

from ..chart import chartlib as cl
from ..chart import rendered
from ..conftest import ProjectImage
from ..helpers import read_topic, wait_for
from .node import SingleNodeCluster

pytestmark = [pytest.mark.cluster, pytest.mark.chart, pytest.mark.integration, pytest.mark.e2e]

RELEASE = "ppg"
RECORDS = 40
# the one warning a host-network pod draws in a namespace that warns `restricted`; a pod violating
# anything else in the profile draws a warning listing that too, which fails the check
# (helm prints the API server's warnings through klog, quotes escaped)
HOST_NETWORK_WARNING = re.compile(
    r'Warning: would violate PodSecurity \\?"restricted:latest\\?": host namespaces \(hostNetwork=true\)"?$')


def helm(cluster: SingleNodeCluster, *args: str, allowed: re.Pattern | None = HOST_NETWORK_WARNING,
         check: bool = True) -> subprocess.CompletedProcess:
    """The real helm against the node; fails on an error and on any warning but ``allowed``.

    helm only warns about unknown fields (server-side field validation) and deploys anyway.
    """
    result = subprocess.run([cl.helm_binary(), *args], env=cluster.env(), capture_output=True, text=True,
                            timeout=600)
    if check:
        assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stderr}"
        warnings = [line for line in result.stderr.splitlines()
                    if "warning" in line.lower() and not (allowed and allowed.search(line))]
        assert not warnings, f"helm {' '.join(args)} warned:\n" + "\n".join(warnings)
    return result


@dataclass
class Release:
    cluster: SingleNodeCluster
    namespace: str
    values_file: Path
    values: dict
    objects: list[dict]
    models: Path
    settings: Settings
    first_version: str
    claim: str

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.cluster.api_client())

    @property
    def core(self) -> client.CoreV1Api:
        return self.cluster.core_v1()

    def deployment(self, component: str) -> str:
        return next(o["metadata"]["name"] for o in cl.of_kind(self.objects, "Deployment")
                    if cl.pod_labels(o)["app.kubernetes.io/component"] == component)

    def pods(self, component: str) -> list:
        selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component={component}"
        return self.core.list_namespaced_pod(self.namespace, label_selector=selector).items

    def ready_replicas(self, component: str) -> int:
        status = self.apps.read_namespaced_deployment_status(self.deployment(component), self.namespace).status
        return status.ready_replicas or 0

    def scale(self, component: str, replicas: int) -> None:
        self.apps.patch_namespaced_deployment_scale(self.deployment(component), self.namespace,
                                                    {"spec": {"replicas": replicas}})

    def wait_scaled(self, component: str, replicas: int, timeout: float = 300) -> None:
        def settled() -> bool:
            pods = [p for p in self.pods(component) if p.metadata.deletion_timestamp is None]
            return self.ready_replicas(component) == replicas and len(pods) == replicas
        wait_for(settled, timeout, interval=2, what=f"{component} at {replicas} ready replicas")

    def job_succeeded(self, name_prefix: str) -> bool:
        jobs = client.BatchV1Api(self.cluster.api_client()).list_namespaced_job(self.namespace).items
        for job in jobs:
            if job.metadata.name.startswith(name_prefix):
                if job.status.failed:
                    raise AssertionError(f"Job {job.metadata.name} failed:\n{self.logs(job.metadata.name)}")
                if job.status.succeeded:
                    return True
        return False

    def logs(self, name_prefix: str) -> str:
        out = []
        for pod in self.core.list_namespaced_pod(self.namespace).items:
            if pod.metadata.name.startswith(name_prefix):
                try:
                    out.append(f"--- {pod.metadata.name}\n"
                               + self.core.read_namespaced_pod_log(pod.metadata.name, self.namespace)[-3000:])
                except ApiException as exc:
                    out.append(f"--- {pod.metadata.name}: no log ({exc.reason})")
        return "\n".join(out)

    def produce(self, records: int, seed: int, rate: float) -> subprocess.Popen:
        """A producer on the node's host, as a user's own client would send to the same topic."""
        return subprocess.Popen(
            [sys.executable, "-m", "ppg_mi", "produce", "--synthetic", str(records), "--seed", str(seed), "--rate", str(rate)],
            env={**os.environ, **self.settings.as_env(), "PPG_MI_METRICS_PORT": "0"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    @contextmanager
    def producing(self, records: int, seed: int, rate: float) -> Iterator[subprocess.Popen]:
        """A host producer running for the block; it must have sent everything by the block's end."""
        producer = self.produce(records, seed, rate)
        try:
            yield producer
            assert producer.wait(300) == 0, producer.stdout.read()
        finally:
            if producer.poll() is None:
                producer.kill()

    def assert_each_predicted_once(self, seed: int, records: int) -> None:
        counts = self.predictions(seed, records)
        assert set(counts.values()) == {1}, f"duplicates: {[k for k, n in counts.items() if n > 1]}"

    def predictions(self, seed: int, records: int, timeout: float = 300) -> Counter:
        """How often each of ``synth<seed>-<i>`` was predicted, once all of them were."""
        prefix = f"synth{seed}-"

        def mine(batch) -> list:
            return [r for r in batch if r.key.startswith(prefix)]

        wanted = {f"{prefix}{i}" for i in range(records)}
        seen: list = []

        def complete() -> bool:
            seen[:] = mine(read_topic(self.settings, self.settings.topic_predictions, 0, timeout=30, idle=2))
            return wanted <= {r.key for r in seen}
        wait_for(complete, timeout, interval=3, what=f"predictions of the {records} records of seed {seed}")
        return Counter(r.key for r in seen)


def _node_values(tag: str, seed: int, bootstrap: str, image: str) -> dict:
    values = rendered.pipeline_values(tag, seed, RECORDS)
    repository, _, image_tag = image.rpartition(":")
    values.update({
        "image": {"repository": repository, "tag": image_tag, "pullPolicy": "Never"},
        "hostNetwork": {"enabled": True, "address": "127.0.0.1"},
        "monitoring": {"podMonitors": {"enabled": False}},
        "kafka": {"bootstrapServers": bootstrap},
        "training": {"synthetic": 60, "seed": 1, "folds": 0},
    })
    # a free port: a demo or another run may hold the default 8501 on this machine
    values["dashboard"]["port"] = free_port()
    # three classifiers, the filter and the dashboard on a node of two CPUs
    values["classifier"]["resources"] = {"requests": {"cpu": "250m", "memory": "256Mi"},
                                         "limits": {"cpu": "2", "memory": "1536Mi"}}
    return values


def _namespace(cluster: SingleNodeCluster, name: str, enforce: str) -> None:
    cluster.core_v1().create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={
        "pod-security.kubernetes.io/enforce": enforce,
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/audit": "restricted"})))


def _models_volume(cluster: SingleNodeCluster, path: Path, namespace: str, claim: str, owner: int) -> None:
    """A hostPath PersistentVolume bound to the chart's claim, its directory owned by the image's
    user: hostPath ignores fsGroup (docs/kubernetes.md)."""
    path.mkdir(parents=True)
    os.chown(path, owner, owner)
    cluster.core_v1().create_persistent_volume(client.V1PersistentVolume(
        metadata=client.V1ObjectMeta(name=f"models-{namespace}"),
        spec=client.V1PersistentVolumeSpec(
            capacity={"storage": "1Gi"}, access_modes=["ReadWriteOnce"], storage_class_name="",
            persistent_volume_reclaim_policy="Retain", host_path=client.V1HostPathVolumeSource(path=str(path)),
            claim_ref=client.V1ObjectReference(namespace=namespace, name=claim))))


@pytest.fixture(scope="module")
def node_image(k8s_cluster: SingleNodeCluster, project_image: ProjectImage,
               tmp_path_factory: pytest.TempPathFactory) -> str:
    """The project image in the node's containerd (`podman save` → `ctr images import`)."""
    archive = tmp_path_factory.mktemp("image") / "ppg-mi.tar"
    subprocess.run([*project_image.podman, "save", "--format", "docker-archive", "-o", str(archive),
                    project_image.name], check=True, capture_output=True, timeout=900)
    refs = k8s_cluster.import_image(archive)
    archive.unlink()
    assert any(project_image.name in ref for ref in refs), refs
    return project_image.name


@pytest.fixture(scope="module")
def crds(k8s_cluster: SingleNodeCluster) -> None:
    """Strimzi's, KEDA's and prometheus-operator's CRDs, applied server-side as their charts do."""
    for directory in sorted((cl.shared_dir() / "crds").iterdir()):
        for manifest in sorted(directory.glob("*.yaml")):
            k8s_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(manifest))
    ext = client.ApiextensionsV1Api(k8s_cluster.api_client())

    def established() -> bool:
        return all(any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])
                   for crd in ext.list_custom_resource_definition().items)
    wait_for(established, 60, what="the CRDs established")


@pytest.fixture(scope="module")
def release(k8s_cluster: SingleNodeCluster, node_image: str, crds: None, kafka_bootstrap: str,
            project_image: ProjectImage, tmp_path_factory: pytest.TempPathFactory) -> Release:
    """The chart installed, its model trained by its Job, and its first recordings delivered."""
    tag = uuid.uuid4().hex[:8]
    seed = random.randrange(1000, 10**6)
    work = tmp_path_factory.mktemp("release")
    namespace = f"ppg-{tag}"
    values = _node_values(tag, seed, kafka_bootstrap, node_image)
    values_file = cl.write_values(work / "values.yaml", values)
    objects = cl.render([values_file], namespace=namespace)
    rendered.create_topics(objects, kafka_bootstrap)
    rendered.warm_group_coordinator(kafka_bootstrap, f"raw-{tag}")
    _namespace(k8s_cluster, namespace, enforce="privileged")
    (claim,) = [o["metadata"]["name"] for o in cl.of_kind(objects, "PersistentVolumeClaim")]
    models = work / "models"
    _models_volume(k8s_cluster, models, namespace, claim, project_image.uid)

    helm(k8s_cluster, "install", RELEASE, str(cl.CHART), "-n", namespace, "-f", str(values_file))
    settings = Settings.from_env({}, kafka_bootstrap_servers=kafka_bootstrap, topic_raw=f"raw-{tag}",
                                 topic_predictions=f"predictions-{tag}")
    rel = Release(k8s_cluster, namespace, values_file, values, objects, models, settings, "", claim)
    try:
        wait_for(lambda: rel.job_succeeded(f"{RELEASE}-ppg-mi-training"), 600, interval=3,
                 what="the training Job to write the model")
        rel.first_version = (models / "current").read_text().strip()
        for component in ("filter", "classifier", "dashboard"):
            wait_for(lambda: rel.ready_replicas(component) == 1, 300, interval=2,
                     what=f"the {component} Deployment Ready by its probes")
        wait_for(lambda: rel.job_succeeded(f"{RELEASE}-ppg-mi-producer"), 300, interval=3,
                 what="the producer Job's shards to finish")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{rel.logs(RELEASE)}") from None
    yield rel
    k8s_cluster.core_v1().delete_namespace(namespace)
    k8s_cluster.core_v1().delete_persistent_volume(f"models-{namespace}")


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


def test_deleting_a_classifier_pod_mid_stream_loses_and_doubles_nothing(release: Release) -> None:
    seed = random.randrange(1000, 10**6)
    records = 160
    (before,) = [p.metadata.name for p in release.pods("classifier")]

    def predicted() -> int:
        batch = read_topic(release.settings, release.settings.topic_predictions, 0, timeout=3, idle=0.5)
        return sum(r.key.startswith(f"synth{seed}-") for r in batch)

    with release.producing(records, seed, rate=5) as producer:
        wait_for(lambda: predicted() >= 20, 120, interval=1, what="the stream under way")
        assert producer.poll() is None, "the producer is still sending when the pod goes"
        release.core.delete_namespaced_pod(before, release.namespace)
        wait_for(lambda: [p.metadata.name for p in release.pods("classifier")
                          if p.metadata.deletion_timestamp is None] != [before]
                 and release.ready_replicas("classifier") == 1, 300, interval=2, what="a replacement classifier")
    release.assert_each_predicted_once(seed, records)


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
    claims = release.core.list_namespaced_persistent_volume_claim(release.namespace).items
    assert [c.metadata.name for c in claims] == [release.claim], \
        "the model claim outlives the release (helm.sh/resource-policy: keep)"


def test_restricted_namespace_admits_the_chart_where_no_host_network_is_needed(
        k8s_cluster: SingleNodeCluster, node_image: str, crds: None, project_image: ProjectImage,
        tmp_path: Path) -> None:
    """The chart's pods pass `restricted` as they are: the training Job (it needs no network) runs
    to completion in a namespace enforcing it, with no PodSecurity warning; a root pod is refused."""
    namespace = f"restricted-{uuid.uuid4().hex[:8]}"
    _namespace(k8s_cluster, namespace, enforce="restricted")
    values = {"image": _node_values("x", 1, "127.0.0.1:9", node_image)["image"],
              "training": {"synthetic": 40, "seed": 3, "folds": 0},
              "producer": {"enabled": False}, "dashboard": {"enabled": False}, "tests": {"enabled": False},
              "filter": {"replicas": 0, "autoscaling": {"enabled": False}},
              "classifier": {"replicas": 0, "autoscaling": {"enabled": False}},
              "monitoring": {"podMonitors": {"enabled": False}}}
    values_file = cl.write_values(tmp_path / "values.yaml", values)
    objects = cl.render([values_file], namespace=namespace)
    (claim,) = [o["metadata"]["name"] for o in cl.of_kind(objects, "PersistentVolumeClaim")]
    _models_volume(k8s_cluster, tmp_path / "models", namespace, claim, project_image.uid)
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
    _namespace(k8s_cluster, namespace, enforce="restricted")
    try:
        result = helm(k8s_cluster, "install", "misspelt", str(chart), "-n", namespace, check=False)
        assert result.returncode == 0, "helm deploys a misspelt field"
        assert re.search(r'unknown field \\?"datta', result.stderr), result.stderr
        with pytest.raises(AssertionError, match="warned"):
            helm(k8s_cluster, "upgrade", "misspelt", str(chart), "-n", namespace)
    finally:
        k8s_cluster.core_v1().delete_namespace(namespace)
        shutil.rmtree(chart)
