"""``ppg-mi cluster scale classifier|filter N``: hold a stage at N replicas without fighting its autoscaler.

How the count is set
--------------------
KEDA ScaledObject
    The annotation ``autoscaling.keda.sh/paused-replicas: N`` on the ScaledObject, which makes KEDA
    hold the StatefulSet at N (it removes its HPA and stops scaling), **and** the StatefulSet's scale
    subresource set to N. KEDA applies the annotation asynchronously, on its next reconcile, and
    only where its operator runs; setting the count as well makes the result the same at once and
    everywhere, and cannot conflict (KEDA would set the same N). ``--resume`` removes the
    annotation: KEDA takes the count over again from where it is.
HorizontalPodAutoscaler (``keda.enabled=false``)
    The scale subresource. The HPA still owns the count: N must lie within its min..max (else the
    HPA would undo it at once: refused), and the HPA moves it again when the CPU use says so. The
    output says so. To hold a count, turn autoscaling off in the values.
No autoscaler
    The scale subresource.

N is refused above the input topic's partition count (consumers beyond it sit idle). The count
comes from the broker; when it does not answer, from the release's KafkaTopic of the topic, then
from the StatefulSet's ``PPG_MI_TOPIC_PARTITIONS``.

The stages are StatefulSets (a replaced pod keeps its name, so its transactional id): a
scale-down removes the highest ordinals, whose processes leave the group on SIGTERM.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from . import broker as kafka
from .api import STRIMZI_TOPICS, Cluster, container_env, find_workload, release_selector
from .errors import REFUSED, TIMEOUT, ClusterCommandError
from .status import PAUSED, Autoscaler, autoscalers_of

INPUT_TOPIC = {"filter": "PPG_MI_TOPIC_RAW", "classifier": "PPG_MI_TOPIC_FILTERED"}


@dataclass
class Partitions:
    """A topic's partition count and where it was read."""

    topic: str
    count: int
    source: str


@dataclass
class ScalePlan:
    """What ``scale`` will do, decided before anything changes (pure; see :func:`plan`)."""

    deployment: str  # the workload's name
    replicas: int | None
    pause: str | None = None  # ScaledObject to annotate
    resume: str | None = None  # ScaledObject to un-annotate
    patch_scale: bool = True
    notes: list[str] = field(default_factory=list)
    kind: str = "StatefulSet"  # or Deployment (a release of an earlier chart)


def plan(component: str, deployment: str, replicas: int | None, resume: bool, partitions: Partitions | None,
         autoscaler: Autoscaler | None) -> ScalePlan:
    """Decide how to reach ``replicas``; raise exit 7 when the request cannot work.

    Parameters
    ----------
    component
        ``filter`` or ``classifier``.
    deployment
        Name of its StatefulSet (or Deployment).
    replicas
        The wanted count; None only with ``resume``.
    resume
        Hand the count back to KEDA (remove the pause annotation).
    partitions
        The input topic's partitions (None: not needed, i.e. only ``resume``).
    autoscaler
        The ScaledObject or HPA targeting it, if any.
    """
    if replicas is None and not resume:
        raise ClusterCommandError("scale needs a replica count (or --resume)", REFUSED)
    if replicas is not None and replicas < 0:
        raise ClusterCommandError(f"replicas must be 0 or more, got {replicas}", REFUSED)
    if replicas is not None and partitions is not None and replicas > partitions.count:
        raise ClusterCommandError(
            f"refusing {replicas} {component} replicas: {partitions.topic} has {partitions.count} partitions "
            f"({partitions.source}), and consumers beyond the partition count sit idle", REFUSED)
    result = ScalePlan(deployment, replicas, patch_scale=replicas is not None)
    kind = autoscaler.kind if autoscaler else None
    if kind == "ScaledObject":
        if resume:
            result.resume = autoscaler.name
            result.notes.append(f"KEDA ScaledObject {autoscaler.name} owns the count again "
                                f"({autoscaler.min_replicas}..{autoscaler.max_replicas} replicas on lag)")
        else:
            result.pause = autoscaler.name
            result.notes.append(f"KEDA paused: {PAUSED}={replicas} on ScaledObject {autoscaler.name} "
                                f"(`ppg-mi cluster scale {component} --resume` hands the count back to KEDA)")
    elif resume:
        raise ClusterCommandError(f"--resume: no KEDA ScaledObject scales {deployment}, nothing to resume", REFUSED)
    elif kind == "HorizontalPodAutoscaler":
        low, high = autoscaler.min_replicas or 1, autoscaler.max_replicas or 0
        if not low <= replicas <= high:  # type: ignore[operator]
            raise ClusterCommandError(
                f"refusing {replicas} {component} replicas: the HorizontalPodAutoscaler {autoscaler.name} keeps "
                f"{deployment} within {low}..{high} and would undo it; change {component}.autoscaling in the "
                "values (or disable it) with helm upgrade", REFUSED)
        result.notes.append(f"the HorizontalPodAutoscaler {autoscaler.name} owns {deployment}: it will move the "
                            f"count within {low}..{high} again when the CPU use says so")
    return result


