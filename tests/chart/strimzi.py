"""Strimzi's documented namespace behaviour, simulated, and the documented installs run against it.

The chart's pods and KEDA's TriggerAuthentications read Secrets that Strimzi writes; whether those
Secrets exist, and where, depends only on a few rules of Strimzi 1.2 (its documentation: "Watching
Strimzi resources in namespaces", the EntityOperatorSpec / KafkaUser references):

- the Cluster Operator reconciles a ``Kafka`` only in a namespace it watches (the namespace it is
  installed in plus its Helm chart's ``watchNamespaces``), writes the cluster CA certificate to the
  Secret ``<kafka>-cluster-ca-cert`` (``ca.crt``, ``ca.p12``, ``ca.password``) in the Kafka's
  namespace, and deploys the Entity Operator; it creates the Entity Operator's Role in each
  namespace the Topic and User Operators watch, so those must be namespaces it watches too;
- the Topic and User Operators each watch ONE namespace, ``spec.entityOperator.topicOperator
  .watchedNamespace`` / ``userOperator.watchedNamespace``, by default the Kafka's namespace;
- the User Operator handles a ``KafkaUser`` of its watched namespace whose ``strimzi.io/cluster``
  label names its Kafka, and writes the credentials to a Secret with the KafkaUser's name in the
  KafkaUser's namespace (scram-sha-512: ``password``, ``sasl.jaas.config``; tls: ``ca.crt`` of the
  clients CA, ``user.crt``, ``user.key``, ``user.p12``, ``user.password``);
- the Topic Operator creates the topic ``spec.topicName`` (default: the resource's name) of a
  ``KafkaTopic`` of its watched namespace whose ``strimzi.io/cluster`` label names its Kafka.

Nothing else is created: a Secret a pod reads must come from these rules or from a command of the
documented install (``DocumentedInstall`` runs the few kinds of commands the docs use).
"""

from __future__ import annotations

import copy
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import yaml

from . import chartlib as cl

CLUSTER_LABEL = "strimzi.io/cluster"
USER_SECRET_KEYS = {"scram-sha-512": ("password", "sasl.jaas.config"),
                    "tls": ("ca.crt", "user.crt", "user.key", "user.p12", "user.password")}
CLUSTER_CA_KEYS = ("ca.crt", "ca.p12", "ca.password")
TOPIC_ENV = ("PPG_MI_TOPIC_RAW", "PPG_MI_TOPIC_FILTERED", "PPG_MI_TOPIC_PREDICTIONS", "PPG_MI_TOPIC_DLQ")
# what the client settings the chart renders ask of the broker's listener
LISTENER_AUTH = {"PLAINTEXT": "none", "SSL": "tls", "SASL_SSL": "scram-sha-512"}
BOOTSTRAP = re.compile(r"^(?P<cluster>[a-z0-9-]+)-kafka-bootstrap\.(?P<ns>[a-z0-9-]+)\.svc(\.cluster\.local)?:(?P<port>\d+)$")
SECRET = "Secret"


def _key(obj: dict) -> tuple[str, str, str]:
    return obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]


