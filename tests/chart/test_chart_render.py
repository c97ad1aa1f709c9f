"""The chart through the real helm: lint, render a matrix of values, validate, enforce policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ppg_mi.cli import build_parser
from ppg_mi.config import Settings, parse_target_sensitivity
from ppg_mi.streaming.clients import transactional_producer_config

from . import chartlib as cl
from . import strimzi

pytestmark = pytest.mark.chart
from .podenv import resolve_env

# name → values overriding the defaults; together they cover every branch of the templates
MATRIX: dict[str, dict] = {
    "defaults": {},
    "keda-off": {"keda": {"enabled": False}},
    "autoscaling-off": {"filter": {"autoscaling": {"enabled": False}, "replicas": 2},
                        "classifier": {"autoscaling": {"enabled": False}, "replicas": 2}},
    "auth-scram": {"kafka": {"auth": {"type": "scram-sha-512"}}},
    # Kafka in another namespace: the pods trust a copy of its cluster CA made in theirs
    "auth-tls": {"kafka": {"auth": {"type": "tls"}, "namespace": "kafka", "clusterCaSecret": "ppg-kafka-cluster-ca-cert"}},
    "ingress": {"dashboard": {"ingress": {"enabled": True, "className": "nginx", "host": "ppg.example.org",
                                          "tlsSecret": "ppg-tls"}},
                "networkPolicy": {"dashboardFrom": [{"namespaceSelector": {"matchLabels": {
                    "kubernetes.io/metadata.name": "ingress-nginx"}}}]}},
    "prod": {"kafka": {"namespace": "kafka", "auth": {"type": "scram-sha-512"}, "clusterCaSecret": "ppg-kafka-cluster-ca-cert"},
             "topics": {"partitions": 12, "replicas": 3},
             "producer": {"shards": 8, "parallelism": 4, "dataFile": "ppg/train.csv", "dataClaim": "ppg-data"},
             "filter": {"autoscaling": {"maxReplicas": 12, "lagThreshold": 500, "activationLagThreshold": 20},
                        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"},
                                      "limits": {"cpu": "2", "memory": "1Gi"}}},
             "classifier": {"autoscaling": {"minReplicas": 2, "maxReplicas": 12}},
             "models": {"pvc": {"accessModes": ["ReadWriteMany"], "size": "10Gi", "storageClassName": "standard-rwx"}},
             "dashboard": {"replicas": 2, "ingress": {"enabled": True}}},
    # single-node clusters without a pod network (the cluster tier's node)
    "host-network": {"hostNetwork": {"enabled": True}, "monitoring": {"podMonitors": {"enabled": False}}},
    "minimal": {"dashboard": {"enabled": False}, "producer": {"enabled": False}, "training": {"enabled": False},
                "topics": {"create": False}, "networkPolicy": {"enabled": False}, "serviceAccount": {"create": False},
                "monitoring": {"podMonitors": {"enabled": False}, "prometheusRule": {"enabled": False},
                               "grafanaDashboards": {"enabled": False}},
                "models": {"pvc": {"create": False, "existingClaim": "models"}}, "tests": {"enabled": False}},
}
DEV_VALUES = cl.CHART / "values-dev.yaml"
ROLE_GROUP = {"filter": "group_filter", "classify": "group_classifier"}
ROLE_INPUT = {"filter": "topic_raw", "classify": "topic_filtered"}
ROLE_OF_COMPONENT = {"filter": "filter", "classifier": "classifier"}


def _values_files(name: str, tmp_path: Path) -> list[Path]:
    if name == "dev":
        return [DEV_VALUES]
    return [cl.write_values(tmp_path / f"{name}.yaml", MATRIX[name])]


CASES = [*MATRIX, "dev"]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    tmp = tmp_path_factory.mktemp("values")
    return {name: cl.render(_values_files(name, tmp)) for name in CASES}


@pytest.fixture(scope="module")
def clusters(rendered: dict[str, list[dict]]) -> dict[str, strimzi.Cluster]:
    """Each case's release on a simulated Strimzi (tests/chart/strimzi.py): the only Secrets that
    exist are the ones Strimzi writes under its documented rules, and the documented CA copy."""
    out = {}
    for name, objects in rendered.items():
        kafka = MATRIX.get(name, {}).get("kafka", {})
        out[name] = strimzi.cluster_for_release(objects, cl.NAMESPACE, kafka.get("namespace", ""),
                                                kafka.get("clusterCaSecret", ""))
    return out


@pytest.mark.parametrize("name", CASES)
def test_every_secret_and_topic_the_release_reads_exists(name: str, rendered: dict[str, list[dict]],
                                                         clusters: dict[str, strimzi.Cluster]) -> None:
    """Where Strimzi writes them (a Secret per KafkaUser in its namespace, the cluster CA in the
    Kafka's), not invented where the pods look; topics only when the chart creates them."""
    unmet = strimzi.unmet_needs(clusters[name], rendered[name], cl.NAMESPACE) + clusters[name].problems
    if name == "minimal":  # topics.create=false: the topics are managed elsewhere
        unmet = [line for line in unmet if not line.startswith("topic ")]
    assert not unmet, "\n".join(unmet)


@pytest.mark.parametrize("name", CASES)
def test_helm_lint_strict(name: str, tmp_path: Path) -> None:
    args = ["lint", "--strict", str(cl.CHART), "--kube-version", cl.KUBE_VERSION, "--namespace", cl.NAMESPACE]
    for f in _values_files(name, tmp_path):
        args += ["-f", str(f)]
    result = cl.helm(*args)
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("name", CASES)
def test_every_rendered_object_validates(name: str, rendered: dict[str, list[dict]]) -> None:
    objects = rendered[name]
    assert objects, "nothing rendered"
    failures = []
    for obj in objects:
        try:
            cl.validate_object(obj)
        except Exception as exc:  # noqa: BLE001 - collect every failure with its object
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {getattr(exc, 'message', exc)}")
    assert not failures, "\n".join(failures)
    names = [(o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")) for o in objects]
    assert len(names) == len(set(names)), "two objects share kind, name and namespace"


def test_validation_rejects_what_the_cluster_would() -> None:
    """The validators are not vacuous: a misspelt field fails for core and custom kinds alike."""
    objects = cl.render()
    topic = json.loads(json.dumps(cl.of_kind(objects, "KafkaTopic")[0]))
    topic["spec"]["partitons"] = topic["spec"].pop("partitions")
    with pytest.raises(Exception, match="partitons"):
        cl.validate_object(topic)
    scaled = json.loads(json.dumps(cl.of_kind(objects, "ScaledObject")[0]))
    scaled["spec"]["maxReplicas"] = 3
    with pytest.raises(Exception, match="maxReplicas"):
        cl.validate_object(scaled)
    deployment = json.loads(json.dumps(cl.of_kind(objects, "Deployment")[0]))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(Exception, match="livenesProbe"):
        cl.validate_object(deployment)


def test_expected_objects_per_case(rendered: dict[str, list[dict]]) -> None:
    kinds = {name: sorted({o["kind"] for o in objs}) for name, objs in rendered.items()}
    assert {"ScaledObject", "KafkaTopic", "PodMonitor", "PodDisruptionBudget", "NetworkPolicy",
            "PersistentVolumeClaim", "Job", "Service", "ServiceAccount", "Pod"} <= set(kinds["defaults"])
    assert "HorizontalPodAutoscaler" not in kinds["defaults"]
    assert "ScaledObject" not in kinds["keda-off"] and "HorizontalPodAutoscaler" in kinds["keda-off"]
    assert not {"ScaledObject", "HorizontalPodAutoscaler"} & set(kinds["autoscaling-off"])
    for auth in ("auth-scram", "auth-tls", "prod"):
        assert len(cl.of_kind(rendered[auth], "KafkaUser")) == 4, auth
        assert len(cl.of_kind(rendered[auth], "TriggerAuthentication")) == 2, auth
    assert "KafkaUser" not in kinds["defaults"]
    assert "Ingress" in kinds["ingress"] and "Ingress" not in kinds["defaults"]
    assert sorted(o["metadata"]["name"] for o in cl.of_kind(rendered["minimal"], "StatefulSet")) == [
        "ppg-ppg-mi-classifier", "ppg-ppg-mi-filter"]
    assert not cl.of_kind(rendered["minimal"], "Deployment")
    producer = next(j for j in cl.of_kind(rendered["prod"], "Job") if "producer" in j["metadata"]["name"])
    assert producer["spec"]["completionMode"] == "Indexed" and producer["spec"]["completions"] == 8


# --- policy ------------------------------------------------------------------------------------------
RUN_TO_COMPLETION = ("training", "test")  # components without an HTTP server: a deadline instead of probes


def _component(obj: dict) -> str:
    return cl.pod_labels(obj).get("app.kubernetes.io/component", "")


@pytest.mark.parametrize("name", CASES)
def test_policy_every_container_is_bounded_probed_and_restricted(name: str, rendered: dict[str, list[dict]]) -> None:
    for obj, spec in cl.workloads(rendered[name]):
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        pod_sc = spec.get("securityContext", {})
        assert pod_sc.get("runAsNonRoot") is True and pod_sc.get("runAsUser", 0) > 0, where
        assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        if obj["metadata"]["name"].endswith("-test-check"):
            # the `ppg-mi cluster check` test pod reads its release through the API: its own
            # ServiceAccount, bound to a read-only Role (tests/rbac.yaml)
            assert spec.get("automountServiceAccountToken") is True and spec["serviceAccountName"].endswith(
                "-test-check"), where
            _assert_check_role_reads_only(rendered[name], spec["serviceAccountName"])
        else:
            assert spec.get("automountServiceAccountToken") is False, where
        for container in spec.get("initContainers", []) + spec["containers"]:
            cwhere = f"{where}/{container['name']}"
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container.get("resources", {}).get(kind, {})), f"{cwhere}: {kind}"
            sc = container.get("securityContext", {})
            assert sc.get("allowPrivilegeEscalation") is False, cwhere
            assert sc.get("readOnlyRootFilesystem") is True, cwhere
            assert sc.get("runAsNonRoot") is True, cwhere
            assert sc.get("capabilities", {}).get("drop") == ["ALL"] and not sc["capabilities"].get("add"), cwhere
            assert sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", cwhere
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert {"/tmp", "/home/ppg"} <= mounts, f"{cwhere}: writable /tmp and HOME on volumes"
        for container in spec["containers"]:
            cwhere = f"{where}/{container['name']}"
            if _component(obj) in RUN_TO_COMPLETION:
                assert spec.get("activeDeadlineSeconds") or obj["spec"].get("activeDeadlineSeconds"), cwhere
                continue
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            env = cl.env_map(container)
            for probe in ("livenessProbe", "readinessProbe"):
                assert probe in container, f"{cwhere}: {probe}"
                if spec.get("hostNetwork"):
                    # replicas on one node's network cannot share a port: each binds a free one,
                    # written to PPG_MI_METRICS_PORT_FILE, which `ppg-mi probe` reads
                    command = container[probe]["exec"]["command"]
                    assert command[:2] == ["ppg-mi", "probe"], f"{cwhere}: {probe} {command}"
                    assert env["PPG_MI_METRICS_PORT"]["value"] == "0" and env["PPG_MI_METRICS_PORT_FILE"], cwhere
                    assert env["PPG_MI_METRICS_PORT_FILE"]["value"].startswith("/tmp/"), f"{cwhere}: on a volume"
                    assert "metrics" not in ports, f"{cwhere}: a fixed metrics port would become a hostPort"
                    continue
                get = container[probe]["httpGet"]
                assert get["port"] in ports, f"{cwhere}: {probe} names a port the container does not declare"
            if not spec.get("hostNetwork"):
                assert int(env["PPG_MI_METRICS_PORT"]["value"]) == ports["metrics"], cwhere
        if obj["kind"] in ("Deployment", "StatefulSet") or (obj["kind"] == "Job" and _component(obj) == "producer"):
            shutdown = max(float(cl.env_map(c).get("PPG_MI_SHUTDOWN_TIMEOUT_S", {}).get("value", 0))
                           for c in spec["containers"])
            assert spec["terminationGracePeriodSeconds"] >= shutdown + 10, where
        if obj["kind"] == "Job" and _component(obj) == "producer":
            # the producer's send loop reports no heartbeat: liveness must not expire before the deadline
            env = cl.env_map(spec["containers"][0])
            assert float(env["PPG_MI_LIVENESS_TIMEOUT_S"]["value"]) >= obj["spec"]["activeDeadlineSeconds"], where


def _assert_check_role_reads_only(objects: list[dict], account: str) -> None:
    (binding,) = [b for b in cl.of_kind(objects, "RoleBinding") if b["metadata"]["name"] == account]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": binding["subjects"][0]["namespace"]}]
    assert binding["roleRef"]["kind"] == "Role"
    role = cl.by_name(objects, "Role", binding["roleRef"]["name"])
    granted = {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert granted == {("apps", "deployments"), ("apps", "statefulsets"), ("batch", "jobs"), ("", "pods"), ("", "persistentvolumeclaims"),
                       ("autoscaling", "horizontalpodautoscalers"), ("keda.sh", "scaledobjects")}
    assert all(rule["verbs"] == ["get", "list"] for rule in role["rules"])
    assert not cl.of_kind(objects, "ClusterRole") and not cl.of_kind(objects, "ClusterRoleBinding")


@pytest.mark.parametrize("name", CASES)
def test_policy_env_is_known_settings_and_args_parse(name: str, rendered: dict[str, list[dict]],
                                                     clusters: dict[str, strimzi.Cluster]) -> None:
    known = {row[0] for row in Settings.describe()}
    parser = build_parser()
    for obj, spec in cl.workloads(rendered[name]):
        for container in spec["containers"]:
            if container["command"] != ["ppg-mi"]:
                continue
            names = [e["name"] for e in container.get("env", [])]
            unknown = {n for n in names if n.startswith("PPG_MI_")} - known
            assert not unknown, f"{obj['metadata']['name']}: not settings of ppg_mi.config: {unknown}"
            assert len(names) == len(set(names)), "an env var is set twice"
            settings = Settings.from_env(resolve_env(container, pod_name="pod-0",
                                                     secrets=clusters[name].resolver(cl.NAMESPACE)))
            parser.parse_args(container["args"])  # exits (fails the test) on an argument the CLI lacks
            if container["args"][0] == "produce":
                assert settings.producer_shard == f"0/{obj['spec']['completions']}"


@pytest.mark.parametrize("name", CASES)
def test_policy_scaling_matches_what_the_process_consumes(name: str, rendered: dict[str, list[dict]],
                                                          clusters: dict[str, strimzi.Cluster]) -> None:
    objects = rendered[name]
    partitions = {t["spec"]["topicName"]: t["spec"]["partitions"] for t in cl.of_kind(objects, "KafkaTopic")}
    values = yaml.safe_load((cl.CHART / "values.yaml").read_text())
    for scaler in cl.of_kind(objects, "ScaledObject") + cl.of_kind(objects, "HorizontalPodAutoscaler"):
        # the stages are StatefulSets (stable pod names: #18 item 7); KEDA and the HPA scale them
        assert scaler["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"
        assert scaler["spec"]["scaleTargetRef"]["apiVersion"] == "apps/v1"
        target = cl.by_name(objects, "StatefulSet", scaler["spec"]["scaleTargetRef"]["name"])
        container = target["spec"]["template"]["spec"]["containers"][0]
        role = container["args"][0]
        settings = Settings.from_env(resolve_env(container, pod_name="pod-0",
                                                 secrets=clusters[name].resolver(cl.NAMESPACE)))
        n_partitions = partitions.get(getattr(settings, ROLE_INPUT[role]), settings.topic_partitions)
        assert "replicas" not in target["spec"], "an autoscaled StatefulSet leaves replicas to the scaler"
        if scaler["kind"] == "HorizontalPodAutoscaler":
            assert 1 <= scaler["spec"]["minReplicas"] <= scaler["spec"]["maxReplicas"] <= n_partitions
            continue
        spec = scaler["spec"]
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= n_partitions
        (trigger,) = spec["triggers"]
        meta = trigger["metadata"]
        assert trigger["type"] == "kafka"
        # the group and topic KEDA measures are the ones the service's own code consumes with
        assert meta["consumerGroup"] == getattr(settings, ROLE_GROUP[role]), name
        assert meta["topic"] == getattr(settings, ROLE_INPUT[role])
        assert meta["bootstrapServers"] == settings.bootstrap_servers
        assert int(meta["activationLagThreshold"]) > n_partitions, "idle transactional lag is 1 per partition"
        assert int(meta["lagThreshold"]) >= 1
        if settings.kafka_security_protocol != "PLAINTEXT":
            auth = cl.by_name(objects, "TriggerAuthentication", trigger["authenticationRef"]["name"])
            params = {r["parameter"] for r in auth["spec"].get("secretTargetRef", [])} | {
                r["parameter"] for r in auth["spec"].get("env", [])}
            wanted = {"ca", "username", "password"} if meta.get("sasl") else {"ca", "cert", "key"}
            assert params == wanted
    assert values["filter"]["autoscaling"]["minReplicas"] >= 1


@pytest.mark.parametrize("name", ["auth-scram", "auth-tls", "prod"])
def test_policy_kafka_users_are_limited_to_their_service(name: str, rendered: dict[str, list[dict]],
                                                         clusters: dict[str, strimzi.Cluster]) -> None:
    objects = rendered[name]
    users = {u["metadata"]["labels"]["app.kubernetes.io/component"]: u for u in cl.of_kind(objects, "KafkaUser")}
    workloads = {_component(o): s["containers"][0] for o, s in cl.workloads(objects)}
    for component, user in users.items():
        container = workloads[component]
        settings = Settings.from_env(resolve_env(container, pod_name="pod-0",
                                                 secrets=clusters[name].resolver(cl.NAMESPACE)))
        acls = user["spec"]["authorization"]["acls"]
        grants = {(a["resource"]["type"], a["resource"]["name"], a["resource"]["patternType"]): set(a["operations"])
                  for a in acls}
        role = container["args"][0]
        expected_topics = {
            "produce": {settings.topic_raw: {"Write", "Describe"}},
            "filter": {settings.topic_raw: {"Read", "Describe"}, settings.topic_filtered: {"Write", "Describe"},
                       settings.topic_dlq: {"Write", "Describe"}},
            "classify": {settings.topic_filtered: {"Read", "Describe"},
                         settings.topic_predictions: {"Write", "Describe"}, settings.topic_dlq: {"Write", "Describe"}},
            "dashboard": {t: {"Read", "Describe"} for t in (settings.topic_raw, settings.topic_filtered,
                                                             settings.topic_predictions, settings.topic_dlq)},
        }[role]
        topics = {n: ops for (t, n, _), ops in grants.items() if t == "topic"}
        assert topics == expected_topics, component
        groups = {(n, p) for (t, n, p) in grants if t == "group"}
        txns = [(n, p) for (t, n, p) in grants if t == "transactionalId"]
        if role in ROLE_GROUP:
            assert groups == {(getattr(settings, ROLE_GROUP[role]), "literal")}
            txn_role = {"filter": "filter", "classify": "classifier"}[role]
            real_id = transactional_producer_config(settings, txn_role)["transactional.id"]
            assert len(txns) == 1 and txns[0][1] == "prefix" and real_id.startswith(txns[0][0])
        elif role == "dashboard":
            assert groups == {(settings.group_dashboard, "prefix")} and not txns
        else:
            assert not groups and not txns
        if user["spec"]["authentication"]["type"] == "scram-sha-512":
            assert settings.kafka_sasl_username == user["metadata"]["name"]
        assert user["metadata"]["labels"]["strimzi.io/cluster"] == "ppg-kafka"


@pytest.mark.parametrize("name", CASES)
def test_stages_are_statefulsets_whose_pod_name_is_the_instance_id(name: str, rendered: dict[str, list[dict]]) -> None:
    """A killed stage pod's replacement keeps its name, hence its transactional id: its
    init_transactions aborts the dead pod's open transaction at once (#18 item 7)."""
    objects = rendered[name]
    stages = {_component(o): o for o in cl.of_kind(objects, "StatefulSet")}
    assert set(stages) == {"filter", "classifier"}, name
    assert not [o for o in cl.of_kind(objects, "Deployment") if _component(o) in stages], name
    for component, sts in stages.items():
        where = f"{name}: {component}"
        spec = sts["spec"]
        assert spec["podManagementPolicy"] == "Parallel", where
        assert spec["updateStrategy"]["type"] == "RollingUpdate", where
        # the model claim is the one shared volume, not a claim per pod
        assert "volumeClaimTemplates" not in spec, where
        container = spec["template"]["spec"]["containers"][0]
        identity = cl.env_map(container)["PPG_MI_INSTANCE_ID"]
        assert identity["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name", where
        pdbs = [p for p in cl.of_kind(objects, "PodDisruptionBudget")
                if cl.selects(p["spec"]["selector"]["matchLabels"], cl.pod_labels(sts))]
        assert [p["spec"]["maxUnavailable"] for p in pdbs] in ([1], []), where


@pytest.mark.parametrize("name", CASES)
def test_policy_selectors_and_ports_point_at_real_pods(name: str, rendered: dict[str, list[dict]]) -> None:
    objects = rendered[name]
    pods = [(cl.pod_labels(o), [p for c in s["containers"] for p in c.get("ports", [])]) for o, s in cl.workloads(objects)]

    def matching(selector: dict) -> list[list[dict]]:
        return [ports for labels, ports in pods if cl.selects(selector, labels)]

    for svc in cl.of_kind(objects, "Service"):
        targets = matching(svc["spec"]["selector"])
        assert targets, f"Service {svc['metadata']['name']} selects no pod"
        for port in svc["spec"]["ports"]:
            assert all(any(p["name"] == port["targetPort"] for p in ports) for ports in targets)
    for monitor in cl.of_kind(objects, "PodMonitor"):
        targets = matching(monitor["spec"]["selector"]["matchLabels"])
        assert targets, f"PodMonitor {monitor['metadata']['name']} selects no pod"
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            assert all(any(p["name"] == endpoint["port"] for p in ports) for ports in targets)
    for pdb in cl.of_kind(objects, "PodDisruptionBudget"):
        assert matching(pdb["spec"]["selector"]["matchLabels"]), pdb["metadata"]["name"]
    for policy in cl.of_kind(objects, "NetworkPolicy"):
        targets = matching(policy["spec"]["podSelector"]["matchLabels"])
        assert targets, f"NetworkPolicy {policy['metadata']['name']} selects no pod"
        for rule in policy["spec"].get("ingress", []):
            for port in rule.get("ports", []):
                assert all(any(p["name"] == port["port"] for p in ports) for ports in targets)
    # KafkaTopics together in the Kafka namespace; KafkaUsers in the release namespace, where
    # Strimzi then writes the Secrets the pods read
    assert len({o["metadata"].get("namespace") for o in objects if o["kind"] == "KafkaTopic"}) <= 1
    assert all(o["metadata"]["namespace"] == cl.NAMESPACE for o in objects if o["kind"] == "KafkaUser")
    for obj in objects:
        if obj["kind"] in ("KafkaTopic", "KafkaUser"):
            assert obj["metadata"]["labels"]["strimzi.io/cluster"] == "ppg-kafka"


def test_monitoring_files_are_wrapped_when_present() -> None:
    objects = cl.render()
    dashboards = sorted((cl.CHART / "files" / "dashboards").glob("*.json"))
    configmaps = [c for c in cl.of_kind(objects, "ConfigMap") if c["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert len(configmaps) == len(dashboards)
    for path, cm in zip(dashboards, sorted(configmaps, key=lambda c: next(iter(c["data"])))):
        assert json.loads(cm["data"][path.name]) == json.loads(path.read_text())
    rules_file = cl.CHART / "files" / "alerts" / "ppg-mi-rules.yaml"
    rules = cl.of_kind(objects, "PrometheusRule")
    if rules_file.exists():
        assert len(rules) == 1
        assert rules[0]["spec"]["groups"] == yaml.safe_load(rules_file.read_text())["groups"]
    else:
        print(f"note: {rules_file} is absent, so no PrometheusRule is rendered")
        assert not rules
    if not dashboards:
        print("note: helm/ppg-mi/files/dashboards/ has no dashboards yet, so no ConfigMap is rendered")


@pytest.mark.parametrize("values, message", [
    ({"filter": {"replicaz": 2}}, "additional properties 'replicaz' not allowed"),
    ({"kafka": {"auth": {"type": "plain"}}}, "value must be one of"),
    ({"classifier": {"autoscaling": {"minReplicas": 0}}}, "minimum"),
    ({"topics": {"partitions": 4}}, "exceeds topics.partitions=4"),
    ({"filter": {"autoscaling": {"activationLagThreshold": 6}}}, "must exceed topics.partitions=6"),
    ({"securityContext": {"runAsUser": 0}}, "minimum"),
    ({"producer": {"dataFile": "x.csv"}}, "needs producer.dataClaim"),
    ({"kafka": {"namespace": "kafka", "auth": {"type": "tls"}}}, "kafka.clusterCaSecret is required"),
])
def test_bad_values_fail_to_render(values: dict, message: str, tmp_path: Path) -> None:
    result = cl.render([cl.write_values(tmp_path / "bad.yaml", values)], check=False)
    assert result.returncode != 0, "helm accepted values it should reject"
    assert message in result.stderr, result.stderr


def test_values_are_documented_and_typed_key_by_key() -> None:
    """Every key of values.yaml has a comment above it (a leaf of a documented map may rely on the
    map's comment) and a place in values.schema.json; the defaults satisfy the schema."""
    import re

    import jsonschema

    schema = json.loads((cl.CHART / "values.schema.json").read_text())
    values = yaml.safe_load((cl.CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(values)

    undocumented, stack, prev = [], [], ""
    for number, line in enumerate((cl.CHART / "values.yaml").read_text().splitlines(), 1):
        m = re.match(r"^(\s*)([\w.-]+):(.*)$", line)
        if m:
            indent = len(m.group(1))
            stack = [(i, k, doc) for i, k, doc in stack if i < indent]
            documented = prev.strip().startswith("#")
            parent_documented = bool(stack) and stack[-1][2]
            is_leaf = m.group(3).strip() != ""
            if not documented and not (parent_documented and is_leaf):
                undocumented.append(f"{number}: {line.strip()}")
            stack.append((indent, m.group(2), documented))
        if line.strip():
            prev = line
    assert not undocumented, "keys without a comment:\n" + "\n".join(undocumented)

    def walk(node: object, sub: dict, path: str) -> None:
        if not isinstance(node, dict) or "properties" not in sub:
            return
        for key, value in node.items():
            assert key in sub["properties"], f"{path}{key} is in values.yaml but not in values.schema.json"
            walk(value, sub["properties"][key], f"{path}{key}.")

    walk(values, schema, "")


@pytest.mark.parametrize("value, env", [("", None), (0.9, "0.9"), (0, "0"), (1, "1")])
def test_training_target_sensitivity_reaches_the_training_jobs_env(value: object, env: str | None,
                                                                   tmp_path: Path) -> None:
    """training.targetSensitivity becomes PPG_MI_TARGET_SENSITIVITY of the training Job (0 included: it
    means "no operating point"), a value the setting accepts; empty leaves the code's default."""
    objects = cl.render([cl.write_values(tmp_path / "t.yaml", {"training": {"targetSensitivity": value}})])
    (job,) = [o for o in cl.of_kind(objects, "Job") if _component(o) == "training"]
    (container,) = cl.pod_spec(job)["containers"]
    got = cl.env_map(container).get("PPG_MI_TARGET_SENSITIVITY")
    assert (got and got["value"]) == env
    if env is not None:
        settings = Settings.from_env({"PPG_MI_TARGET_SENSITIVITY": env})  # validates the range
        assert parse_target_sensitivity(settings.target_sensitivity) == (None if env == "0" else float(env))


@pytest.mark.parametrize("value", [1.5, -0.1, "high"])
def test_training_target_sensitivity_outside_0_1_fails_to_render(value: object, tmp_path: Path) -> None:
    result = cl.render([cl.write_values(tmp_path / "bad.yaml", {"training": {"targetSensitivity": value}})],
                       check=False)
    assert result.returncode != 0 and "targetSensitivity" in result.stderr, result.stderr


@pytest.mark.parametrize("name", ["defaults", "keda-off", "ingress", "minimal"])
def test_notes_render(name: str, tmp_path: Path) -> None:
    """NOTES.txt renders (helm template skips it): a copy of the chart renders it into a ConfigMap."""
    import shutil

    chart = tmp_path / "chart"
    shutil.copytree(cl.CHART, chart)
    (chart / "files").mkdir(exist_ok=True)
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "files" / "notes.txt")
    (chart / "templates" / "zz-notes.yaml").write_text(
        'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n'
        'data: {notes: {{ tpl (.Files.Get "files/notes.txt") . | quote }}}\n')
    values = cl.write_values(tmp_path / "v.yaml", MATRIX[name])
    result = cl.helm("template", cl.RELEASE, str(chart), "-n", cl.NAMESPACE, "--kube-version", cl.KUBE_VERSION,
                     "-f", str(values), "--show-only", "templates/zz-notes.yaml")
    notes = yaml.safe_load(result.stdout)["data"]["notes"]
    print(notes)
    assert "helm test ppg -n ppg-mi" in notes
    if name == "ingress":
        assert "https://ppg.example.org/" in notes
    elif name != "minimal":
        assert "port-forward svc/ppg-ppg-mi-dashboard" in notes
    assert ("KEDA ScaledObjects" in notes) == (name != "keda-off")


def test_host_network_pods_bind_only_the_node_address(rendered: dict[str, list[dict]]) -> None:
    """Single-node mode: every pod on the node's network, every process bound to hostNetwork.address
    (127.0.0.1 by default), and the `helm test` pod asking the dashboard there (no cluster DNS)."""
    workloads = cl.workloads(rendered["host-network"])
    assert workloads
    for obj, spec in workloads:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        assert spec.get("hostNetwork") is True and spec.get("dnsPolicy") == "ClusterFirstWithHostNet", where
        for container in spec["containers"]:
            env = cl.env_map(container)
            for name in ("PPG_MI_METRICS_HOST", "PPG_MI_DASHBOARD_HOST"):
                if name in env:
                    assert env[name]["value"] == "127.0.0.1", f"{where}: {name}"
    (test_pod,) = [o for o in rendered["host-network"] if o["kind"] == "Pod" and o["metadata"]["name"].endswith("-test")]
    assert test_pod["spec"]["containers"][0]["args"][-1] == "http://127.0.0.1:8501/"
    assert not cl.of_kind(rendered["host-network"], "NetworkPolicy"), "NetworkPolicies do not apply to host-network pods"
    # on a pod network the processes bind every interface of the pod's own network
    for obj, spec in cl.workloads(rendered["defaults"]):
        assert not spec.get("hostNetwork")
        for container in spec["containers"]:
            env = cl.env_map(container)
            assert env.get("PPG_MI_METRICS_HOST", {"value": "0.0.0.0"})["value"] == "0.0.0.0"


def test_host_network_refuses_pod_monitors(tmp_path: Path) -> None:
    values = cl.write_values(tmp_path / "v.yaml", {"hostNetwork": {"enabled": True}})
    result = cl.render([values], check=False)
    assert result.returncode != 0 and "set monitoring.podMonitors.enabled=false" in result.stderr