def input_partitions(cluster: Cluster, release: str, component: str, workload: Any,
                     bootstrap: str | None = None) -> Partitions:
    """The input topic's partitions: from the broker, else the release's KafkaTopic, else the workload's env."""
    env = container_env(workload)
    settings = kafka.release_settings(env, bootstrap)
    topic = getattr(settings, INPUT_TOPIC[component][7:].lower())
    try:
        return Partitions(topic, kafka.topic_partitions(settings, topic), f"broker {settings.bootstrap_servers}")
    except kafka.BrokerUnreachable:
        pass
    try:
        topics = cluster.custom_list(STRIMZI_TOPICS, release_selector(release)) or []
    except ClusterCommandError:
        topics = []  # not readable here (RBAC): fall back to the env
    for t in topics:
        if t.get("spec", {}).get("topicName", t["metadata"]["name"]) == topic and t["spec"].get("partitions"):
            return Partitions(topic, int(t["spec"]["partitions"]), f"KafkaTopic {t['metadata']['name']}; broker unreachable")
    return Partitions(topic, settings.topic_partitions,
                      "PPG_MI_TOPIC_PARTITIONS of the workload; broker unreachable")


def apply(cluster: Cluster, p: ScalePlan) -> None:
    """Carry out a plan: annotation first (so KEDA does not undo the count), then the scale subresource."""
    ns = cluster.namespace
    group, version, plural = "keda.sh", "v1alpha1", "scaledobjects"
    if p.pause or p.resume:
        value = str(p.replicas) if p.pause else None
        cluster.call(f"patch scaledobject {p.pause or p.resume}", cluster.custom.patch_namespaced_custom_object,
                     group, version, ns, plural, p.pause or p.resume,
                     {"metadata": {"annotations": {PAUSED: value}}})
    if p.patch_scale:
        patch = (cluster.apps.patch_namespaced_stateful_set_scale if p.kind == "StatefulSet"
                 else cluster.apps.patch_namespaced_deployment_scale)
        cluster.call(f"patch {p.kind.lower()}s/scale of {p.deployment}", patch, p.deployment, ns,
                     {"spec": {"replicas": p.replicas}})


def progress_line(component: str, wanted: int, ready: int, pods: int, elapsed: float) -> str:
    """The one-line progress shown while waiting (pure)."""
    return f"{component}: {ready}/{wanted} ready, {pods} pod{'s' if pods != 1 else ''} ({elapsed:.0f} s)"


def wait_ready(cluster: Cluster, release: str, component: str, deployment: str, replicas: int, timeout: float,
               progress: Callable[[str], None], interval: float = 2.0, kind: str = "StatefulSet") -> float:
    """Wait until the workload has exactly ``replicas`` ready pods and no others; returns the seconds taken.

    Raises
    ------
    ClusterCommandError
        exit 8 after ``timeout`` seconds.
    """
    started = time.monotonic()
    while True:
        read = (cluster.apps.read_namespaced_stateful_set_status if kind == "StatefulSet"
                else cluster.apps.read_namespaced_deployment_status)
        d = cluster.call(f"read {kind.lower()}", read, deployment, cluster.namespace)
        pods = cluster.call("list pods", cluster.core.list_namespaced_pod, cluster.namespace,
                            label_selector=release_selector(release, component)).items
        alive = [p for p in pods if p.metadata.deletion_timestamp is None]
        ready = d.status.ready_replicas or 0
        elapsed = time.monotonic() - started
        progress(progress_line(component, replicas, ready, len(alive), elapsed))
        settled = (d.status.observed_generation or 0) >= (d.metadata.generation or 0)
        if settled and ready == replicas and len(alive) == replicas and (d.status.updated_replicas or 0) >= replicas:
            return elapsed
        if elapsed > timeout:
            raise ClusterCommandError(f"timed out after {timeout:.0f} s: {component} has {ready}/{replicas} ready "
                                      f"replicas and {len(alive)} pods (see `ppg-mi cluster status`)", TIMEOUT)
        time.sleep(interval)


def scale(cluster: Cluster, release: str, component: str, replicas: int | None, resume: bool = False,
          wait: bool = True, timeout: float = 300.0, bootstrap: str | None = None,
          progress: Callable[[str], None] = lambda line: None) -> ScalePlan:
    """Plan, apply and (unless ``wait`` is false) wait. Returns the plan carried out."""
    workload = find_workload(cluster, release, component)
    partitions = input_partitions(cluster, release, component, workload.obj, bootstrap) if replicas is not None else None
    scaler = next((a for a in autoscalers_of(cluster, release) if a.target == workload.name), None)
    p = plan(component, workload.name, replicas, resume, partitions, scaler)
    p.kind = workload.kind
    if partitions is not None:
        p.notes.insert(0, f"{partitions.topic}: {partitions.count} partitions ({partitions.source})")
    apply(cluster, p)
    if wait and p.replicas is not None:
        wait_ready(cluster, release, component, p.deployment, p.replicas, timeout, progress, kind=p.kind)
    return p