@dataclass
class Cluster:
    """The objects of a simulated Kubernetes cluster with the Strimzi operators of the docs."""

    objects: dict[tuple[str, str, str], dict] = field(default_factory=dict)
    # namespaces the Strimzi Cluster Operator watches
    operator_namespaces: set[str] = field(default_factory=set)
    # (kafka namespace, kafka name) → topic names its Topic Operator created
    topics: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    # what Strimzi could not do, as its status conditions would say
    problems: list[str] = field(default_factory=list)

    # --- objects ------------------------------------------------------------------------------------
    def apply(self, docs: Iterable[dict], namespace: str) -> list[dict]:
        """``kubectl -n <namespace> apply``: a namespaced object without one gets ``namespace``."""
        applied = []
        for doc in docs:
            obj = copy.deepcopy(doc)
            obj["metadata"].setdefault("namespace", namespace)
            self.objects[_key(obj)] = obj
            applied.append(obj)
        self.reconcile()
        return applied

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        return self.objects.get((kind, namespace, name))

    def of_kind(self, kind: str) -> list[dict]:
        return [o for (k, _, _), o in self.objects.items() if k == kind]

    def put_secret(self, namespace: str, name: str, data: dict[str, str], *, by: str) -> None:
        self.objects[(SECRET, namespace, name)] = {
            "apiVersion": "v1", "kind": SECRET, "metadata": {"name": name, "namespace": namespace,
                                                             "annotations": {"created-by": by}},
            "stringData": data}

    def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        secret = self.get(SECRET, namespace, name)
        return None if secret is None else secret["stringData"].get(key)

    def resolver(self, namespace: str) -> Callable[[str, str], str]:
        """A ``secretKeyRef`` resolver for ``tests/chart/podenv.resolve_env``: only Secrets that exist."""

        def resolve(name: str, key: str) -> str:
            value = self.secret_value(namespace, name, key)
            if value is None:
                raise AssertionError(f"Secret {namespace}/{name} (key {key}) does not exist in the simulated cluster")
            return value

        return resolve

    # --- Strimzi ------------------------------------------------------------------------------------
    def entity_namespaces(self, kafka: dict) -> tuple[str | None, str | None]:
        """The namespaces the Kafka's Topic and User Operators watch (None: not deployed)."""
        ns = kafka["metadata"]["namespace"]
        entity = kafka["spec"].get("entityOperator") or {}
        out = []
        for operator in ("topicOperator", "userOperator"):
            spec = entity.get(operator)
            out.append(None if spec is None else (spec.get("watchedNamespace") or ns))
        return out[0], out[1]

    def reconcile(self) -> None:
        self.problems = []
        self.topics = {}
        for kafka in self.of_kind("Kafka"):
            ns, name = kafka["metadata"]["namespace"], kafka["metadata"]["name"]
            where = f"Kafka {ns}/{name}"
            if ns not in self.operator_namespaces:
                self.problems.append(f"{where}: the Cluster Operator does not watch {ns} "
                                     f"(watches {sorted(self.operator_namespaces)})")
                continue
            self.put_secret(ns, f"{name}-cluster-ca-cert", {k: f"<{name} cluster CA {k}>" for k in CLUSTER_CA_KEYS},
                            by="strimzi cluster operator")
            topic_ns, user_ns = self.entity_namespaces(kafka)
            for operator, watched in (("Topic", topic_ns), ("User", user_ns)):
                if watched is not None and watched not in self.operator_namespaces:
                    self.problems.append(f"{where}: its {operator} Operator watches {watched}, where the Cluster "
                                         "Operator may not create the Entity Operator's Role")
            if topic_ns in self.operator_namespaces:
                self.topics[(ns, name)] = {t["spec"].get("topicName") or t["metadata"]["name"]
                                           for t in self.of_kind("KafkaTopic")
                                           if t["metadata"]["namespace"] == topic_ns
                                           and t["metadata"].get("labels", {}).get(CLUSTER_LABEL) == name}
            if user_ns in self.operator_namespaces:
                for user in self.of_kind("KafkaUser"):
                    meta = user["metadata"]
                    if meta["namespace"] == user_ns and meta.get("labels", {}).get(CLUSTER_LABEL) == name:
                        auth = user["spec"]["authentication"]["type"]
                        self.put_secret(user_ns, meta["name"],
                                        {k: f"<{meta['name']} {k}>" for k in USER_SECRET_KEYS[auth]},
                                        by=f"strimzi user operator of {where}")


# --- what the release reads --------------------------------------------------------------------------
def _namespaced(objects: list[dict], namespace: str) -> Iterator[tuple[str, dict]]:
    for obj in objects:
        yield obj["metadata"].get("namespace") or namespace, obj


