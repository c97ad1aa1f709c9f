"""``ppg-mi cluster status``: a release's objects as the API server reports them.

Collecting (:func:`collect`) talks to the API and the broker; rendering (:func:`format_table`,
:func:`to_json`) is pure and unit-tested.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from . import broker as kafka
from .api import KEDA, Cluster, container_env, list_workloads, release_selector, require_release

PAUSED = "autoscaling.keda.sh/paused-replicas"
MODEL_RE = re.compile(r'"detail":\s*"([^"]+?) loaded and warm"')
# consuming stage → (group setting, input topic setting) as PPG_MI_* names in its StatefulSet's env
STAGES = {"filter": ("PPG_MI_GROUP_FILTER", "PPG_MI_TOPIC_RAW"),
          "classifier": ("PPG_MI_GROUP_CLASSIFIER", "PPG_MI_TOPIC_FILTERED")}


@dataclass
class Autoscaler:
    """A ScaledObject or HorizontalPodAutoscaler and the StatefulSet (or Deployment) it scales."""

    kind: str
    name: str
    target: str
    min_replicas: int | None
    max_replicas: int | None
    paused_replicas: int | None = None


@dataclass
class Workload:
    """A StatefulSet (filter, classifier) or Deployment (dashboard): desired vs ready replicas, who
    scales it, the consumer lag of its stage."""

    name: str
    component: str
    kind: str
    desired: int
    ready: int
    updated: int
    autoscaler: str = "none"
    paused_replicas: int | None = None
    lag: int | None = None


@dataclass
class JobState:
    """A Job: completions and how many pods succeeded, failed or run."""

    name: str
    component: str
    completions: int
    succeeded: int
    failed: int
    active: int
    state: str


@dataclass
class PodState:
    """A pod: phase, readiness, restarts and (classifier pods) the model version it serves."""

    name: str
    component: str
    phase: str
    ready: bool
    restarts: int
    model: str | None = None


@dataclass
class Claim:
    """A PersistentVolumeClaim of the release."""

    name: str
    phase: str
    capacity: str


@dataclass
class ReleaseStatus:
    """Everything ``status`` reports about one release."""

    release: str
    namespace: str
    context: str
    workloads: list[Workload] = field(default_factory=list)
    jobs: list[JobState] = field(default_factory=list)
    autoscalers: list[Autoscaler] = field(default_factory=list)
    pods: list[PodState] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    broker: str = "not asked"
    notes: list[str] = field(default_factory=list)


def _component(obj: Any) -> str:
    return (obj.metadata.labels or {}).get("app.kubernetes.io/component", "")


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def autoscalers_of(cluster: Cluster, release: str) -> list[Autoscaler]:
    """The release's ScaledObjects (KEDA) and HPAs; KEDA's own ``keda-hpa-*`` HPAs are left out."""
    found: list[Autoscaler] = []
    for obj in cluster.custom_list(KEDA, release_selector(release)) or []:
        spec = obj.get("spec", {})
        found.append(Autoscaler("ScaledObject", obj["metadata"]["name"], spec.get("scaleTargetRef", {}).get("name", ""),
                                spec.get("minReplicaCount"), spec.get("maxReplicaCount"),
                                _int((obj["metadata"].get("annotations") or {}).get(PAUSED))))
    hpas = cluster.call("list horizontalpodautoscalers", cluster.autoscaling.list_namespaced_horizontal_pod_autoscaler,
                        cluster.namespace, label_selector=release_selector(release)).items
    for hpa in hpas:
        if hpa.metadata.name.startswith("keda-hpa-"):
            continue
        found.append(Autoscaler("HorizontalPodAutoscaler", hpa.metadata.name, hpa.spec.scale_target_ref.name,
                                hpa.spec.min_replicas, hpa.spec.max_replicas))
    return found


def job_state(job: Any) -> str:
    """Complete, Failed, Running or Pending, from the Job's conditions and counts."""
    for cond in job.status.conditions or []:
        if cond.status == "True" and cond.type in ("Complete", "Failed"):
            return cond.type
    return "Running" if job.status.active else "Pending"


