"""The scaling simulation's formulas (KEDA's kafka scaler, the HPA) on hand-computed cases.

Each case is chosen so that a plausible mistake gives another number: integer division in the
scaler's cap, the tolerance's boundary, the stabilisation window's strict cut-off, the rate
policies counting back over their period, activation's strict "above", commit markers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from ppg_mi.bench.scaling import (
    DEFAULT_SCALE_UP,
    Autoscaler,
    Cluster,
    HpaState,
    Policy,
    ScalingRules,
    Stage,
    assign_partitions,
    hpa_desired,
    hpa_sync,
    partition_lags,
    patient_ramp,
    scale_up_limit,
    scaler_active,
    scaler_metric,
    serve,
    simulate,
    turn_seconds,
)
from ppg_mi.bench.scaling_study import (
    REBALANCE_S,
    SECTION_BEGIN,
    SECTION_END,
    STARTUP_S,
    read_chart,
    read_measured,
    turn_overhead,
    write_section,
)

CHART_DOWN = ScalingRules(120, (Policy("Pods", 1, 60),))
REPO = Path(__file__).resolve().parents[2]


# --- KEDA's kafka scaler --------------------------------------------------------------------------
def test_metric_is_the_total_lag_below_the_partition_cap() -> None:
    assert scaler_metric([100, 50, 0, 0, 0, 1], lag_threshold=100) == 151


def test_metric_cap_uses_integer_division_as_the_scaler_does() -> None:
    # 650 // 100 = 6, not above 6 partitions: left alone (a float division would cut it to 600)
    assert scaler_metric([650, 0, 0, 0, 0, 0], lag_threshold=100) == 650
    # 700 // 100 = 7 > 6: cut to 6 × 100
    assert scaler_metric([700, 0, 0, 0, 0, 0], lag_threshold=100) == 600


def test_allow_idle_consumers_removes_the_cap() -> None:
    assert scaler_metric([700, 0, 0, 0, 0, 0], lag_threshold=100, allow_idle_consumers=True) == 700


def test_limit_to_partitions_with_lag_is_defeated_by_commit_markers() -> None:
    # one busy partition: the cap is 1 × threshold
    assert scaler_metric([500, 0, 0, 0, 0, 0], 100, limit_to_partitions_with_lag=True) == 100
    # the same on a transactional topic: every idle partition shows its marker, all 6 "have lag"
    assert scaler_metric([500, 1, 1, 1, 1, 1], 100, limit_to_partitions_with_lag=True) == 505


def test_activation_is_strictly_above_the_threshold() -> None:
    idle_markers = [1] * 6
    assert not scaler_active(idle_markers, 7)            # the chart's partitions + 1
    assert not scaler_active(idle_markers, 6)            # equal is not above
    assert scaler_active(idle_markers, 5)
    assert scaler_active(idle_markers, 0)                 # KEDA's default: markers keep it active
    assert scaler_active([3, 1, 1, 1, 1, 1], 7)           # one record and its marker: 8 > 7


# --- the HPA ------------------------------------------------------------------------------------
def test_hpa_tolerance_keeps_replicas_within_ten_percent() -> None:
    assert hpa_desired(105, 100, current=1) == 1          # ratio 1.05
    assert hpa_desired(111, 100, current=1) == 2          # ratio 1.11: ⌈1.11⌉
    assert hpa_desired(650, 100, current=6) == 6          # ratio 1.083: not 7
    assert hpa_desired(540, 100, current=6) == 6          # ratio 0.9 (1 − 0.9 is 0.0999… in floats, as in Go)
    assert hpa_desired(480, 100, current=6) == 5          # ratio 0.8: ⌈4.8⌉


def test_scale_down_is_held_by_the_window_then_one_pod_per_minute() -> None:
    scaler = Autoscaler(lag_threshold=100, max_replicas=6, scale_down=CHART_DOWN)
    state, replicas, seen = HpaState(), 6, {}
    for now in range(15, 316, 15):
        replicas = hpa_sync(state, now, metric=6, current=replicas, scaler=scaler)   # idle: wants 1
        seen[now] = replicas
    assert all(seen[t] == 6 for t in range(15, 121, 15))   # the window's recommendations still hold 6
    # the first sync whose window (t − 120, t] no longer holds the initial 6: one pod, then one per 60 s
    assert [seen[t] for t in (135, 150, 180, 195, 240, 255, 300, 315)] == [5, 5, 5, 4, 4, 3, 3, 2]


def test_scale_up_policies_allow_four_pods_or_double_per_15_s() -> None:
    scaler = Autoscaler(lag_threshold=100, max_replicas=20)
    state = HpaState()
    assert hpa_sync(state, 15, metric=1000, current=1, scaler=scaler) == 5      # max(2 × 1, 1 + 4)
    assert hpa_sync(state, 30, metric=1000, current=5, scaler=scaler) == 10     # max(2 × 5, 5 + 4)


def test_scale_up_limit_counts_the_pods_added_within_the_period() -> None:
    state = HpaState(scale_up_events=[(10, 4)])
    # at 20 the +4 of 10 is within 15 s: the period started from 1 replica
    assert scale_up_limit(state, 20, current=5, rules=DEFAULT_SCALE_UP) == 5
    assert scale_up_limit(state, 25, current=5, rules=DEFAULT_SCALE_UP) == 10   # 10 > 25 − 15 is false


def test_max_replicas_caps_the_hpa() -> None:
    scaler = Autoscaler(lag_threshold=100, max_replicas=6)
    assert hpa_sync(HpaState(), 15, metric=5000, current=4, scaler=scaler) == 6


def test_hpa_leaves_zero_replicas_to_keda() -> None:
    scaler = Autoscaler(lag_threshold=100, min_replicas=0, max_replicas=6)
    assert hpa_sync(HpaState(), 15, metric=5000, current=0, scaler=scaler) == 0


# --- consumers --------------------------------------------------------------------------------------
def test_assignment_is_balanced_and_sticky() -> None:
    three = assign_partitions([None] * 6, [0, 1, 2], 6)
    assert sorted(three.count(c) for c in (0, 1, 2)) == [2, 2, 2]
    four = assign_partitions(three, [0, 1, 2, 3], 6)
    assert sorted(four.count(c) for c in (0, 1, 2, 3)) == [1, 1, 2, 2]
    assert sum(a != b for a, b in zip(three, four)) == 1      # only what the newcomer takes moves


def test_an_owner_shares_its_rate_between_its_partitions() -> None:
    served = serve([300.0, 100.0, 50.0], [0, 0, 1], [False, False, False], rate=200.0)
    assert served == pytest.approx([150.0, 50.0, 50.0])
    # a partition paused by a rebalance moves nothing, and its owner's whole rate goes to the others
    assert serve([300.0, 100.0], [0, 0], [True, False], rate=200.0) == pytest.approx([0.0, 100.0])


def test_turn_lasts_overhead_over_spare_capacity_capped_at_a_full_batch() -> None:
    assert turn_seconds(0.0, 1000.0, 0.05, 256) == pytest.approx(0.05)
    assert turn_seconds(500.0, 1000.0, 0.05, 256) == pytest.approx(0.10)
    assert turn_seconds(1000.0, 1000.0, 0.05, 256) == pytest.approx(0.05 + 0.256)


def test_lag_counts_backlog_in_flight_and_markers() -> None:
    assert partition_lags([10.0, 0.0], [13.0, 0.2], [1.0, 1.0]) == [24, 2]


# --- the whole loop --------------------------------------------------------------------------------
def _stage(name: str, scaler: Autoscaler, rate: float = 100.0, startup: int = 10, initial: int | None = None,
           transactional: bool = False) -> Stage:
    initial = max(1, scaler.min_replicas) if initial is None else initial
    return Stage(name, rate, startup, 0.01, transactional, scaler, initial_replicas=initial)


def _fixed(replicas: int) -> Autoscaler:
    return Autoscaler(lag_threshold=10**9, min_replicas=replicas, max_replicas=replicas)


def test_four_replicas_on_six_partitions_serve_no_faster_than_three() -> None:
    arrivals = np.full(300, 350.0)        # 3.5 replicas' worth, spread over 6 partitions
    for replicas, keeps_up in ((4, False), (6, True)):
        trace = simulate(_stage("filter", _fixed(6), rate=10_000), _stage("classifier", _fixed(replicas)),
                         Cluster(6), arrivals)
        assert (trace.left_over < 1) is keeps_up


def test_activation_scales_from_zero_to_one_then_the_hpa_takes_over() -> None:
    scaler = Autoscaler(lag_threshold=50, activation_lag_threshold=7, min_replicas=0, max_replicas=6,
                        polling_interval_s=10, cooldown_s=60)
    arrivals = np.concatenate([np.zeros(30), np.full(200, 300.0)])
    trace = simulate(_stage("filter", _fixed(6), rate=10_000), _stage("classifier", scaler, initial=0), Cluster(6),
                     arrivals)
    replicas = trace.replicas["classifier"]
    assert replicas[:30].max() == 0
    first = int(np.argmax(replicas > 0))
    assert first == 30 and replicas[first] == 1          # KEDA's poll at 30 sees the lag: 0 → 1
    assert replicas[first + 14] == 1                      # the HPA has not synced yet
    assert replicas.max() > 1                             # from 1 on, the HPA scales


def test_commit_markers_keep_a_default_activation_awake() -> None:
    idle = np.zeros(400)
    for activation, sleeps in ((0, False), (7, True)):
        scaler = Autoscaler(lag_threshold=100, activation_lag_threshold=activation, min_replicas=0, max_replicas=6,
                            polling_interval_s=15, cooldown_s=120)
        trace = simulate(_stage("filter", _fixed(1)), _stage("classifier", scaler, transactional=True), Cluster(6),
                         idle)
        assert trace.lag["classifier"][-1] == 6               # one marker per partition
        assert bool(trace.replicas["classifier"][-1] == 0) is sleeps


def test_markers_add_to_the_lag_of_a_transactional_topic_only() -> None:
    arrivals = np.full(100, 6.0)    # one record per partition per second: one transaction each
    for transactional in (False, True):
        trace = simulate(_stage("filter", _fixed(1)), _stage("classifier", _fixed(1), transactional=transactional),
                         Cluster(6), arrivals, initial_markers=False)
        assert trace.lag["classifier"][-1] == (6 if transactional else 0) + 6   # + 6 in flight, rounded up


def test_delay_of_a_stage_that_never_queues_is_its_turns() -> None:
    trace = simulate(_stage("filter", _fixed(6), rate=10_000), _stage("classifier", _fixed(6), rate=10_000),
                     Cluster(6), np.full(60, 60.0))
    assert trace.delay_quantile(0.99) == pytest.approx(0.05)   # 1.5 × 0.01 s per stage, in 0.1 s bins


def test_patient_ramp_peaks_at_patients_over_window() -> None:
    rates = patient_ramp(100_000, 20.0, ramp_up_s=10, hold_s=5, ramp_down_s=10, idle_before_s=2, idle_after_s=3)
    assert len(rates) == 30 and rates.max() == pytest.approx(5000.0)
    assert rates[2] == 0.0 and rates[12:17].tolist() == [5000.0] * 5


# --- inputs and outputs of the command -------------------------------------------------------------
def test_reads_the_chart_as_shipped() -> None:
    chart = read_chart(REPO / "helm" / "ppg-mi")
    assert chart.partitions >= chart.max_replicas["classifier"]
    assert chart.activation_lag_threshold["classifier"] > chart.partitions
    assert chart.scale_down.policies and chart.scale_down.stabilization_s > 0
    assert chart.allow_idle_consumers is False


def test_measured_figures_fall_back_and_say_so(tmp_path: Path) -> None:
    missing = read_measured(tmp_path / "absent.json")
    assert missing["classifier_rate"].value == 908.0 and "performance.md" in missing["classifier_rate"].source
    report = tmp_path / "performance.json"
    report.write_text('{"pipeline": {"one_classifier": {"records_per_s": 1234.5}}}')
    assert read_measured(report)["classifier_rate"].value == 1234.5
    # c = time in stage × (1 − λ₀/μ) / 1.5 = 0.132 × (1 − 454/908) / 1.5
    assert turn_overhead(missing, "classifier") == pytest.approx(0.044)


def test_section_is_replaced_between_its_markers(tmp_path: Path) -> None:
    md = tmp_path / "performance.md"
    md.write_text("# Performance\n\nintro\n")
    write_section(md, f"{SECTION_BEGIN}\nfirst\n{SECTION_END}\n")
    md.write_text(md.read_text() + "\n## Later\n\nkept\n")
    write_section(md, f"{SECTION_BEGIN}\nsecond\n{SECTION_END}\n")
    text = md.read_text()
    assert "first" not in text and "second" in text and "intro" in text and "kept" in text


def test_cli_defaults_are_the_measured_ones() -> None:
    from ppg_mi.cli import build_parser

    args = build_parser().parse_args(["bench", "scaling"])
    assert isinstance(args, argparse.Namespace)
    assert (args.filter_startup, args.classifier_startup, args.rebalance) == (
        STARTUP_S["filter"], STARTUP_S["classifier"], REBALANCE_S)
    assert build_parser().parse_args(["bench", "--quick"]).func.__name__ == "cmd_bench"
