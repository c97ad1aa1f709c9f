"""The cluster tier: one real single-node Kubernetes (tests/cluster/node.py) per test session."""

from __future__ import annotations

import os

import pytest

from tests.cluster.node import ClusterError, SingleNodeCluster, binaries_missing, cache_dir, clean_stale


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
