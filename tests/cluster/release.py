"""A ppg-mi release on the single-node cluster: helm with the warning check, the values such a
node needs (hostNetwork), its namespace and model volume, and what the tests ask of the release."""


from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from kubernetes import client
from kubernetes.client.rest import ApiException

from ppg_mi.config import Settings
from ppg_mi.local.kafka import free_port

from ..chart import chartlib as cl
from ..chart import rendered
from ..helpers import read_topic, wait_for
from .node import SingleNodeCluster


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

    def workload(self, component: str) -> tuple[str, str]:
        """Kind and name of ``component``'s workload: StatefulSet (filter, classifier) or Deployment (dashboard)."""
        return next((o["kind"], o["metadata"]["name"]) for o in self.objects
                    if o["kind"] in ("StatefulSet", "Deployment")
                    and cl.pod_labels(o)["app.kubernetes.io/component"] == component)

    def workload_name(self, component: str) -> str:
        return self.workload(component)[1]

    def pods(self, component: str) -> list:
        selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component={component}"
        return self.core.list_namespaced_pod(self.namespace, label_selector=selector).items

    def ready_replicas(self, component: str) -> int:
        kind, name = self.workload(component)
        read = (self.apps.read_namespaced_stateful_set_status if kind == "StatefulSet"
                else self.apps.read_namespaced_deployment_status)
        return read(name, self.namespace).status.ready_replicas or 0

    def scale(self, component: str, replicas: int) -> None:
        kind, name = self.workload(component)
        patch = (self.apps.patch_namespaced_stateful_set_scale if kind == "StatefulSet"
                 else self.apps.patch_namespaced_deployment_scale)
        patch(name, self.namespace, {"spec": {"replicas": replicas}})

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


def node_values(tag: str, seed: int, bootstrap: str, image: str) -> dict:
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


def create_namespace(cluster: SingleNodeCluster, name: str, enforce: str) -> None:
    cluster.core_v1().create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={
        "pod-security.kubernetes.io/enforce": enforce,
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/audit": "restricted"})))


def models_volume(cluster: SingleNodeCluster, path: Path, namespace: str, claim: str, owner: int) -> None:
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
