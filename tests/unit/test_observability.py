"""Pure logic of ppg_mi.observability: health, readiness gauge, endpoints, stage metrics, lag, logs."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request

import pytest
from prometheus_client import REGISTRY

from ppg_mi.observability import alerts
from ppg_mi.observability.lag import partition_lag
from ppg_mi.observability.logs import JsonFormatter
from ppg_mi.observability.metrics import StageMetrics
from ppg_mi.observability.probe import fetch, metric_total
from ppg_mi.observability.server import Health, MetricsServer


def _value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


# --- lag ---------------------------------------------------------------------------
def test_partition_lag_is_end_minus_committed() -> None:
    assert partition_lag({0: 10, 1: 7}, {0: 4, 1: 7}, {}) == {0: 6, 1: 0}


def test_partition_lag_of_an_idle_transactional_partition_is_the_marker() -> None:
    # 5 records at offsets 0..4, the commit marker at 5: consumed all, committed 5, end 6
    assert partition_lag({0: 6}, {0: 5}, {}) == {0: 1}


def test_partition_lag_without_a_commit_counts_from_the_log_start() -> None:
    assert partition_lag({0: 50, 1: 9}, {0: -1001}, {0: 20, 1: 0}) == {0: 30, 1: 9}


def test_partition_lag_never_negative() -> None:
    assert partition_lag({0: 3}, {0: 5}, {}) == {0: 0}


# --- health and readiness -------------------------------------------------------------
def test_liveness_holds_until_the_loop_stalls() -> None:
    health = Health(liveness_timeout_s=0.0, role="unit-live")
    assert health.live()[0], "before the loop's first turn start-up counts as live"
    health.beat()
    ok, body = health.live()
    assert not ok and "loop_last_turn_seconds_ago" in body
    assert Health(liveness_timeout_s=60.0).live()[0]


def test_readiness_sets_the_gauges_and_names_the_failing_check() -> None:
    health = Health(role="unit-ready")
    state = {"model": False}
    health.add_check("broker", lambda: (True, "1 broker(s)"))
    health.add_check("model", lambda: (state["model"], "warming up"))
    ok, body = health.ready()
    assert not ok and body["model"] == {"ok": False, "detail": "warming up"}
    assert _value("ppg_mi_ready", role="unit-ready") == 0
    assert _value("ppg_mi_readiness_check", role="unit-ready", check="broker") == 1
    assert _value("ppg_mi_readiness_check", role="unit-ready", check="model") == 0
    state["model"] = True
    assert health.ready()[0]
    assert _value("ppg_mi_ready", role="unit-ready") == 1


def test_a_raising_check_means_not_ready() -> None:
    health = Health(role="unit-raise")

    def boom() -> tuple[bool, str]:
        raise RuntimeError("no broker")

    health.add_check("broker", boom)
    ok, body = health.ready()
    assert not ok and "no broker" in body["broker"]["detail"]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture
def server() -> MetricsServer:
    health = Health(role="unit-http")
    state = {"ready": False}
    health.add_check("model", lambda: (state["ready"], "loading"))
    srv = MetricsServer("127.0.0.1", 0, health).start()
    srv.state = state  # type: ignore[attr-defined]
    yield srv
    srv.stop()


def test_endpoints_serve_metrics_health_and_readiness(server: MetricsServer) -> None:
    base = f"http://127.0.0.1:{server.port}"
    code, text = _get(base + "/metrics")
    assert code == 200 and 'ppg_mi_ready{role="unit-http"} 0.0' in text, "a scrape carries current readiness"
    assert _get(base + "/healthz")[0] == 200
    code, text = _get(base + "/readyz")
    assert code == 503 and json.loads(text)["model"]["detail"] == "loading"
    server.state["ready"] = True  # type: ignore[attr-defined]
    assert _get(base + "/readyz")[0] == 200
    assert 'ppg_mi_ready{role="unit-http"} 1.0' in _get(base + "/metrics")[1]
    assert _get(base + "/nope")[0] == 404


def test_probe_reads_a_running_server_and_reports_no_answer_as_none(server: MetricsServer) -> None:
    assert fetch(server.port, "/readyz") is None, "503 while the model loads is not an answer"
    ready_before = metric_total(fetch(server.port, "/metrics") or "", "ppg_mi_ready")  # other tests' roles too
    server.state["ready"] = True  # type: ignore[attr-defined]
    assert fetch(server.port, "/readyz") is not None
    assert metric_total(fetch(server.port, "/metrics") or "", "ppg_mi_ready") == ready_before + 1
    server.stop()
    assert fetch(server.port, "/metrics") is None


def test_metric_total_sums_every_label_set_and_matches_whole_names() -> None:
    exposition = "\n".join([
        "# HELP ppg_mi_records_consumed_total records consumed",
        'ppg_mi_records_consumed_total{stage="filter"} 5.0',
        'ppg_mi_records_consumed_total{stage="classifier"} 7.0',
        "ppg_mi_records_consumed_total_extra 100.0",
        "ppg_mi_records 1e3",
    ])
    assert metric_total(exposition, "ppg_mi_records_consumed_total") == 12.0
    assert metric_total(exposition, "ppg_mi_records") == 1000.0
    assert metric_total(exposition, "ppg_mi_absent") == 0.0


# --- stage metrics --------------------------------------------------------------------
def test_stage_metrics_count_every_term_of_in_equals_out_plus_dead_letters() -> None:
    metrics = StageMetrics("unit-stage")
    assert _value("ppg_mi_transactions_total", stage="unit-stage", outcome="aborted") == 0
    assert _value("ppg_mi_records_dead_lettered_total", stage="unit-stage", reason="none") == 0
    metrics.consumed(5)
    metrics.produced(4)
    metrics.dead_lettered("unknown_schema")
    metrics.transaction("committed")
    metrics.batch(5, 0.02)
    metrics.assigned(3)
    metrics.heartbeat()
    consumed = _value("ppg_mi_records_consumed_total", stage="unit-stage")
    produced = _value("ppg_mi_records_produced_total", stage="unit-stage")
    dead = _value("ppg_mi_records_dead_lettered_total", stage="unit-stage", reason="unknown_schema")
    assert (consumed, produced, dead) == (5, 4, 1)
    assert _value("ppg_mi_batch_size_records_sum", stage="unit-stage") == 5
    assert _value("ppg_mi_assigned_partitions", stage="unit-stage") == 3
    assert metrics.partitions_assigned == 3
    assert _value("ppg_mi_loop_last_turn_timestamp_seconds", stage="unit-stage") > 0


def test_librdkafka_consumer_lag_is_not_exported() -> None:
    # measured against a consumer-committed offset the transactional loop never has
    StageMetrics("unit-lag").lag("t", 0, 42)
    assert _value("ppg_mi_consumer_lag_records", stage="unit-lag", topic="t", partition="0") is None


# --- logs -----------------------------------------------------------------------------
def test_json_log_line_carries_the_event_and_its_fields() -> None:
    record = logging.LogRecord("ppg_mi.streaming.loop", logging.WARNING, __file__, 1, "dead letter", (), None)
    record.record_id = "spine-7"
    record.reason = "truncated"
    line = json.loads(JsonFormatter().format(record))
    assert line["event"] == "dead letter" and line["level"] == "warning"
    assert line["record_id"] == "spine-7" and line["reason"] == "truncated"
    assert line["ts"].endswith("Z")


def test_json_log_line_includes_the_exception() -> None:
    try:
        raise ValueError("bad samples")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "record failed", (), sys.exc_info())
    assert "ValueError: bad samples" in json.loads(JsonFormatter().format(record))["exception"]


# --- alerts as data -------------------------------------------------------------------
def test_every_alert_signal_is_part_of_its_expression() -> None:
    for alert in alerts.ALERTS:
        assert alert.signals
        for signal in alert.signals:
            assert signal in alert.expr, (alert.name, signal)
