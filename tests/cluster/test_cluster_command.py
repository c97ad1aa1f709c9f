"""`ppg-mi cluster status|scale|check` against the chart installed on the real single-node cluster.

One release per module (the `release` fixture of tests/cluster/conftest.py: hostNetwork values, model
trained, first recordings delivered). The commands run as a user runs them: the console script
in a subprocess with the node's kubeconfig. The tests run in file order: KEDA on first, then the
release is upgraded to keda.enabled=false (HPAs) for the last scaling test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from ppg_mi.local.kafka import free_port

from ..chart import chartlib as cl
from .release import RELEASE, Release, helm

pytestmark = [pytest.mark.cluster, pytest.mark.chart, pytest.mark.integration]
PAUSED = "autoscaling.keda.sh/paused-replicas"


def ppg_mi(rel: Release, *args: str, env: dict | None = None, timeout: float = 400) -> subprocess.CompletedProcess:
    """`ppg-mi cluster ...` with the node's kubeconfig, in the release's namespace."""
    full = {**os.environ, **rel.cluster.env(), **(env or {})}
    full.pop("PPG_MI_KAFKA_BOOTSTRAP_SERVERS", None)
    return subprocess.run([sys.executable, "-m", "ppg_mi", "cluster", *args], env=full, capture_output=True,
                          text=True, timeout=timeout)


def in_release(rel: Release, *args: str) -> list[str]:
    return [*args, "--release", RELEASE, "--namespace", rel.namespace]


def account_kubeconfig(rel: Release, account: str, tmp_path: Path) -> Path:
    """A kubeconfig authenticating as a ServiceAccount of the release's namespace (a short-lived token)."""
    token = rel.core.create_namespaced_service_account_token(account, rel.namespace, client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600))).status.token
    cluster_entry = yaml.safe_load(rel.cluster.kubeconfig.read_text())["clusters"][0]
    path = tmp_path / f"{account}.kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "clusters": [cluster_entry],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": cluster_entry["name"], "user": account,
                                                     "namespace": rel.namespace}}],
        "current-context": account}))
    return path


def scaled_object(rel: Release, component: str) -> dict:
    custom = client.CustomObjectsApi(rel.cluster.api_client())
    return custom.get_namespaced_custom_object("keda.sh", "v1alpha1", rel.namespace, "scaledobjects",
                                               rel.workload_name(component))


def test_status_json_and_table_match_the_api(release: Release) -> None:
    result = ppg_mi(release, *in_release(release, "status", "--json"))
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    apps, core = release.apps, release.core
    selector = f"app.kubernetes.io/instance={RELEASE}"
    workloads = {d.metadata.name: ("Deployment", d) for d in apps.list_namespaced_deployment(
        release.namespace, label_selector=selector).items}
    workloads.update({s.metadata.name: ("StatefulSet", s) for s in apps.list_namespaced_stateful_set(
        release.namespace, label_selector=selector).items})
    assert {d["name"] for d in got["workloads"]} == set(workloads)
    for d in got["workloads"]:
        kind, api = workloads[d["name"]]
        assert (d["kind"], d["desired"], d["ready"]) == (kind, api.spec.replicas, api.status.ready_replicas or 0), d
        assert kind == ("StatefulSet" if d["component"] in ("filter", "classifier") else "Deployment"), d
        if d["component"] in ("filter", "classifier"):
            assert d["autoscaler"] == "keda" and d["paused_replicas"] is None
            assert isinstance(d["lag"], int) and d["lag"] >= 0, "the broker is reachable: lag is shown"
    pods = {p.metadata.name for p in core.list_namespaced_pod(release.namespace, label_selector=selector).items}
    assert {p["name"] for p in got["pods"]} == pods
    classifier_pods = [p for p in got["pods"] if p["component"] == "classifier"]
    assert classifier_pods and {p["model"] for p in classifier_pods} == {release.first_version}
    jobs = {j.metadata.name for j in client.BatchV1Api(release.cluster.api_client()).list_namespaced_job(
        release.namespace).items}
    assert {j["name"] for j in got["jobs"]} == jobs
    assert all(j["state"] == "Complete" for j in got["jobs"])
    assert [c["name"] for c in got["claims"]] == [release.claim] and got["claims"][0]["phase"] == "Bound"
    assert {a["kind"] for a in got["autoscalers"]} == {"ScaledObject"} and len(got["autoscalers"]) == 2
    assert got["broker"].startswith("reachable")

    table = ppg_mi(release, *in_release(release, "status"))
    assert table.returncode == 0, table.stderr
    print(table.stdout)
    for name in workloads:
        assert re.search(rf"^{re.escape(name)}\s", table.stdout, re.M), table.stdout
    assert release.first_version in table.stdout and "KEDA" in table.stdout
    assert "Traceback" not in table.stderr


