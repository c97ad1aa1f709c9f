"""``ppg-mi cluster check``: is the release really working? (the chart's ``helm test`` pod runs it)

1. Its objects are ready: every StatefulSet and Deployment has its desired replicas ready, no Job failed, every
   PersistentVolumeClaim is Bound.
2. A canary recording sent to the raw topic comes back as a prediction, read ``read_committed``,
   within the deadline (``--no-canary`` skips it).

Reads only: get/list on StatefulSets, Deployments, Jobs, Pods, PVCs, ScaledObjects and HPAs in the release's
namespace (the test pod's Role), and the broker. It never needs ``pods/exec``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from . import broker as kafka
from .api import Cluster
from .status import ReleaseStatus, collect


@dataclass
class CheckResult:
    """The verdict: ``ok`` when no problem was found; ``lines`` say what was checked."""

    ok: bool
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def object_problems(status: ReleaseStatus) -> list[str]:
    """What is not ready in a collected status (pure)."""
    problems = []
    for w in status.workloads:
        if w.ready < w.desired:
            problems.append(f"{w.kind} {w.name}: {w.ready}/{w.desired} replicas ready")
    for j in status.jobs:
        if j.state == "Failed":
            problems.append(f"Job {j.name} failed ({j.failed} failed pods)")
    for c in status.claims:
        if c.phase != "Bound":
            problems.append(f"PersistentVolumeClaim {c.name} is {c.phase}")
    if not status.workloads:
        problems.append("the release has no Deployment or StatefulSet")
    return problems


def run_check(cluster: Cluster, release: str, canary: bool = True, deadline_s: float = 120.0,
              bootstrap: str | None = None, progress: Callable[[str], None] = lambda line: None) -> CheckResult:
    """Check the objects, then (``canary``) the round trip through the pipeline."""
    import time

    started = time.monotonic()
    while True:  # objects still rolling out get until half the deadline to turn ready
        status = collect(cluster, release, bootstrap, models=False, lag=False)
        problems = object_problems(status)
        if not problems or time.monotonic() - started > deadline_s / 2:
            break
        progress("waiting: " + "; ".join(problems))
        time.sleep(3)
    result = CheckResult(True)
    kinds = ", ".join(f"{sum(w.kind == k for w in status.workloads)} {k}s" for k in ("StatefulSet", "Deployment"))
    result.lines.append(f"objects: {kinds}, {len(status.jobs)} Jobs, "
                        f"{len(status.claims)} PVCs, {len(status.autoscalers)} autoscalers"
                        + ("" if problems else ": ready"))
    result.problems.extend(problems)
    if canary:
        env: dict[str, str] = {}
        from .api import container_env, find_workload
        for component in ("filter", "classifier"):
            env.update(container_env(find_workload(cluster, release, component).obj))
        settings = kafka.release_settings(env, bootstrap)
        try:
            found = kafka.send_canary(settings, max(deadline_s - (time.monotonic() - started), 30.0), progress)
            result.lines.append(f"canary {found.record_id}: predicted {found.label} by model {found.model_version} "
                                f"in {found.seconds} s ({settings.topic_raw} → {settings.topic_predictions})")
        except kafka.BrokerUnreachable as exc:
            result.problems.append(f"canary: {exc}")
    else:
        result.lines.append("canary: skipped (--no-canary)")
    result.ok = not result.problems
    return result
