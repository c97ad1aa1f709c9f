"""The documented installs give the pods and KEDA every Secret and topic they read (issue #18, item 11).

Each documented install is run command by command against a simulation of Strimzi's documented
namespace behaviour (``tests/chart/strimzi.py``): the repository's ``k8s/strimzi`` Kafka applied
where the docs apply it, the operators watching what the docs make them watch, the chart rendered
with the values the docs prescribe. Only Secrets that Strimzi writes under its rules, or that a
documented command creates, exist; then every Secret a pod (``secretKeyRef``, volumes) or a KEDA
TriggerAuthentication reads must exist in the namespace it reads from, and every topic a service or
a ScaledObject uses must be created by the Topic Operator of the Kafka the bootstrap address names.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from . import chartlib as cl
from . import strimzi

pytestmark = pytest.mark.chart

DOCS = cl.REPO / "docs" / "kubernetes.md"
K8S_README = cl.REPO / "k8s" / "README.md"
SKAFFOLD = cl.REPO / "skaffold.yaml"
PROD_SECTION = "2."  # "## 2. On a cloud cluster: helm"
PROD_VALUES_NAME = "prod.yaml"


def dev_commands() -> list[list[str]]:
    """``make cluster`` as k8s/README.md lists it, then the chart as skaffold.yaml deploys it."""
    commands = [c for _, block in strimzi.fenced_blocks(K8S_README.read_text(), "bash")
                for c in strimzi.shell_commands(block)]
    (release,) = yaml.safe_load(SKAFFOLD.read_text())["deploy"]["helm"]["releases"]
    helm = ["helm", "upgrade", "--install", release["name"], release["chartPath"], "-n", release["namespace"]]
    for values in release.get("valuesFiles", []):
        helm += ["-f", values]
    return [*commands, helm]


def prod_commands_and_values(tmp_path: Path) -> tuple[list[list[str]], dict[str, Path]]:
    """The bash blocks of docs/kubernetes.md section 2 in order, and its `prod.yaml` block."""
    text = strimzi.section(DOCS.read_text(), PROD_SECTION)
    commands = [c for _, block in strimzi.fenced_blocks(text, "bash") for c in strimzi.shell_commands(block)]
    mention = text.index(f"`{PROD_VALUES_NAME}`")
    values = next(body for offset, body in strimzi.fenced_blocks(text, "yaml") if offset > mention)
    path = tmp_path / PROD_VALUES_NAME
    path.write_text(values)
    return commands, {PROD_VALUES_NAME: path}


def install(profile: str, auth: str, tmp_path: Path) -> strimzi.DocumentedInstall:
    """Run a documented install with ``kafka.auth.type`` set to ``auth`` on top of its values."""
    extra = [cl.write_values(tmp_path / "auth.yaml", {"kafka": {"auth": {"type": auth}}})]
    if profile == "dev":
        values = {f: cl.REPO / f for c in dev_commands() for i, f in enumerate(c) if i and c[i - 1] == "-f"}
        return strimzi.DocumentedInstall(values, extra).run(dev_commands())
    commands, values = prod_commands_and_values(tmp_path)
    return strimzi.DocumentedInstall(values, extra).run(commands)


CASES = [("dev", "none"), ("dev", "scram-sha-512"), ("dev", "tls"), ("prod", "scram-sha-512"), ("prod", "tls")]


@pytest.mark.parametrize("profile, auth", CASES, ids=[f"{p}-{a}" for p, a in CASES])
def test_documented_install_has_every_secret_and_topic_the_pods_read(profile: str, auth: str, tmp_path: Path) -> None:
    done = install(profile, auth, tmp_path)
    ((namespace, objects),) = done.releases
    unmet = done.unmet()
    assert not unmet, f"{profile} with kafka.auth.type={auth}:\n" + "\n".join(unmet)

    # the check had something to check: pods that read Kafka, and with auth the Strimzi-made Secrets
    readers = [o for o in objects if cl.pod_spec(o) and any(
        e["name"] == "PPG_MI_KAFKA_BOOTSTRAP_SERVERS" for c in cl.pod_spec(o)["containers"] for e in c.get("env", []))]
    assert len(readers) >= 4
    users = done.cluster.of_kind("KafkaUser")
    secrets = {s["metadata"]["name"]: s for s in done.cluster.of_kind("Secret")}
    if auth == "none":
        assert not users
    else:
        assert len(users) == 4 and all(u["metadata"]["namespace"] == namespace for u in users)
        assert all("user operator" in secrets[u["metadata"]["name"]]["metadata"]["annotations"]["created-by"]
                   for u in users)
    assert len(cl.of_kind(objects, "ScaledObject")) == 2

    # every object the install applies is one the API server (and the CRDs) would accept
    failures = []
    for obj in [*objects, *(o for o in done.cluster.objects.values() if o["kind"] != "Secret")]:
        try:
            cl.validate_object(obj)
        except Exception as exc:  # noqa: BLE001 - collect every failure with its object
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {getattr(exc, 'message', exc)}")
    assert not failures, "\n".join(failures)


def test_prod_install_puts_kafka_and_the_release_in_their_own_namespaces(tmp_path: Path) -> None:
    """What the prod docs prescribe is the case of the issue: Kafka and the chart apart."""
    done = install("prod", "scram-sha-512", tmp_path)
    ((namespace, _),) = done.releases
    (kafka,) = done.cluster.of_kind("Kafka")
    assert kafka["metadata"]["namespace"] != namespace
    _, user_ns = done.cluster.entity_namespaces(kafka)
    assert user_ns == namespace, "the User Operator watches the release namespace"


def test_prod_cluster_refuses_auth_none(tmp_path: Path) -> None:
    """The simulation checks listeners: the prod Kafka has no plain listener for auth type none."""
    unmet = install("prod", "none", tmp_path).unmet()
    assert unmet and all("no listener on port 9092" in line for line in unmet), unmet


def test_the_check_sees_secrets_strimzi_would_not_write(tmp_path: Path) -> None:
    """Not vacuous: KafkaUsers in the Kafka namespace (the layout before the fix) or a missing copy of
    the cluster CA leave the pods' and KEDA's Secrets missing, and the check says which."""
    done = install("prod", "tls", tmp_path)
    ((namespace, objects),) = done.releases
    (kafka,) = done.cluster.of_kind("Kafka")
    kafka_ns = kafka["metadata"]["namespace"]
    cluster = strimzi.Cluster(operator_namespaces=set(done.cluster.operator_namespaces))
    for obj in done.cluster.objects.values():
        if obj["kind"] == "Secret" and "created-by" in obj["metadata"].get("annotations", {}) and (
                "strimzi" in obj["metadata"]["annotations"]["created-by"]):
            continue  # Strimzi writes these again
        moved = dict(obj, metadata=dict(obj["metadata"], namespace=kafka_ns)) if obj["kind"] == "KafkaUser" else obj
        if obj["kind"] == "Secret" and obj["metadata"]["namespace"] == namespace:
            continue  # and no copy of the cluster CA
        cluster.apply([moved], moved["metadata"]["namespace"])
    unmet = "\n".join(strimzi.unmet_needs(cluster, objects, namespace))
    for component in ("producer", "filter", "classifier", "dashboard"):
        assert f"Secret {namespace}/ppg-ppg-mi-{component} does not exist" in unmet, unmet
    assert "TriggerAuthentication" in unmet and "parameter ca" in unmet and "volume kafka-ca" in unmet, unmet