def model_version(cluster: Cluster, pod: str, container: str = "classifier") -> str:
    """The model a classifier pod serves: ``ppg-mi probe /readyz`` run in the pod through the API.

    Never a pod IP: on host-network nodes a pod's IP is the node's. Needs ``pods/exec``
    (``create``); without it the answer is ``unknown (forbidden)``.
    """
    from kubernetes.stream import stream

    try:
        out = stream(cluster.core.connect_get_namespaced_pod_exec, pod, cluster.namespace, container=container,
                     command=["ppg-mi", "probe", "/readyz"], stderr=True, stdin=False, stdout=True, tty=False,
                     _request_timeout=15)
    except Exception as exc:  # noqa: BLE001 - the websocket upgrade reports 403 in its message
        status = getattr(exc, "status", None)
        text = f"{status} {getattr(exc, 'reason', '')} {exc}"
        if status == 403 or "403" in text or "Forbidden" in text:
            return "unknown (forbidden)"
        return f"unknown ({type(exc).__name__})"
    return parse_model_version(out)


def parse_model_version(probe_output: str) -> str:
    """The version in ``ppg-mi probe /readyz`` output (``"<version> loaded and warm"``), or why there is none."""
    found = MODEL_RE.search(probe_output or "")
    if found:
        return found.group(1)
    return "loading" if "loading" in (probe_output or "") else "unknown (no model check)"


def collect(cluster: Cluster, release: str, bootstrap: str | None = None, models: bool = True,
            lag: bool = True) -> ReleaseStatus:
    """Read the release's objects (and, when the broker answers, each stage's lag).

    Raises
    ------
    ClusterCommandError
        Release not found (4), forbidden (5), API unreachable (6).
    """
    require_release(cluster, release)
    ns, sel = cluster.namespace, release_selector(release)
    status = ReleaseStatus(release, ns, cluster.context)
    status.autoscalers = autoscalers_of(cluster, release)
    by_target = {a.target: a for a in status.autoscalers}
    envs: dict[str, dict[str, str]] = {}
    for found in list_workloads(cluster, sel):
        d = found.obj
        scaler = by_target.get(d.metadata.name)
        kind = {"ScaledObject": "keda", "HorizontalPodAutoscaler": "hpa"}.get(scaler.kind, "none") if scaler else "none"
        status.workloads.append(Workload(
            d.metadata.name, _component(d), found.kind, d.spec.replicas if d.spec.replicas is not None else 1,
            d.status.ready_replicas or 0, d.status.updated_replicas or 0, kind,
            scaler.paused_replicas if scaler else None))
        envs[_component(d)] = container_env(d)
    for job in sorted(cluster.call("list jobs", cluster.batch.list_namespaced_job, ns, label_selector=sel).items,
                      key=lambda j: j.metadata.name):
        s = job.status
        status.jobs.append(JobState(job.metadata.name, _component(job), job.spec.completions or 1,
                                    s.succeeded or 0, s.failed or 0, s.active or 0, job_state(job)))
    pods = cluster.call("list pods", cluster.core.list_namespaced_pod, ns, label_selector=sel).items
    for pod in sorted(pods, key=lambda p: p.metadata.name):
        statuses = pod.status.container_statuses or []
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        phase = "Terminating" if pod.metadata.deletion_timestamp else (pod.status.phase or "Unknown")
        state = PodState(pod.metadata.name, _component(pod), phase, ready, sum(c.restart_count for c in statuses))
        if state.component == "classifier":
            if not models:
                state.model = "not asked"
            elif phase == "Running" and any(c.ready or (c.state and c.state.running) for c in statuses):
                state.model = model_version(cluster, pod.metadata.name)
            else:
                state.model = "unknown (not running)"
        status.pods.append(state)
    claims = cluster.call("list persistentvolumeclaims", cluster.core.list_namespaced_persistent_volume_claim, ns,
                          label_selector=sel).items
    status.claims = [Claim(c.metadata.name, c.status.phase or "Unknown", (c.status.capacity or {}).get("storage", ""))
                     for c in claims]
    if lag:
        _add_lag(status, envs, bootstrap)
    for w in status.workloads:
        if w.paused_replicas is not None:
            status.notes.append(f"KEDA is paused for {w.name} at {w.paused_replicas} replicas "
                                f"(`ppg-mi cluster scale {w.component} --resume` hands it back to KEDA)")
    return status