def _secret_refs(spec: dict) -> Iterator[tuple[str, str | None, str]]:
    """(Secret name, key or None for the whole Secret, where) of a pod spec; optional refs left out."""
    for container in spec.get("initContainers", []) + spec["containers"]:
        for entry in container.get("env", []):
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref and not ref.get("optional"):
                yield ref["name"], ref["key"], f"container {container['name']} env {entry['name']}"
        for source in container.get("envFrom", []):
            ref = source.get("secretRef")
            if ref and not ref.get("optional"):
                yield ref["name"], None, f"container {container['name']} envFrom"
    for volume in spec.get("volumes", []):
        sources = [volume["secret"]] if "secret" in volume else [
            s["secret"] for s in volume.get("projected", {}).get("sources", []) if "secret" in s]
        for source in sources:
            if source.get("optional"):
                continue
            name = source.get("secretName") or source["name"]
            keys = [item["key"] for item in source.get("items", [])] or [None]
            for key in keys:
                yield name, key, f"volume {volume['name']}"
    for ref in spec.get("imagePullSecrets", []):
        yield ref["name"], None, "imagePullSecrets"


def unmet_needs(cluster: Cluster, objects: list[dict], namespace: str) -> list[str]:
    """Everything the release's pods and KEDA read that the cluster does not have, one line each."""
    unmet: list[str] = []

    def need_secret(ns: str, name: str, key: str | None, where: str) -> None:
        secret = cluster.get(SECRET, ns, name)
        if secret is None:
            unmet.append(f"{where}: Secret {ns}/{name} does not exist")
        elif key is not None and key not in secret["stringData"]:
            unmet.append(f"{where}: Secret {ns}/{name} has no key {key} (keys: {sorted(secret['stringData'])})")

    used_topics: list[tuple[str, str, str]] = []  # (bootstrap, topic, where)
    for ns, obj in _namespaced(objects, namespace):
        spec = cl.pod_spec(obj)
        what = f"{obj['kind']} {ns}/{obj['metadata']['name']}"
        if spec is not None:
            for name, key, where in _secret_refs(spec):
                need_secret(ns, name, key, f"{what} {where}")
            for container in spec["containers"]:
                env = {e["name"]: e.get("value") for e in container.get("env", [])}
                bootstrap = env.get("PPG_MI_KAFKA_BOOTSTRAP_SERVERS")
                if bootstrap:
                    unmet += _listener_unmet(cluster, env, f"{what} container {container['name']}")
                    used_topics += [(bootstrap, env[t], f"{what} {t}") for t in TOPIC_ENV if env.get(t)]
        elif obj["kind"] == "TriggerAuthentication":
            for ref in obj["spec"].get("secretTargetRef", []):
                need_secret(ns, ref["name"], ref["key"], f"{what} parameter {ref['parameter']}")
        elif obj["kind"] == "ScaledObject":
            for trigger in obj["spec"]["triggers"]:
                ref = trigger.get("authenticationRef")
                if ref and not any(o["kind"] == ref.get("kind", "TriggerAuthentication")
                                   and o["metadata"]["name"] == ref["name"] and n == ns
                                   for n, o in _namespaced(objects, namespace)):
                    unmet.append(f"{what}: TriggerAuthentication {ns}/{ref['name']} is not in the release")
                if trigger["type"] == "kafka":
                    meta = trigger["metadata"]
                    used_topics.append((meta["bootstrapServers"], meta["topic"], f"{what} trigger"))
    missing_topics: dict[tuple[str, str, str], list[str]] = {}  # (kafka ns, kafka, topic) → users
    for bootstrap, topic, where in used_topics:
        m = BOOTSTRAP.match(bootstrap)
        if m and topic not in cluster.topics.get((m["ns"], m["cluster"]), set()):
            missing_topics.setdefault((m["ns"], m["cluster"], topic), []).append(where)
        # (an external bootstrap address is not Strimzi's to check)
    for (ns, name, topic), users in missing_topics.items():
        unmet.append(f"topic {topic} is not created by the Topic Operator of Kafka {ns}/{name} (it created "
                     f"{sorted(cluster.topics.get((ns, name), set()))}); used by: {', '.join(users)}")
    return unmet


