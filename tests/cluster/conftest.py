"""The cluster tier: one real single-node Kubernetes (tests/cluster/node.py) per test session."""

from __future__ import annotations

import os
import random
import subprocess
import uuid

import pytest
from kubernetes import client

from ppg_mi.config import Settings
from tests.chart import chartlib as cl
from tests.chart import rendered
from tests.cluster.node import ClusterError, SingleNodeCluster, binaries_missing, cache_dir, clean_stale
from tests.cluster.release import RELEASE, Release, models_volume, create_namespace, node_values, helm
from tests.conftest import ProjectImage
from tests.helpers import wait_for


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster: needs the single-node Kubernetes cluster (scripts/cluster/build.sh builds it)"
    )


@pytest.fixture(scope="session")
def k8s_cluster() -> SingleNodeCluster:
    """A started single-node cluster; stopped, and checked to leave nothing behind, at session end.

    Fails (never skips) when the binaries are not built: the tier is part of the suite.
    """
    missing = binaries_missing()
    if missing:
        pytest.fail(
            f"the cluster tier's binaries are not built ({', '.join(missing)} missing in {cache_dir()}): "
            "run scripts/cluster/install-packages.sh and scripts/cluster/build.sh",
            pytrace=False,
        )
    workdir = os.environ.get("PPG_MI_CLUSTER_DIR") or None
    clean_stale(workdir)  # clusters of an earlier run that was killed before its teardown
    cluster = SingleNodeCluster(workdir)
    try:
        cluster.start()
    except ClusterError as exc:
        pytest.fail(f"the single-node cluster did not start: {exc}", pytrace=False)
    yield cluster
    left = cluster.stop()
    if any(left.values()):
        pytest.fail(f"the single-node cluster left things behind: {left}", pytrace=False)


@pytest.fixture(scope="session")
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


@pytest.fixture(scope="session")
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
    values = node_values(tag, seed, kafka_bootstrap, node_image)
    # the `ppg-mi cluster check` test pod reaches the API server where it listens (no kube-proxy here)
    values["hostNetwork"]["apiServer"] = k8s_cluster.server.removeprefix("https://")
    values_file = cl.write_values(work / "values.yaml", values)
    objects = cl.render([values_file], namespace=namespace)
    rendered.create_topics(objects, kafka_bootstrap)
    rendered.warm_group_coordinator(kafka_bootstrap, f"raw-{tag}")
    create_namespace(k8s_cluster, namespace, enforce="privileged")
    (claim,) = [o["metadata"]["name"] for o in cl.of_kind(objects, "PersistentVolumeClaim")]
    models = work / "models"
    models_volume(k8s_cluster, models, namespace, claim, project_image.uid)

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
                     what=f"the {component} Ready by its probes")
        wait_for(lambda: rel.job_succeeded(f"{RELEASE}-ppg-mi-producer"), 300, interval=3,
                 what="the producer Job's shards to finish")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{rel.logs(RELEASE)}") from None
    yield rel
    k8s_cluster.core_v1().delete_namespace(namespace)
    k8s_cluster.core_v1().delete_persistent_volume(f"models-{namespace}")
