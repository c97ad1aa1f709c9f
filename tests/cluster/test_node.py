"""Smoke tests of the single-node cluster itself: the node, a pod on it, and a clean teardown."""

from __future__ import annotations

import socket
import subprocess
import uuid

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.cluster.node import K8S_VERSION, NODE_NAME, PAUSE_IMAGE, SingleNodeCluster, mounts, wait_for

pytestmark = pytest.mark.cluster


def _pause_pod(name: str, host_network: bool) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"app": "pause"}),
        spec=client.V1PodSpec(
            host_network=host_network,
            termination_grace_period_seconds=1,
            automount_service_account_token=False,
            containers=[
                client.V1Container(
                    name="pause",
                    image=PAUSE_IMAGE,
                    image_pull_policy="Never",
                    resources=client.V1ResourceRequirements(
                        requests={"cpu": "10m", "memory": "8Mi"}, limits={"cpu": "50m", "memory": "16Mi"}
                    ),
                    security_context=client.V1SecurityContext(
                        run_as_non_root=True,
                        allow_privilege_escalation=False,
                        capabilities=client.V1Capabilities(drop=["ALL"]),
                        seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
                    ),
                )
            ],
        ),
    )


@pytest.fixture
def namespace(k8s_cluster: SingleNodeCluster):
    core = k8s_cluster.core_v1()
    name = f"smoke-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def _pod_phase(core: client.CoreV1Api, name: str, namespace: str) -> str:
    pod = core.read_namespaced_pod(name, namespace)
    return pod.status.phase


def test_node_is_ready_at_the_built_version(k8s_cluster: SingleNodeCluster) -> None:
    core = k8s_cluster.core_v1()
    nodes = core.list_node().items
    assert [n.metadata.name for n in nodes] == [NODE_NAME]
    node = nodes[0]
    assert {c.type: c.status for c in node.status.conditions}["Ready"] == "True"
    assert node.status.node_info.kubelet_version == K8S_VERSION
    assert node.status.node_info.container_runtime_version.startswith("containerd://")
    version = client.VersionApi(k8s_cluster.api_client()).get_code()
    assert version.git_version == K8S_VERSION  # what helm's kubeVersion check reads
    # the node's address is a status field only: nothing of the cluster listens off loopback
    assert {a.type for a in node.status.addresses} >= {"InternalIP", "Hostname"}


def test_host_network_pod_runs_and_is_deleted(k8s_cluster: SingleNodeCluster, namespace: str) -> None:
    core = k8s_cluster.core_v1()
    core.create_namespaced_pod(namespace, _pause_pod("pause-host", host_network=True))
    wait_for(lambda: _pod_phase(core, "pause-host", namespace) == "Running", 60, "the hostNetwork pod Running")
    pod = core.read_namespaced_pod("pause-host", namespace)
    assert pod.status.container_statuses[0].ready
    assert pod.status.pod_ip == k8s_cluster.node_ip  # a hostNetwork pod carries the node's address
    # the API server reaches the kubelet (logs, exec) on 127.0.0.1 by the node name
    assert core.read_namespaced_pod_log("pause-host", namespace) == ""
    core.delete_namespaced_pod("pause-host", namespace)

    def gone() -> bool:
        try:
            core.read_namespaced_pod("pause-host", namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, 60, "the pod deleted")


def test_an_isolated_pod_runs_under_restricted_and_host_network_is_refused(k8s_cluster: SingleNodeCluster) -> None:
    """Without hostNetwork a pod gets its own network namespace with lo only (no pod network)."""
    core = k8s_cluster.core_v1()
    name = f"restricted-{uuid.uuid4().hex[:8]}"
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
    try:
        with pytest.raises(ApiException) as refused:
            core.create_namespaced_pod(name, _pause_pod("pause-host", host_network=True))
        assert refused.value.status == 403 and "hostNetwork" in refused.value.body
        core.create_namespaced_pod(name, _pause_pod("pause-isolated", host_network=False))
        wait_for(lambda: _pod_phase(core, "pause-isolated", name) == "Running", 60, "the isolated pod Running")
        assert core.read_namespaced_pod("pause-isolated", name).status.pod_ip == "127.0.0.1"
    finally:
        core.delete_namespace(name)


def test_an_imported_image_is_listed(k8s_cluster: SingleNodeCluster) -> None:
    refs = k8s_cluster.import_image(k8s_cluster.pause_tar)  # idempotent: the pause image again
    assert refs == [PAUSE_IMAGE]
    node = k8s_cluster.core_v1().read_node(NODE_NAME)
    names = {n for image in node.status.images or [] for n in image.names}
    assert PAUSE_IMAGE in names or any(n.startswith(PAUSE_IMAGE.rsplit(":", 1)[0]) for n in names)


def _listening_ports() -> set[int]:
    out = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=True).stdout
    return {int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines() if line.strip()}


def test_stop_leaves_nothing_behind(k8s_cluster: SingleNodeCluster) -> None:
    """A second cluster next to the session's one: started, given a pod, stopped without a trace."""
    cluster = SingleNodeCluster()
    try:
        cluster.start()
        core = cluster.core_v1()
        core.create_namespaced_pod("default", _pause_pod("pause", host_network=True))
        wait_for(lambda: _pod_phase(core, "pause", "default") == "Running", 60, "the pod Running")
        assert cluster.owned_pids()
        assert any(p.startswith(str(cluster.dir)) for p, _ in mounts())
        ports = set(cluster.ports.values())
        assert ports <= _listening_ports()
    finally:
        left = cluster.stop()
    assert not any(left.values()), left
    wait_for(lambda: not ports & _listening_ports(), 10, "the stopped cluster's ports to close")
    assert not [p for p, _ in mounts() if p.startswith(str(cluster.dir))]
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", cluster.ports["apiserver"])) != 0
    # the session's cluster is untouched
    assert k8s_cluster.core_v1().read_node(NODE_NAME).status.conditions