def test_status_errors_are_one_line_with_their_exit_codes(release: Release, tmp_path: Path) -> None:
    def one_line_error(result: subprocess.CompletedProcess, code: int, pattern: str) -> None:
        assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(pattern, lines[0]), result.stderr

    one_line_error(ppg_mi(release, "status", "--release", "nope", "--namespace", release.namespace),
                   4, r"release nope not found in namespace")
    one_line_error(ppg_mi(release, *in_release(release, "status", "--context", "elsewhere")), 3,
                   r"context 'elsewhere' is not in")
    one_line_error(ppg_mi(release, "status", env={"KUBECONFIG": str(tmp_path / "none"), "HOME": str(tmp_path)}),
                   3, r"no kubeconfig")

    # a ServiceAccount with no rights at all: forbidden
    release.core.create_namespaced_service_account(release.namespace, client.V1ServiceAccount(
        metadata=client.V1ObjectMeta(name="nobody")))
    kubeconfig = account_kubeconfig(release, "nobody", tmp_path)
    one_line_error(ppg_mi(release, "status", "--kubeconfig", str(kubeconfig)), 5, r"forbidden: .*list deployments")

    # the helm test pod's read-only ServiceAccount: status works, the model column says exec is
    # forbidden, and scale is refused by RBAC before anything changed
    reader = account_kubeconfig(release, f"{RELEASE}-ppg-mi-test-check", tmp_path)
    result = ppg_mi(release, "status", "--json", "--kubeconfig", str(reader))
    assert result.returncode == 0, result.stderr
    assert {p["model"] for p in json.loads(result.stdout)["pods"] if p["component"] == "classifier"} == {
        "unknown (forbidden)"}
    one_line_error(ppg_mi(release, "scale", "classifier", "2", "--kubeconfig", str(reader)), 5,
                   r"forbidden: .*patch scaledobject")
    assert PAUSED not in (scaled_object(release, "classifier")["metadata"].get("annotations") or {})

    # the broker unreachable: the API's view is still shown, without lag
    dead = f"127.0.0.1:{free_port()}"
    result = ppg_mi(release, *in_release(release, "status", "--json", "--bootstrap", dead, "--no-models"))
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    assert got["broker"].startswith("unreachable") and all(d["lag"] is None for d in got["workloads"])
    assert len(got["workloads"]) == 3


