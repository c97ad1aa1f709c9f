"""KEDA's Apache Kafka scaler and the Kubernetes HPA driving the consuming stages, simulated.

A discrete-time model at one-second resolution: no Kafka, no clock, no randomness. Records
arrive on ``ppg.raw``, the filter replicas move them to ``ppg.filtered`` (transactionally, so
every transaction leaves one commit marker in each partition it wrote), the classifier replicas
consume them; each stage is scaled by its own ScaledObject the way KEDA and the HPA do it:

- **the scaler's metric** (KEDA ``pkg/scalers/kafka_scaler.go``, ``getTotalLag``): the sum over
  the topic's partitions of *latest offset − committed offset*; unless ``allowIdleConsumers``,
  when ``totalLag / lagThreshold`` (integer division) exceeds the partition count (or, with
  ``limitToPartitionsWithLag``, the partitions whose lag is above 0) the metric is cut to
  ``upperBound × lagThreshold``. Offsets count commit markers too: a partition of a topic written
  in transactions shows a lag of 1 when its consumer has read everything (the committed offset
  points at the last marker, kedacore/keda#5675), and markers inside a backlog add to it;
- **activation**: the scaler is active when the uncapped total lag is *above*
  ``activationLagThreshold``; KEDA itself scales 0 → 1 when active and back to 0 once inactive for
  ``cooldownPeriod`` (only with ``minReplicaCount`` 0); it asks every ``pollingInterval``;
- **the HPA** (``pkg/controller/podautoscaler``), every sync period (15 s): the metric is an
  ``AverageValue`` target of ``lagThreshold``: usage ratio = metric / (target × current replicas);
  within the tolerance (10 %) of 1 nothing changes, else desired = ⌈metric / target⌉; then the
  stabilisation windows (scale up to the *lowest* recommendation of the up-window, down to the
  *highest* of the down-window), then the rate policies (replicas added or removed within each
  policy's period counted back), then ``minReplicas``/``maxReplicas``. At 0 replicas the HPA
  does nothing (KEDA owns 0 ↔ 1). With ``useCachedMetrics`` off (KEDA's default) the HPA reads
  the lag fresh at its sync, so ``pollingInterval`` only matters for activation;
- **pods**: a new pod costs from its creation and serves from ``startup_s`` later (container,
  imports, model load and numba's compilation, readiness probe); every change of the ready
  consumers moves partitions (cooperative-sticky: only the moved ones) and those pause for
  ``rebalance_s``; a consumer serves at most ``rate_per_replica`` records/s over its partitions,
  so replicas that do not divide the partitions leave capacity unused (6 partitions: 4 or 5
  replicas serve no faster than 3).

A stage that keeps up still shows a lag: the records of the batch it is processing, whose
offsets commit with its transaction. A replica's loop takes what is waiting, processes it and
commits, so a turn lasts T = c + b/μ for a batch of b records at μ records/s, and b = λT at λ
records/s: **T = c / (1 − λ/μ)**, at most c + ``batch_max_records``/μ. The lag in flight is λT
(Little's law) and a record that does not queue spends about 1.5 T in the stage (half a turn
waiting for the current one, then its own). The overhead c (commit, fetch) is calibrated on the
bench's half-load run: T there is the mean batch over the rate.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

#: the HPA's default tolerance (kube-controller-manager --horizontal-pod-autoscaler-tolerance)
HPA_TOLERANCE = 0.1
#: the HPA's default sync period (--horizontal-pod-autoscaler-sync-period)
HPA_SYNC_S = 15
#: a record that does not queue spends half a turn waiting for the current one, then its own
IN_STAGE_TURNS = 1.5
#: resolution of the delay histogram
DELAY_BIN_S = 0.1


@dataclass(frozen=True)
class Policy:
    """One HPA scaling policy: at most ``value`` pods or percent of the replicas per ``period_s``."""

    kind: str  # "Pods" or "Percent"
    value: int
    period_s: int


@dataclass(frozen=True)
class ScalingRules:
    """``behavior.scaleUp`` or ``behavior.scaleDown`` of an HPA.

    Parameters
    ----------
    stabilization_s
        ``stabilizationWindowSeconds``.
    policies
        The policies; ``select`` chooses among their limits.
    select
        ``Max`` (the policy allowing the biggest change, Kubernetes' default), ``Min`` or ``Disabled``.
    """

    stabilization_s: int
    policies: tuple[Policy, ...]
    select: str = "Max"


#: Kubernetes' defaults (autoscaling/v2): up at once, by 100 % or 4 pods per 15 s, whichever is more
DEFAULT_SCALE_UP = ScalingRules(0, (Policy("Percent", 100, 15), Policy("Pods", 4, 15)))
#: Kubernetes' defaults: down after 300 s of lower recommendations, by up to 100 % per 15 s
DEFAULT_SCALE_DOWN = ScalingRules(300, (Policy("Percent", 100, 15),))


@dataclass(frozen=True)
class Autoscaler:
    """The ScaledObject of one stage (its kafka trigger and the HPA KEDA makes from it).

    Parameters
    ----------
    lag_threshold
        ``lagThreshold``: the HPA's ``AverageValue`` target, lag per replica.
    activation_lag_threshold
        ``activationLagThreshold``: the scaler is active above this total lag.
    min_replicas, max_replicas
        ``minReplicaCount`` and ``maxReplicaCount``.
    polling_interval_s, cooldown_s
        ``pollingInterval`` and ``cooldownPeriod`` (KEDA's defaults: 30 and 300).
    allow_idle_consumers, limit_to_partitions_with_lag
        The scaler's options bounding the metric by the partitions (both false in the chart).
    use_cached_metrics
        The HPA reads the value of the last poll instead of asking the scaler at its sync.
    hpa_sync_s, tolerance
        The controller manager's sync period and tolerance.
    scale_up, scale_down
        The HPA's ``behavior``.
    """

    lag_threshold: int
    activation_lag_threshold: int = 0
    min_replicas: int = 1
    max_replicas: int = 100
    polling_interval_s: int = 30
    cooldown_s: int = 300
    allow_idle_consumers: bool = False
    limit_to_partitions_with_lag: bool = False
    use_cached_metrics: bool = False
    hpa_sync_s: int = HPA_SYNC_S
    tolerance: float = HPA_TOLERANCE
    scale_up: ScalingRules = DEFAULT_SCALE_UP
    scale_down: ScalingRules = DEFAULT_SCALE_DOWN


@dataclass(frozen=True)
class Stage:
    """One consuming stage: how fast a replica works and how its pods start.

    Parameters
    ----------
    name
        ``filter`` or ``classifier``.
    rate_per_replica
        Records/s one replica moves when input is waiting.
    startup_s
        Seconds from a pod's creation until it consumes.
    turn_overhead_s
        The overhead c of one turn of the loop (fetch, transaction commit): a turn lasts
        c / (1 − utilisation), at most c + ``batch_max_records`` / ``rate_per_replica``.
    input_transactional
        Whether the input topic is written in transactions (commit markers count as lag).
    autoscaler
        Its ScaledObject.
    initial_replicas
        Replicas at the start, ready.
    """

    name: str
    rate_per_replica: float
    startup_s: int
    turn_overhead_s: float
    input_transactional: bool
    autoscaler: Autoscaler
    initial_replicas: int = 1


@dataclass(frozen=True)
class Cluster:
    """What the two stages share.

    Parameters
    ----------
    partitions
        Partitions of every topic (records keep their partition from topic to topic: same key,
        same partition count).
    rebalance_s
        Seconds a moved partition is served by nobody.
    batch_max_records
        Most records in one transaction (``PPG_MI_BATCH_MAX_RECORDS``).
    filter_transactions_per_s
        Most transactions one filter replica commits per second (back to back).
    """

    partitions: int
    rebalance_s: int = 3
    batch_max_records: int = 256
    filter_transactions_per_s: float = 33.0


# --- KEDA's kafka scaler ----------------------------------------------------------------
def scaler_metric(partition_lags: Sequence[int], lag_threshold: int, allow_idle_consumers: bool = False,
                  limit_to_partitions_with_lag: bool = False) -> int:
    """The value KEDA's kafka scaler gives the HPA: the total lag, capped by the partitions.

    Parameters
    ----------
    partition_lags
        Latest offset − committed offset of every partition of the topic.
    lag_threshold
        ``lagThreshold``.
    allow_idle_consumers, limit_to_partitions_with_lag
        The scaler's options (mutually exclusive in KEDA).

    Returns
    -------
    int
        ``totalLag``, or ``upperBound × lagThreshold`` when ``totalLag // lagThreshold`` exceeds the
        upper bound (all partitions, or those with a lag above 0).
    """
    total = int(sum(partition_lags))
    if allow_idle_consumers and not limit_to_partitions_with_lag:
        return total
    upper = sum(1 for lag in partition_lags if lag > 0) if limit_to_partitions_with_lag else len(partition_lags)
    if total // lag_threshold > upper:  # Go's integer division, as in the scaler
        return upper * lag_threshold
    return total


def scaler_active(partition_lags: Sequence[int], activation_lag_threshold: int) -> bool:
    """KEDA's activity: the total lag (before any cap) is above ``activationLagThreshold``."""
    return int(sum(partition_lags)) > activation_lag_threshold


# --- the HPA ----------------------------------------------------------------------------------
def hpa_desired(metric: float, target: float, current: int, tolerance: float = HPA_TOLERANCE) -> int:
    """Replicas an ``AverageValue`` external metric asks for (``GetExternalPerPodMetricReplicas``).

    Parameters
    ----------
    metric
        The metric's value (the scaler's total lag).
    target
        The target per replica (``lagThreshold``).
    current
        The replicas the scale target has now (> 0).
    tolerance
        Ratios within this of 1 keep ``current``.

    Returns
    -------
    int
        ``current`` when ``|metric / (target × current) − 1| ≤ tolerance``, else ⌈metric / target⌉.
    """
    ratio = metric / (target * current)
    if abs(1.0 - ratio) <= tolerance:
        return current
    return math.ceil(metric / target)


@dataclass
class HpaState:
    """What the HPA controller remembers of one target between syncs."""

    recommendations: list[tuple[int, int]] = field(default_factory=list)   # (time, replicas)
    scale_up_events: list[tuple[int, int]] = field(default_factory=list)   # (time, replicas added)
    scale_down_events: list[tuple[int, int]] = field(default_factory=list)  # (time, replicas removed)


def stabilize(state: HpaState, now: int, desired: int, current: int, up_window_s: int, down_window_s: int) -> int:
    """``stabilizeRecommendationWithBehaviors``: hold ``desired`` within the windows' recommendations.

    Scale up no further than the lowest recommendation of the last ``up_window_s`` seconds, down no
    further than the highest of the last ``down_window_s`` seconds (``desired`` included); records
    ``desired``, reusing the slot of a recommendation older than both windows.
    """
    up, down = desired, desired
    old_index = None
    for index, (t, replicas) in enumerate(state.recommendations):
        if t > now - up_window_s:
            up = min(up, replicas)
        if t > now - down_window_s:
            down = max(down, replicas)
        if t < now - up_window_s and t < now - down_window_s:
            old_index = index
    recommendation = max(current, up)
    recommendation = min(recommendation, down)
    if old_index is not None:
        state.recommendations[old_index] = (now, desired)
    else:
        state.recommendations.append((now, desired))
    return recommendation


def _changed_within(events: list[tuple[int, int]], now: int, period_s: int) -> int:
    return sum(change for t, change in events if t > now - period_s)


def _period_start(state: HpaState, now: int, current: int, period_s: int) -> int:
    """The replica count at the start of a policy's period: ``current`` with the period's changes undone."""
    return (current - _changed_within(state.scale_up_events, now, period_s)
            + _changed_within(state.scale_down_events, now, period_s))


def scale_up_limit(state: HpaState, now: int, current: int, rules: ScalingRules) -> int:
    """``calculateScaleUpLimitWithScalingRules``: most replicas the scale-up policies allow now."""
    if rules.select == "Disabled":
        return current
    proposals = []
    for policy in rules.policies:
        start = _period_start(state, now, current, policy.period_s)
        if policy.kind == "Pods":
            proposals.append(start + policy.value)
        else:
            proposals.append(math.ceil(start * (1 + policy.value / 100)))
    return min(proposals) if rules.select == "Min" else max(proposals)


def scale_down_limit(state: HpaState, now: int, current: int, rules: ScalingRules) -> int:
    """``calculateScaleDownLimitWithBehaviors``: fewest replicas the scale-down policies allow now."""
    if rules.select == "Disabled":
        return current
    proposals = []
    for policy in rules.policies:
        start = _period_start(state, now, current, policy.period_s)
        if policy.kind == "Pods":
            proposals.append(start - policy.value)
        else:
            proposals.append(int(start * (1 - policy.value / 100)))
    # "Max" is the biggest change: the lowest count
    return max(proposals) if rules.select == "Min" else min(proposals)


def hpa_sync(state: HpaState, now: int, metric: float, current: int, scaler: Autoscaler) -> int:
    """One reconciliation of the HPA KEDA made for ``scaler``: the replicas it sets.

    Parameters
    ----------
    state
        The controller's memory of this target (updated).
    now
        Seconds since the start.
    metric
        The scaler's metric as the HPA reads it.
    current
        The scale target's replicas.
    scaler
        The ScaledObject (its HPA: ``minReplicas`` is at least 1, KEDA's rule).

    Returns
    -------
    int
        The new replica count (``current`` when nothing changes; 0 stays 0).
    """
    if current == 0:  # scaling disabled: KEDA alone brings the target back to 1
        return 0
    hpa_min = max(1, scaler.min_replicas)
    if current > scaler.max_replicas:
        desired = scaler.max_replicas
    elif current < hpa_min:
        desired = hpa_min
    else:
        if not state.recommendations:  # maybeInitScaleDownStabilizationWindow
            state.recommendations.append((now, current))
        raw = hpa_desired(metric, scaler.lag_threshold, current, scaler.tolerance)
        desired = stabilize(state, now, raw, current, scaler.scale_up.stabilization_s,
                            scaler.scale_down.stabilization_s)
        if desired > current:
            limit = max(scale_up_limit(state, now, current, scaler.scale_up), current)
            desired = min(desired, scaler.max_replicas, limit)
        elif desired < current:
            limit = min(scale_down_limit(state, now, current, scaler.scale_down), current)
            desired = max(desired, hpa_min, limit)
    if desired > current:
        state.scale_up_events.append((now, desired - current))
    elif desired < current:
        state.scale_down_events.append((now, current - desired))
    return desired


# --- consumers and partitions ------------------------------------------------------------------
def assign_partitions(previous: Sequence[int | None], consumers: Sequence[int], partitions: int) -> list[int | None]:
    """A balanced, sticky assignment (what cooperative-sticky converges to).

    Parameters
    ----------
    previous
        Owner (consumer id) of every partition before, or None.
    consumers
        Ids of the consumers now in the group, oldest first.
    partitions
        Partition count.

    Returns
    -------
    list
        Owner of every partition: every consumer owns ⌊P/n⌋ or ⌈P/n⌉ partitions, and a partition
        keeps its owner while that owner is in the group and within its quota.
    """
    if not consumers:
        return [None] * partitions
    n = len(consumers)
    quota = {c: partitions // n + (1 if i < partitions % n else 0) for i, c in enumerate(consumers)}
    owned = {c: 0 for c in consumers}
    owners: list[int | None] = [None] * partitions
    for p, owner in enumerate(previous):
        if owner in owned and owned[owner] < quota[owner]:
            owners[p] = owner
            owned[owner] += 1
    for p in range(partitions):
        if owners[p] is None:
            c = next(c for c in consumers if owned[c] < quota[c])
            owners[p] = c
            owned[c] += 1
    return owners


def serve(backlogs: Sequence[float], owners: Sequence[int | None], paused: Sequence[bool], rate: float) -> list[float]:
    """Records each partition's owner moves this second: its rate shared by its partitions' backlogs.

    A partition without owner or paused moves nothing; an owner with less backlog than ``rate``
    clears it all, else each partition gets its share of ``rate`` in proportion to its backlog.
    """
    served = [0.0] * len(backlogs)
    waiting: dict[int, float] = {}
    for p, owner in enumerate(owners):
        if owner is not None and not paused[p]:
            waiting[owner] = waiting.get(owner, 0.0) + backlogs[p]
    for p, owner in enumerate(owners):
        if owner is None or paused[p] or backlogs[p] <= 0:
            continue
        served[p] = backlogs[p] * min(1.0, rate / waiting[owner])
    return served


# --- arrivals -------------------------------------------------------------------------------------
def patient_ramp(patients: int, window_s: float, ramp_up_s: int, hold_s: int, ramp_down_s: int,
                 idle_before_s: int = 60, idle_after_s: int = 600) -> np.ndarray:
    """Records/s of ``patients`` each sending one recording per ``window_s``, joining and leaving linearly.

    Returns
    -------
    numpy.ndarray
        One rate per second: idle, ramp up to ``patients / window_s``, hold, ramp down, idle.
    """
    peak = patients / window_s
    up = np.linspace(0.0, peak, ramp_up_s, endpoint=False) if ramp_up_s else np.empty(0)
    down = np.linspace(peak, 0.0, ramp_down_s, endpoint=False) if ramp_down_s else np.empty(0)
    return np.concatenate([np.zeros(idle_before_s), up, np.full(hold_s, peak), down, np.zeros(idle_after_s)])


# --- the simulation ---------------------------------------------------------------------------------
@dataclass
class _Pod:
    id: int
    created: int
    ready_at: int


@dataclass
class _StageState:
    stage: Stage
    partitions: int
    hpa: HpaState = field(default_factory=HpaState)
    pods: list[_Pod] = field(default_factory=list)
    owners: list[int | None] = field(default_factory=list)
    members: tuple[int, ...] = ()
    paused_until: list[int] = field(default_factory=list)
    queues: list[deque] = field(default_factory=list)      # per partition: [origin second, records]
    backlog: list[float] = field(default_factory=list)
    markers: list[float] = field(default_factory=list)     # commit markers after the committed offset
    marked: list[bool] = field(default_factory=list)       # partition ever written in a transaction
    last_active: int = 0
    cached_metric: int = 0
    next_id: int = 0

    def __post_init__(self) -> None:
        n = self.partitions
        self.owners = [None] * n
        self.paused_until = [0] * n
        self.queues = [deque() for _ in range(n)]
        self.backlog = [0.0] * n
        self.markers = [0.0] * n
        self.marked = [False] * n

    def add_pods(self, count: int, now: int, startup_s: int) -> None:
        for _ in range(count):
            self.pods.append(_Pod(self.next_id, now, now + startup_s))
            self.next_id += 1

    def remove_pods(self, count: int) -> None:
        # pods not yet ready first, then the newest: what a ReplicaSet deletes, and a StatefulSet's
        # highest ordinals are its newest pods
        for _ in range(count):
            victim = max(self.pods, key=lambda pod: (pod.ready_at, pod.created, pod.id))
            self.pods.remove(victim)


@dataclass
class Trace:
    """What happened, one value per second.

    Attributes
    ----------
    arrivals
        Records/s produced.
    replicas, ready
        Per stage: pods that exist (cost), pods that consume.
    lag, metric
        Per stage: the total offset lag (markers included) and the scaler's metric.
    delay_mean, delay_max
        End-to-end delay (produced → predicted, seconds) of the records predicted in that second;
        NaN when none was.
    delay_histogram
        Records predicted by their end-to-end delay, in bins of ``DELAY_BIN_S``.
    left_over
        Records still waiting at the end.
    """

    arrivals: np.ndarray
    replicas: dict[str, np.ndarray]
    ready: dict[str, np.ndarray]
    lag: dict[str, np.ndarray]
    metric: dict[str, np.ndarray]
    delay_mean: np.ndarray
    delay_max: np.ndarray
    delay_histogram: np.ndarray
    left_over: float

    def delay_quantile(self, q: float) -> float:
        """The ``q`` quantile of the end-to-end delay of every predicted record (seconds)."""
        total = self.delay_histogram.sum()
        if total <= 0:
            return float("nan")
        index = int(np.searchsorted(np.cumsum(self.delay_histogram), q * total - 1e-9))
        return (index + 0.5) * DELAY_BIN_S

    def replica_seconds(self, stage: str | None = None) -> float:
        """Pod-seconds paid (pods starting included), for one stage or both."""
        names = [stage] if stage else list(self.replicas)
        return float(sum(self.replicas[name].sum() for name in names))


def _reassign(st: _StageState, now: int, rebalance_s: int) -> None:
    """Hand the partitions to the consumers ready now; the ones that move pause for ``rebalance_s``."""
    members = tuple(pod.id for pod in sorted(st.pods, key=lambda pod: (pod.created, pod.id)) if pod.ready_at <= now)
    if members == st.members:
        return
    owners = assign_partitions(st.owners, members, st.partitions)
    for p in range(st.partitions):
        if owners[p] != st.owners[p]:
            st.paused_until[p] = now + rebalance_s
    st.owners, st.members = owners, members


def _take(queue: deque, amount: float) -> list[tuple[int, float, float]]:
    """Remove ``amount`` records from the front of a partition's FIFO: (origin, records, seconds in stages) taken."""
    taken = []
    while amount > 1e-9 and queue:
        origin, records, spent = queue[0]
        if records <= amount + 1e-9:
            queue.popleft()
            taken.append((origin, records, spent))
            amount -= records
        else:
            queue[0][1] = records - amount
            taken.append((origin, amount, spent))
            amount = 0.0
    return taken


def _turns(st: _StageState, served: Sequence[float], batch_max_records: int) -> list[float]:
    """Each partition's turn length this second: its owner's, at the records/s the owner moved."""
    by_owner: dict[int, float] = {}
    for p, owner in enumerate(st.owners):
        if owner is not None:
            by_owner[owner] = by_owner.get(owner, 0.0) + served[p]
    stage = st.stage
    return [0.0 if owner is None else turn_seconds(by_owner[owner], stage.rate_per_replica, stage.turn_overhead_s,
                                                   batch_max_records) for owner in st.owners]


def turn_seconds(records_per_s: float, rate_per_replica: float, overhead_s: float, batch_max_records: int) -> float:
    """How long one turn of a replica's loop lasts at ``records_per_s``: c / (1 − λ/μ), capped.

    The cap is a full batch: c + ``batch_max_records`` / μ (under backlog every turn takes a full batch).
    """
    full = overhead_s + batch_max_records / rate_per_replica
    spare = 1.0 - records_per_s / rate_per_replica
    return full if spare <= 0 else min(full, overhead_s / spare)


def partition_lags(backlog: Sequence[float], in_flight: Sequence[float], markers: Sequence[float]) -> list[int]:
    """Offsets not yet committed per partition, as the scaler reads them.

    The backlog, the records in flight (fetched, their transaction not yet committed) and the commit
    markers after the committed offset, rounded up to whole offsets.
    """
    return [math.ceil(b + f + m - 1e-9) for b, f, m in zip(backlog, in_flight, markers)]


def simulate(filter_stage: Stage, classifier_stage: Stage, cluster: Cluster, arrivals: Sequence[float],
             initial_markers: bool = True) -> Trace:
    """Run the pipeline and both autoscalers over ``arrivals`` (records/s, one per second).

    Parameters
    ----------
    filter_stage, classifier_stage
        The two consuming stages, in pipeline order (the filter writes the classifier's input).
    cluster
        Partitions and what the stages share.
    arrivals
        Records produced in each second, spread evenly over the partitions (keys hash uniformly).
    initial_markers
        The transactional topic's partitions already end with a commit marker (a pipeline that ran
        before), so an idle classifier's lag is one per partition from the start.

    Returns
    -------
    Trace
        Replicas, lag, metric and delays per second.
    """
    n = len(arrivals)
    partitions = cluster.partitions
    states = []
    for stage in (filter_stage, classifier_stage):
        st = _StageState(stage, partitions)
        if stage.input_transactional and initial_markers:
            st.marked = [True] * partitions
            st.markers = [1.0] * partitions
        st.add_pods(stage.initial_replicas, 0, 0)
        _reassign(st, 0, 0)
        states.append(st)
    names = [s.stage.name for s in states]
    replicas = {name: np.zeros(n) for name in names}
    ready = {name: np.zeros(n) for name in names}
    lag = {name: np.zeros(n) for name in names}
    metric = {name: np.zeros(n) for name in names}
    delay_mean = np.full(n, np.nan)
    delay_max = np.full(n, np.nan)
    histogram = np.zeros(int((n + 60) / DELAY_BIN_S))

    for t in range(n):
        per_partition = float(arrivals[t]) / partitions
        if per_partition > 0:
            first = states[0]
            for p in range(partitions):
                first.queues[p].append([t, per_partition, 0.0])
                first.backlog[p] += per_partition
        in_flight_by_stage = []
        for index, st in enumerate(states):
            _reassign(st, t, cluster.rebalance_s)
            paused = [until > t for until in st.paused_until]
            served = serve(st.backlog, st.owners, paused, st.stage.rate_per_replica)
            turns = _turns(st, served, cluster.batch_max_records)
            in_flight_by_stage.append([moved * turn for moved, turn in zip(served, turns)])
            if st.stage.input_transactional:
                _read_past_markers(st, served)
            downstream = states[index + 1] if index + 1 < len(states) else None
            if downstream is not None:
                _write_downstream(st, downstream, served, cluster)
            total, weighted, worst = 0.0, 0.0, -1
            for p in range(partitions):
                if served[p] <= 0:
                    continue
                st.backlog[p] = max(0.0, st.backlog[p] - served[p])
                in_stage = IN_STAGE_TURNS * turns[p]
                for origin, records, spent in _take(st.queues[p], served[p]):
                    if downstream is not None:
                        downstream.queues[p].append([origin, records, spent + in_stage])
                    else:
                        delay = t - origin + spent + in_stage
                        histogram[min(int(delay / DELAY_BIN_S), len(histogram) - 1)] += records
                        total += records
                        weighted += records * delay
                        worst = max(worst, delay)
            if downstream is None and total > 0:
                delay_mean[t] = weighted / total
                delay_max[t] = worst
        for st, in_flight in zip(states, in_flight_by_stage):
            name = st.stage.name
            lags = partition_lags(st.backlog, in_flight, st.markers)
            scaler = st.stage.autoscaler
            value = scaler_metric(lags, scaler.lag_threshold, scaler.allow_idle_consumers,
                                  scaler.limit_to_partitions_with_lag)
            lag[name][t] = sum(lags)
            metric[name][t] = value
            _autoscale(st, t, lags, value)
            replicas[name][t] = len(st.pods)
            ready[name][t] = sum(1 for pod in st.pods if pod.ready_at <= t)
    left_over = float(sum(sum(st.backlog) for st in states))
    return Trace(arrivals=np.asarray(arrivals, dtype=float), replicas=replicas, ready=ready, lag=lag, metric=metric,
                 delay_mean=delay_mean, delay_max=delay_max, delay_histogram=histogram, left_over=left_over)


def _read_past_markers(st: _StageState, served: Sequence[float]) -> None:
    """Markers inside the backlog are read past with its records, in proportion; the last stays.

    Once a partition is caught up its committed offset points at the last commit marker, so a
    partition ever written in a transaction keeps a lag of at least 1.
    """
    for p, moved in enumerate(served):
        if moved > 0 and st.backlog[p] > 0:
            st.markers[p] -= st.markers[p] * min(1.0, moved / st.backlog[p])
        if st.marked[p]:
            st.markers[p] = max(st.markers[p], 1.0)


def _write_downstream(st: _StageState, downstream: _StageState, served: Sequence[float], cluster: Cluster) -> None:
    """Records the stage wrote downstream this second, and the commit markers its transactions left.

    A replica commits back to back while it has input, at most ``filter_transactions_per_s`` times a
    second and at least once per ``batch_max_records``; a transaction leaves a marker in each
    partition it wrote to, so a partition fed ``r`` records in ``k`` transactions gets ``min(r, k)``.
    """
    for p in range(st.partitions):
        downstream.backlog[p] += served[p]
    if not downstream.stage.input_transactional:
        return
    by_owner: dict[int, float] = {}
    for p, owner in enumerate(st.owners):
        if owner is not None:
            by_owner[owner] = by_owner.get(owner, 0.0) + served[p]
    for p, owner in enumerate(st.owners):
        if owner is None or served[p] <= 0:
            continue
        records = by_owner[owner]
        transactions = min(records, max(cluster.filter_transactions_per_s, records / cluster.batch_max_records))
        downstream.markers[p] += min(served[p], transactions)
        downstream.marked[p] = True


def _autoscale(st: _StageState, now: int, lags: Sequence[int], metric: int) -> None:
    """KEDA's poll (activation, 0 ↔ 1, cooldown) and the HPA's sync, when their periods come round."""
    scaler = st.stage.autoscaler
    current = len(st.pods)
    if now % scaler.polling_interval_s == 0:
        active = scaler_active(lags, scaler.activation_lag_threshold)
        st.cached_metric = metric
        if active:
            st.last_active = now
            if current == 0:
                st.add_pods(1, now, st.stage.startup_s)
                return
        elif scaler.min_replicas == 0 and current > 0 and now - st.last_active >= scaler.cooldown_s:
            st.remove_pods(current)
            return
    if now % scaler.hpa_sync_s == 0 and now > 0:
        seen = st.cached_metric if scaler.use_cached_metrics else metric
        desired = hpa_sync(st.hpa, now, seen, current, scaler)
        if desired > current:
            st.add_pods(desired - current, now, st.stage.startup_s)
        elif desired < current:
            st.remove_pods(current - desired)


def with_autoscaler(stage: Stage, **changes: object) -> Stage:
    """``stage`` with some of its ScaledObject's fields changed."""
    return replace(stage, autoscaler=replace(stage.autoscaler, **changes))