def _add_lag(status: ReleaseStatus, envs: dict[str, dict[str, str]], bootstrap: str | None) -> None:
    merged: dict[str, str] = {}
    for env in envs.values():
        merged.update(env)
    if not merged and not bootstrap:
        status.broker = "unknown (no consuming stage)"
        return
    try:
        settings = kafka.release_settings(merged, bootstrap)
    except Exception as exc:  # noqa: BLE001 - a setting in the caller's env that does not parse
        status.broker = f"not asked: {exc}"
        return
    try:
        for w in status.workloads:
            if w.component in STAGES and w.component in envs:
                group_key, topic_key = STAGES[w.component]
                group = envs[w.component].get(group_key) or getattr(settings, group_key[7:].lower())
                topic = getattr(settings, topic_key[7:].lower())
                w.lag = kafka.group_lag(settings, group, topic)
        status.broker = f"reachable at {settings.bootstrap_servers}"
    except kafka.BrokerUnreachable as exc:
        status.broker = f"unreachable: {exc}"
        status.notes.append("the broker did not answer: lag is not shown (pass --bootstrap HOST:PORT "
                            "for an address reachable from here, e.g. through kubectl port-forward)")


# --- rendering (pure) --------------------------------------------------------------------------
def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns separated by two spaces; ``None`` shows as ``-``."""
    cells = [[str(h) for h in headers]] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def _autoscaler_cell(w: Workload) -> str:
    if w.autoscaler == "keda":
        return f"KEDA (paused at {w.paused_replicas})" if w.paused_replicas is not None else "KEDA"
    return {"hpa": "HPA", "none": "none"}[w.autoscaler]


def format_table(status: ReleaseStatus) -> str:
    """The human view of ``status``: one table per kind of object, then the broker and notes."""
    parts = [f"release {status.release}, namespace {status.namespace}, context {status.context}"]
    if status.workloads:
        parts.append(table(["WORKLOAD", "KIND", "COMPONENT", "READY", "UP-TO-DATE", "AUTOSCALER", "LAG"],
                           [[w.name, w.kind, w.component, f"{w.ready}/{w.desired}", w.updated, _autoscaler_cell(w),
                             w.lag] for w in status.workloads]))
    if status.autoscalers:
        parts.append(table(["AUTOSCALER", "KIND", "TARGET", "MIN", "MAX", "PAUSED"],
                           [[a.name, a.kind, a.target, a.min_replicas, a.max_replicas, a.paused_replicas]
                            for a in status.autoscalers]))
    if status.jobs:
        parts.append(table(["JOB", "COMPONENT", "STATE", "SUCCEEDED", "FAILED", "ACTIVE"],
                           [[j.name, j.component, j.state, f"{j.succeeded}/{j.completions}", j.failed, j.active]
                            for j in status.jobs]))
    if status.pods:
        parts.append(table(["POD", "COMPONENT", "PHASE", "READY", "RESTARTS", "MODEL"],
                           [[p.name, p.component, p.phase, "yes" if p.ready else "no", p.restarts, p.model]
                            for p in status.pods]))
    if status.claims:
        parts.append(table(["PVC", "PHASE", "CAPACITY"], [[c.name, c.phase, c.capacity] for c in status.claims]))
    parts.append(f"broker: {status.broker}")
    parts.extend(f"note: {n}" for n in status.notes)
    return "\n\n".join(parts[:-1 - len(status.notes)]) + "\n\n" + "\n".join(parts[-1 - len(status.notes):])


def to_json(status: ReleaseStatus) -> str:
    """The script view of ``status``: the dataclasses as one JSON object."""
    return json.dumps(dataclasses.asdict(status), indent=2)