def test_scale_classifier_with_keda_paused_1_3_1_and_resume(release: Release) -> None:
    started = time.monotonic()
    up = ppg_mi(release, *in_release(release, "scale", "classifier", "3"))
    assert up.returncode == 0, up.stderr
    print(f"scale 1 -> 3 with KEDA paused: {time.monotonic() - started:.1f} s\n{up.stdout}{up.stderr[-400:]}")
    assert "classifier: scaled to 3 (ready)" in up.stdout and f"{PAUSED}=3" in up.stdout
    assert "classifier: " in up.stderr, "a progress line while waiting"
    assert scaled_object(release, "classifier")["metadata"]["annotations"][PAUSED] == "3"
    assert release.ready_replicas("classifier") == 3 and len(release.pods("classifier")) == 3

    status = json.loads(ppg_mi(release, *in_release(release, "status", "--json")).stdout)
    classifier = next(d for d in status["workloads"] if d["component"] == "classifier")
    assert (classifier["desired"], classifier["ready"], classifier["paused_replicas"]) == (3, 3, 3)
    assert {p["model"] for p in status["pods"] if p["component"] == "classifier"} == {release.first_version}

    down = ppg_mi(release, *in_release(release, "scale", "classifier", "1"))
    assert down.returncode == 0, down.stderr
    assert scaled_object(release, "classifier")["metadata"]["annotations"][PAUSED] == "1"
    release.wait_scaled("classifier", 1, timeout=60)

    resumed = ppg_mi(release, *in_release(release, "scale", "classifier", "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert PAUSED not in (scaled_object(release, "classifier")["metadata"].get("annotations") or {})


def test_scale_refuses_more_replicas_than_partitions(release: Release) -> None:
    partitions = release.values["topics"]["partitions"]
    result = ppg_mi(release, *in_release(release, "scale", "classifier", str(partitions + 1)))
    assert result.returncode == 7, (result.stdout, result.stderr)
    assert re.search(rf"refusing {partitions + 1} classifier replicas: filtered-\S+ has {partitions} partitions "
                     r"\(broker ", result.stderr), result.stderr
    # with the broker unreachable the count comes from the release's KafkaTopic
    dead = f"127.0.0.1:{free_port()}"
    result = ppg_mi(release, *in_release(release, "scale", "filter", str(partitions + 1), "--bootstrap", dead))
    assert result.returncode == 7 and "(KafkaTopic " in result.stderr, result.stderr
    assert PAUSED not in (scaled_object(release, "classifier")["metadata"].get("annotations") or {})
    assert release.ready_replicas("classifier") == 1


def test_helm_test_runs_cluster_check(release: Release) -> None:
    # from here first (a user's run), then as the chart's `helm test` pod with its read-only Role
    here = ppg_mi(release, *in_release(release, "check", "--timeout", "120"))
    assert here.returncode == 0, here.stdout + here.stderr
    print(here.stdout)
    assert "check passed" in here.stdout and re.search(r"canary canary-\w+-0: predicted \w+ by model "
                                                       + re.escape(release.first_version), here.stdout), here.stdout
    result = helm(release.cluster, "test", RELEASE, "-n", release.namespace, "--timeout", "5m")
    assert re.search(r"TEST SUITE:\s+ppg-ppg-mi-test-check\s+.*?Phase:\s+Succeeded", result.stdout, re.S), result.stdout
    assert re.search(r"TEST SUITE:\s+ppg-ppg-mi-test\s+.*?Phase:\s+Succeeded", result.stdout, re.S), result.stdout


def test_scale_classifier_with_keda_off_1_3_1(release: Release) -> None:
    """keda.enabled=false: the chart's HPAs (they act: kube-controller-manager runs) own the count;
    scale patches the scale subresource within the HPA's range and says the HPA owns it."""
    values = {**release.values, "keda": {"enabled": False},
              "training": {**release.values["training"], "enabled": False},
              "producer": {**release.values["producer"], "enabled": False}}
    helm(release.cluster, "upgrade", RELEASE, str(cl.CHART), "-n", release.namespace,
         "-f", str(cl.write_values(release.values_file.with_name(f"values-{uuid.uuid4().hex[:6]}.yaml"), values)))
    custom = client.CustomObjectsApi(release.cluster.api_client())
    assert not custom.list_namespaced_custom_object("keda.sh", "v1alpha1", release.namespace, "scaledobjects")["items"]
    for replicas in (3, 1):
        started = time.monotonic()
        result = ppg_mi(release, *in_release(release, "scale", "classifier", str(replicas)))
        assert result.returncode == 0, result.stderr
        print(f"scale to {replicas} with an HPA: {time.monotonic() - started:.1f} s\n{result.stdout}")
        assert f"classifier: scaled to {replicas} (ready)" in result.stdout
        assert "HorizontalPodAutoscaler" in result.stdout and "owns" in result.stdout
        assert release.ready_replicas("classifier") == replicas
    status = json.loads(ppg_mi(release, *in_release(release, "status", "--json", "--no-models")).stdout)
    classifier = next(d for d in status["workloads"] if d["component"] == "classifier")
    assert classifier["autoscaler"] == "hpa" and classifier["desired"] == 1
    # outside the HPA's range (minReplicas 1) the HPA would undo it at once: refused, nothing changed
    refused = ppg_mi(release, *in_release(release, "scale", "classifier", "0"))
    assert refused.returncode == 7 and "HorizontalPodAutoscaler" in refused.stderr and "within 1..3" in refused.stderr, \
        refused.stderr
    assert release.ready_replicas("classifier") == 1
