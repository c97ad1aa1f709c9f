"""Connecting to the API server and finding one release's objects by the chart's labels."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

from .errors import NO_KUBECONFIG, NOT_FOUND, ClusterCommandError, from_api_exception

PART_OF = "ppg-mi"
SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
KEDA = ("keda.sh", "v1alpha1", "scaledobjects")
STRIMZI_TOPICS = ("kafka.strimzi.io", "v1", "kafkatopics")
T = TypeVar("T")


def release_selector(release: str, component: str | None = None) -> str:
    """The label selector of a release's objects (every object of the chart carries these labels)."""
    selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/part-of={PART_OF}"
    return f"{selector},app.kubernetes.io/component={component}" if component else selector


@dataclass
class Cluster:
    """The API groups the commands use, with the namespace and the context they apply to."""

    api_client: Any
    namespace: str
    context: str

    @property
    def core(self) -> Any:
        from kubernetes import client
        return client.CoreV1Api(self.api_client)

    @property
    def apps(self) -> Any:
        from kubernetes import client
        return client.AppsV1Api(self.api_client)

    @property
    def batch(self) -> Any:
        from kubernetes import client
        return client.BatchV1Api(self.api_client)

    @property
    def autoscaling(self) -> Any:
        from kubernetes import client
        return client.AutoscalingV2Api(self.api_client)

    @property
    def custom(self) -> Any:
        from kubernetes import client
        return client.CustomObjectsApi(self.api_client)

    def call(self, doing: str, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call the API; any failure becomes a :class:`ClusterCommandError` naming ``doing``."""
        kwargs.setdefault("_request_timeout", 20)
        try:
            return func(*args, **kwargs)
        except ClusterCommandError:
            raise
        except Exception as exc:  # noqa: BLE001 - mapped to a one-line error below
            raise from_api_exception(exc, doing, self.namespace) from None

    def custom_list(self, crd: tuple[str, str, str], selector: str = "") -> list[dict] | None:
        """Objects of a custom resource in the namespace; None where the CRD is not installed."""
        group, version, plural = crd
        try:
            found = self.custom.list_namespaced_custom_object(group, version, self.namespace, plural,
                                                              label_selector=selector, _request_timeout=20)
        except Exception as exc:  # noqa: BLE001
            if getattr(exc, "status", None) == 404:
                return None
            raise from_api_exception(exc, f"list {plural}.{group}", self.namespace) from None
        return list(found.get("items", []))


def connect(kubeconfig: str | None = None, context: str | None = None, namespace: str | None = None) -> Cluster:
    """A client for the kubeconfig (``--kubeconfig``, ``$KUBECONFIG`` or ``~/.kube/config``), else in-cluster.

    Parameters
    ----------
    kubeconfig
        Path of a kubeconfig file; None: ``$KUBECONFIG``, then ``~/.kube/config``.
    context
        Context of the kubeconfig; None: its current context.
    namespace
        Namespace of the release; None: the context's namespace (in a pod: the pod's), else ``default``.

    Raises
    ------
    ClusterCommandError
        No kubeconfig and not in a pod (exit 3), or an unknown context (exit 3).
    """
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    paths = [kubeconfig] if kubeconfig else [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if not paths:
        default = Path.home() / ".kube" / "config"
        paths = [str(default)] if default.is_file() else []
    existing = [p for p in paths if Path(p).is_file()]
    if existing:
        try:
            contexts, current = config.list_kube_config_contexts(config_file=existing[0])
        except ConfigException as exc:
            raise ClusterCommandError(f"kubeconfig {existing[0]}: {str(exc).strip()}", NO_KUBECONFIG) from None
        names = [c["name"] for c in contexts or []]
        chosen = context or (current or {}).get("name")
        if not chosen:
            raise ClusterCommandError(f"kubeconfig {existing[0]} has no current context: pass --context "
                                      f"(one of {', '.join(names) or 'none'})", NO_KUBECONFIG)
        if chosen not in names:
            raise ClusterCommandError(f"context {chosen!r} is not in {existing[0]}: use one of "
                                      f"{', '.join(names) or '(none)'}", NO_KUBECONFIG)
        cfg = client.Configuration()
        try:
            config.load_kube_config(config_file=existing[0], context=chosen, client_configuration=cfg)
        except ConfigException as exc:
            raise ClusterCommandError(f"kubeconfig {existing[0]}, context {chosen}: {str(exc).strip()}",
                                      NO_KUBECONFIG) from None
        ctx = next(c for c in contexts if c["name"] == chosen)
        ns = namespace or ctx.get("context", {}).get("namespace") or "default"
    elif os.environ.get("KUBERNETES_SERVICE_HOST") and not kubeconfig:
        cfg = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=cfg)
        except ConfigException as exc:
            raise ClusterCommandError(f"in-cluster configuration: {exc}", NO_KUBECONFIG) from None
        chosen = "in-cluster"
        ns = namespace or (SA_NAMESPACE_FILE.read_text().strip() if SA_NAMESPACE_FILE.is_file() else "default")
    else:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise ClusterCommandError(f"no kubeconfig: {where} does not exist; pass --kubeconfig or set KUBECONFIG",
                                  NO_KUBECONFIG)
    cfg.retries = 1  # an unreachable API server fails in seconds, not after urllib3's default retries
    return Cluster(client.ApiClient(cfg), ns, chosen)


@dataclass
class WorkloadRef:
    """A Deployment (the dashboard) or StatefulSet (filter, classifier) of the release, with its kind."""

    kind: str
    obj: Any

    @property
    def name(self) -> str:
        return self.obj.metadata.name


def list_workloads(cluster: Cluster, selector: str) -> list[WorkloadRef]:
    """The Deployments and StatefulSets matching ``selector`` in the namespace, by name."""
    ns = cluster.namespace
    found = [WorkloadRef("Deployment", d) for d in cluster.call(
        "list deployments", cluster.apps.list_namespaced_deployment, ns, label_selector=selector).items]
    found += [WorkloadRef("StatefulSet", s) for s in cluster.call(
        "list statefulsets", cluster.apps.list_namespaced_stateful_set, ns, label_selector=selector).items]
    return sorted(found, key=lambda w: w.name)


def find_workload(cluster: Cluster, release: str, component: str) -> WorkloadRef:
    """The release's workload of ``component``: the filter's or classifier's StatefulSet, the dashboard's Deployment.

    Raises
    ------
    ClusterCommandError
        exit 4 when neither the release nor the component exists in the namespace.
    """
    found = list_workloads(cluster, release_selector(release, component))
    if found:
        return found[0]
    require_release(cluster, release)
    raise ClusterCommandError(f"release {release} in namespace {cluster.namespace} has no {component} "
                              "StatefulSet or Deployment", NOT_FOUND)


def require_release(cluster: Cluster, release: str) -> None:
    """Raise exit 4 when no Deployment, StatefulSet or Job of the release exists in the namespace."""
    selector = release_selector(release)
    if list_workloads(cluster, selector):
        return
    if cluster.call("list jobs", cluster.batch.list_namespaced_job, cluster.namespace, label_selector=selector).items:
        return
    raise ClusterCommandError(
        f"release {release} not found in namespace {cluster.namespace} (context {cluster.context}): "
        "no Deployment, StatefulSet or Job labelled app.kubernetes.io/instance=" + release
        + "; pass --release/--namespace (helm list -A shows them)", NOT_FOUND)


def container_env(workload: Any, container: str | None = None) -> dict[str, str]:
    """Literal ``env`` values of the workload's (first, or named) container; valueFrom entries are skipped."""
    containers = workload.spec.template.spec.containers
    chosen = next((c for c in containers if container is None or c.name == container), containers[0])
    return {e.name: e.value for e in chosen.env or [] if e.value is not None}