def _listener_unmet(cluster: Cluster, env: dict[str, str | None], where: str) -> list[str]:
    m = BOOTSTRAP.match(env["PPG_MI_KAFKA_BOOTSTRAP_SERVERS"] or "")
    if not m:
        return []
    kafka = cluster.get("Kafka", m["ns"], m["cluster"])
    if kafka is None:
        return [f"{where}: bootstrap {m.group(0)} names Kafka {m['ns']}/{m['cluster']}, which does not exist"]
    wanted = LISTENER_AUTH[env.get("PPG_MI_KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT"]
    listeners = {l["port"]: l for l in kafka["spec"]["kafka"]["listeners"]}
    listener = listeners.get(int(m["port"]))
    if listener is None:
        return [f"{where}: Kafka {m['ns']}/{m['cluster']} has no listener on port {m['port']}"]
    auth = listener.get("authentication", {}).get("type", "none")
    if auth != wanted or listener["tls"] is (wanted == "none"):
        return [f"{where}: listener {listener['name']} on {m['port']} authenticates {auth} (tls {listener['tls']}), "
                f"the client uses {wanted}"]
    return []


# --- the documented installs -------------------------------------------------------------------------
def fenced_blocks(markdown: str, language: str) -> list[tuple[int, str]]:
    """(offset, body) of every fenced block of ``language``, in order (indented fences too)."""
    pattern = re.compile(rf"^(?P<indent>[ \t]*)```{language}[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                         re.MULTILINE | re.DOTALL)
    out = []
    for m in pattern.finditer(markdown):
        indent = len(m["indent"])
        out.append((m.start(), "".join(line[indent:] if line[:indent].strip() == "" else line
                                       for line in m["body"].splitlines(keepends=True))))
    return out


def section(markdown: str, heading_prefix: str) -> str:
    """The text of the ``## `` section whose heading starts with ``heading_prefix``."""
    m = re.search(rf"^## {re.escape(heading_prefix)}.*?(?=^## |\Z)", markdown, re.MULTILINE | re.DOTALL)
    assert m, f"no section '## {heading_prefix}…'"
    return m.group(0)


def shell_commands(script: str) -> list[list[str]]:
    """Logical lines of a bash block as argument lists (comments dropped, ``\\`` continuations joined)."""
    out, buf = [], ""
    for line in script.splitlines():
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        words = shlex.split(buf + line, comments=True)
        buf = ""
        if words:
            out.append(words)
    return out


def _option(words: list[str], *names: str) -> str | None:
    for i, w in enumerate(words):
        for name in names:
            if w == name and i + 1 < len(words):
                return words[i + 1]
            if name.startswith("--") and w.startswith(name + "="):
                return w.split("=", 1)[1]
    return None


@dataclass
class DocumentedInstall:
    """Runs the commands of a documented install against a simulated cluster.

    Understood (everything else, e.g. ``kubectl wait``, ``helm repo``, is a no-op here): the Strimzi
    operator's ``helm upgrade --install`` (its namespace and ``watchNamespaces``), ``kubectl apply -f``
    and ``kubectl patch --type merge --patch-file`` of repository files, ``kubectl get secret -o
    jsonpath='{.data.KEY}' | base64 -d > FILE``, ``kubectl create secret generic --from-file``, and
    the chart's ``helm upgrade --install`` (rendered with ``helm template``, values files looked up in
    ``values_files`` by the name the command uses, then ``extra_values``).
    """

    values_files: dict[str, Path]
    extra_values: list[Path] = field(default_factory=list)
    cluster: Cluster = field(default_factory=Cluster)
    files: dict[str, str] = field(default_factory=dict)
    releases: list[tuple[str, list[dict]]] = field(default_factory=list)  # (namespace, rendered objects)

    def run(self, commands: Iterable[list[str]]) -> "DocumentedInstall":
        for words in commands:
            pipeline, current = [], []
            for w in words:
                if w == "|":
                    pipeline.append(current)
                    current = []
                else:
                    current.append(w)
            pipeline.append(current)
            self._run(pipeline)
        return self

    def _run(self, pipeline: list[list[str]]) -> None:
        words = pipeline[0]
        namespace = _option(words, "-n", "--namespace") or "default"
        if words[:3] == ["helm", "upgrade", "--install"]:
            chart = words[4]
            if "strimzi-kafka-operator" in chart:
                watch = _option(words, "--set") or ""
                m = re.match(r"watchNamespaces=\{(.*)\}$", watch)
                self.cluster.operator_namespaces |= {namespace, *(m.group(1).split(",") if m else [])}
                self.cluster.reconcile()
            elif (cl.REPO / chart).resolve() == cl.CHART.resolve():
                files = [self.values_files[f] for i, f in enumerate(words) if i and words[i - 1] in ("-f", "--values")]
                objects = cl.render([*files, *self.extra_values], release=words[3], namespace=namespace)
                self.releases.append((namespace, objects))
                self.cluster.apply(objects, namespace)
        elif words[:2] == ["kubectl", "-n"] or words[:1] == ["kubectl"]:
            verb = next(w for w in words[1:] if not w.startswith("-") and w != namespace)
            if verb == "apply" and _option(words, "-f") and (cl.REPO / _option(words, "-f")).is_file():
                path = cl.REPO / _option(words, "-f")
                self.cluster.apply([d for d in yaml.safe_load_all(path.read_text()) if d], namespace)
            elif verb == "patch" and _option(words, "--patch-file"):
                kind, name = words[words.index("patch") + 1: words.index("patch") + 3]
                obj = self.cluster.get(kind.capitalize(), namespace, name)
                assert obj is not None, f"kubectl patch {kind} {name}: not in {namespace}"
                patch = yaml.safe_load((cl.REPO / _option(words, "--patch-file")).read_text())
                self.cluster.apply([_merge(obj, patch)], namespace)
            elif verb == "get" and words[words.index("get") + 1] in ("secret", "secrets"):
                self._get_secret(pipeline, namespace, words[words.index("get") + 2])
            elif verb == "create" and words[words.index("create") + 1: words.index("create") + 3] == ["secret", "generic"]:
                self._create_secret(words, namespace, words[words.index("create") + 3])

    def _get_secret(self, pipeline: list[list[str]], namespace: str, name: str) -> None:
        jsonpath = _option(pipeline[0], "-o") or ""
        m = re.match(r"jsonpath=\{\.data\.(.+)\}$", jsonpath)
        last = pipeline[-1]
        if not m or ">" not in last:
            return
        key = m.group(1).replace("\\.", ".")
        value = self.cluster.secret_value(namespace, name, key)
        assert value is not None, f"the documented `kubectl -n {namespace} get secret {name}` finds no key {key}"
        self.files[last[last.index(">") + 1]] = value

    def _create_secret(self, words: list[str], namespace: str, name: str) -> None:
        data = {}
        for w in words:
            if w.startswith("--from-file="):
                spec = w.split("=", 1)[1]
                key, _, path = spec.rpartition("=")
                assert path in self.files, f"`kubectl create secret {name}` reads {path}, which no command wrote"
                data[key or Path(path).name] = self.files[path]
        self.cluster.put_secret(namespace, name, data, by="a command of the documented install")

    def unmet(self) -> list[str]:
        out = list(self.cluster.problems)
        for namespace, objects in self.releases:
            out += unmet_needs(self.cluster, objects, namespace)
        return out


def _merge(base: dict, patch: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in patch.items():
        out[k] = _merge(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


def cluster_for_release(objects: list[dict], namespace: str, kafka_namespace: str = "",
                        ca_copy: str = "") -> Cluster:
    """The cluster a rendered release runs on, set up as the docs do: the dev Kafka in the release
    namespace, or (``kafka_namespace`` another one) the prod Kafka there, the Strimzi operator
    watching both, and the documented copy of the cluster CA's ``ca.crt`` as Secret ``ca_copy``."""
    kafka_namespace = kafka_namespace or namespace
    manifest = "kafka-dev.yaml" if kafka_namespace == namespace else "kafka-prod.yaml"
    cluster = Cluster(operator_namespaces={namespace, kafka_namespace})
    docs = [d for d in yaml.safe_load_all((cl.REPO / "k8s" / "strimzi" / manifest).read_text()) if d]
    cluster.apply(docs, kafka_namespace)
    if ca_copy:
        (kafka,) = cluster.of_kind("Kafka")
        ca = cluster.secret_value(kafka_namespace, f"{kafka['metadata']['name']}-cluster-ca-cert", "ca.crt")
        assert ca is not None, "no cluster CA to copy"
        cluster.put_secret(namespace, ca_copy, {"ca.crt": ca}, by="the documented copy of the cluster CA")
    cluster.apply(objects, namespace)
    return cluster
