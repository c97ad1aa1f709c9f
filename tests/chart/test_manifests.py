"""The Kafka cluster manifests, skaffold.yaml and the Dockerfile, checked against real schemas."""

from __future__ import annotations

import copy
import json
import re
import shlex

import jsonschema
import pytest
import yaml

from . import chartlib as cl

pytestmark = pytest.mark.chart

STRIMZI = cl.REPO / "k8s" / "strimzi"
MONITORING = cl.REPO / "k8s" / "monitoring"
DOCKERFILE = cl.REPO / "images" / "Dockerfile"


def _docs(path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _merge(base: dict, patch: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in patch.items():
        out[k] = _merge(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


@pytest.mark.parametrize("path", sorted(STRIMZI.glob("kafka-*.yaml")) + sorted(MONITORING.glob("*podmonitor.yaml")),
                         ids=lambda p: p.name)
def test_manifest_validates_against_the_crds(path) -> None:
    docs = _docs(path)
    assert docs
    for doc in docs:
        cl.validate_custom(doc)


def test_rack_awareness_patch_yields_a_valid_kafka() -> None:
    (kafka,) = [d for d in _docs(STRIMZI / "kafka-prod.yaml") if d["kind"] == "Kafka"]
    patched = _merge(kafka, yaml.safe_load((STRIMZI / "rack-awareness.patch.yaml").read_text()))
    cl.validate_custom(patched)
    assert patched["spec"]["kafka"]["rack"]["topologyKey"] == "topology.kubernetes.io/zone"


def _cluster(path) -> tuple[dict, list[dict]]:
    docs = _docs(path)
    (kafka,) = [d for d in docs if d["kind"] == "Kafka"]
    pools = [d for d in docs if d["kind"] == "KafkaNodePool"]
    assert all(p["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"] for p in pools)
    return kafka, pools


def test_dev_and_prod_sizes() -> None:
    kafka, pools = _cluster(STRIMZI / "kafka-dev.yaml")
    assert [(p["spec"]["replicas"], sorted(p["spec"]["roles"]), p["spec"]["storage"]["type"]) for p in pools] == [
        (1, ["broker", "controller"], "ephemeral")]
    assert kafka["spec"]["kafka"]["config"]["transaction.state.log.replication.factor"] == 1

    kafka, pools = _cluster(STRIMZI / "kafka-prod.yaml")
    shape = sorted((p["spec"]["roles"], p["spec"]["replicas"]) for p in pools)
    assert shape == [(["broker"], 3), (["controller"], 3)]
    assert all("persistent" in json.dumps(p["spec"]["storage"]) for p in pools)
    config = kafka["spec"]["kafka"]["config"]
    assert config["min.insync.replicas"] == 2 and config["default.replication.factor"] == 3
    assert config["transaction.state.log.min.isr"] == 2


@pytest.mark.parametrize("path", sorted(STRIMZI.glob("kafka-*.yaml")), ids=lambda p: p.name)
def test_cluster_matches_what_the_chart_expects(path) -> None:
    kafka, _ = _cluster(path)
    spec = kafka["spec"]["kafka"]
    assert spec["version"] == "4.3.1"
    assert spec["metricsConfig"]["type"] in ("strimziMetricsReporter", "jmxPrometheusExporter")
    assert "topicOperator" in kafka["spec"]["entityOperator"] and "userOperator" in kafka["spec"]["entityOperator"]
    values = yaml.safe_load((cl.CHART / "values.yaml").read_text())
    assert kafka["metadata"]["name"] == values["kafka"]["clusterName"]
    # each chart auth type reaches a listener with that authentication on the port the chart uses
    listeners = {l["port"]: l for l in spec["listeners"]}
    for auth, port in values["kafka"]["listenerPorts"].items():
        if port not in listeners:
            assert auth == "none" and "prod" in path.name, f"{path.name}: no listener on {port} for auth {auth}"
            continue
        listener = listeners[port]
        assert listener.get("authentication", {}).get("type", "none") == auth
        assert listener["tls"] is (auth != "none")
    assert spec["config"]["auto.create.topics.enable"] is False, "topics come from KafkaTopics only"


def test_skaffold_config_validates_and_points_at_the_chart() -> None:
    schema = json.loads((cl.shared_dir() / "schemas" / "skaffold-v4beta14.json").read_text())
    config = yaml.safe_load((cl.REPO / "skaffold.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(config)
    broken = copy.deepcopy(config)
    broken["build"]["artifacts"][0]["docker"]["dockerfil"] = "x"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(broken)  # the schema rejects typos: the check is real

    assert config["apiVersion"] == "skaffold/v4beta14"
    (artifact,) = config["build"]["artifacts"]
    assert (cl.REPO / artifact["context"] / artifact["docker"]["dockerfile"]).is_file()
    (release,) = config["deploy"]["helm"]["releases"]
    assert (cl.REPO / release["chartPath"] / "Chart.yaml").is_file()
    image_var = "IMAGE_REPO_" + re.sub(r"[^A-Za-z0-9]", "_", artifact["image"])
    assert image_var in release["setValueTemplates"]["image.repository"]
    assert {p["name"] for p in config["profiles"]} >= {"kind", "minikube"}
    # the forwarded dashboard Service is the one the chart renders for this release and namespace
    objects = cl.render([cl.REPO / v for v in release["valuesFiles"]], release=release["name"],
                        namespace=release["namespace"])
    services = {(s["metadata"]["name"], p["port"]) for s in cl.of_kind(objects, "Service") for p in s["spec"]["ports"]}
    forwards = [f for f in config["portForward"] if f["namespace"] == release["namespace"]]
    assert forwards and all((f["resourceName"], f["port"]) in services for f in forwards)
    assert any(f["resourceName"].endswith("grafana") for f in config["portForward"])


def _instructions(stage_text: str) -> list[tuple[str, str]]:
    joined, buf = [], ""
    for line in stage_text.splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue
        buf += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            word, _, rest = buf.strip().partition(" ")
            joined.append((word.upper(), rest))
            buf = ""
    return joined


def test_dockerfile_is_multi_stage_pinned_non_root_and_installs_from_the_lock() -> None:
    instructions = _instructions(DOCKERFILE.read_text())
    args = {rest.split("=", 1)[0]: rest.split("=", 1)[1] for w, rest in instructions if w == "ARG" and "=" in rest}
    stages = [rest for w, rest in instructions if w == "FROM"]
    assert len(stages) >= 2, "multi-stage"
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base), f"unpinned base {base}"
    runtime = instructions[[i for i, (w, _) in enumerate(instructions) if w == "FROM"][-1]:]
    user = [rest for w, rest in runtime if w == "USER"][-1]
    uid = int(user.split(":")[0])
    values = yaml.safe_load((cl.CHART / "values.yaml").read_text())
    assert uid != 0 and uid == values["securityContext"]["runAsUser"]
    assert json.loads([rest for w, rest in runtime if w == "ENTRYPOINT"][-1]) == ["ppg-mi"]
    installs = [rest for w, rest in instructions if w == "RUN" and "pip install" in rest]
    build_env = dict(p.split("=", 1) for w, rest in instructions[:len(instructions) - len(runtime)] if w == "ENV"
                     for p in shlex.split(rest))
    # PIP_CONSTRAINT, unlike `-c`, also pins the build backend in pip's isolated build environment
    assert installs and build_env.get("PIP_CONSTRAINT", "").endswith("/constraints.txt")
    assert not any("[test]" in r for r in installs), "the runtime image has no test dependencies"
    assert not any(w == "RUN" and "pip install" in rest for w, rest in runtime), "runtime stage only copies the venv"
    # that every path the roles write is one the chart mounts is proven by running them from the
    # image on a read-only root filesystem (tests/image)
