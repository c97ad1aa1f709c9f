"""The benchmark's arithmetic and report generation on tiny, hand-made inputs (no timing)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ppg_mi.bench.kafka_perf import parse_consumer_output, parse_producer_output
from ppg_mi.bench.report import (
    SCALING_END,
    compute_ratios,
    finish,
    pipeline_limit,
    refresh_targets,
    render_markdown,
    stage_limits,
    turn_split,
    write_reports,
)
from ppg_mi.bench.stats import delta_between, percentiles, ratio, steady_window, sustained_rate, value_at

SCALING_BLOCK = ("<!-- scaling-simulation:begin (written by `ppg-mi bench scaling`) -->\n"
                 "## Scaling on lag, simulated\n\n![plot](img/scaling-chart-defaults.png)\n"
                 "<!-- scaling-simulation:end -->")


def _stage(rate: float, cpu_ms: float, **extra: object) -> dict:
    return {"records_per_s": rate, "cpu_ms_per_record": cpu_ms, "records_per_cpu_s": 1000 / cpu_ms,
            "cpu_share": rate * cpu_ms / 1000, **extra}


def _results() -> dict:
    return {
        "meta": {"cpu_count": 2, "cpu_model": "Test CPU", "quick": True, "load_start": [1.0, 1.0, 1.0],
                 "load_end": [2.0, 1.5, 1.0], "record_bytes": 8047, "batch_max_records": 256},
        "backlog": _stage(5000.0, 0.05, broker_cpu_ms_per_record=0.1),
        "stages": {
            # identity 4000/s; the filter's CPU limit 5000/s: Kafka binds, 3800 / 4000 = 95 %
            "identity": _stage(4000.0, 0.04, stage="identity"),
            "filter": _stage(3800.0, 0.2, stage="filter", peak_rss_mb=150.0,
                             turns={"mean_batch": 256.0, "batch_s": 0.060, "commit_s": 0.010}),
            # the classifier's CPU limit 800/s binds: 640 / 800 = 80 %
            "classifier": _stage(640.0, 1.25, stage="classifier", peak_rss_mb=380.0),
        },
        "filter_before": _stage(1900.0, 0.2, knob_label="PPG_MI_FETCH_QUEUE_BACKOFF_MS=1000"),
        "pipeline": {
            "one_classifier": {"records_per_s": 650.0, "span_records_per_s": 600.0, "classifiers": 1,
                               "cpu_ms_per_record": {"filter": 0.2, "classifier": 1.25, "broker": 0.5},
                               "peak_rss_mb": {"filter": 130.0, "classifier-1": 400.0, "producer": 60.0}},
            "two_classifiers": {"records_per_s": 1200.0, "span_records_per_s": 1100.0, "classifiers": 2,
                                "cpu_ms_per_record": {"filter": 0.2, "classifier": 1.3, "broker": 0.45},
                                "peak_rss_mb": {"filter": 140.0, "classifier-1": 410.0, "classifier-2": 650.0}},
            "latency": {"records": 50, "rate": 300.0, "latency_s": {"p50": 0.1, "p95": 0.2, "p99": 0.3},
                        "latency_segments_s": {"produced_to_filtered": {"p50": 0.02, "p99": 0.05},
                                               "filtered_to_predicted": {"p50": 0.08, "p99": 0.25}},
                        "commit_ms": {"filter": 9.0, "classifier": 12.0}, "classifier_mean_batch": 30.0,
                        "peak_rss_mb": {"filter": 120.0, "classifier-1": 390.0}},
        },
    }


def _verdicts(results: dict) -> dict:
    return {t["name"]: t["met"] for t in results["targets"]}


def test_a_stage_is_held_to_the_lower_of_its_kafka_and_cpu_limits() -> None:
    r = compute_ratios(_results())
    assert r["filter"]["binding"] == "Kafka" and r["filter"]["of_binding"] == pytest.approx(3800 / 4000)
    assert r["filter"]["of_cpu"] == pytest.approx(3800 / 5000)
    assert r["classifier"]["binding"] == "CPU" and r["classifier"]["of_binding"] == pytest.approx(640 / 800)
    assert r["classifier"]["of_kafka"] == pytest.approx(640 / 4000)
    assert r["filter_before"]["of_binding"] == pytest.approx(1900 / 4000)
    # without the identity stage only the CPU limit is known, and it binds
    alone = stage_limits(_stage(3800.0, 0.2), None)
    assert alone["binding"] == "CPU" and alone["kafka_limit"] is None and alone["of_binding"] == pytest.approx(0.76)


def test_the_pipeline_limit_spreads_every_process_cpu_over_the_cores() -> None:
    lim = pipeline_limit(_results()["pipeline"]["two_classifiers"], 0.05, 2)
    # 0.2 + 1.3 + 0.45 + the producer's 0.05 = 2.0 CPU ms per record: 2 CPUs move 1000 records/s
    # (two classifiers with a core each would manage 1,538)
    assert lim["cpu_ms_per_record_total"] == pytest.approx(2.0)
    assert lim["cpu_limit"] == pytest.approx(1000.0) and lim["of_cpu_limit"] == pytest.approx(1.1)
    assert lim["binding"] == "the machine's CPUs"
    # one classifier of 1.25 ms a record on a core of its own: 800/s, below what 2 CPUs would allow
    cheap = {"records_per_s": 750.0, "span_records_per_s": 700.0, "classifiers": 1,
             "cpu_ms_per_record": {"classifier": 1.25, "broker": 0.2}}
    lim = pipeline_limit(cheap, 0.05, 2)
    assert lim["cpu_limit"] == pytest.approx(800.0) and lim["binding"] == "a core per classifier thread"
    assert lim["of_cpu_limit"] == pytest.approx(700 / 800)
    # the same classifier on two threads could use both cores: the machine binds (2 / 1.5 ms)
    lim = pipeline_limit({**cheap, "classifier_threads": 2}, 0.05, 2)
    assert lim["classifiers_limit"] == pytest.approx(1600.0)
    assert lim["cpu_limit"] == pytest.approx(2000 / 1.5) and lim["binding"] == "the machine's CPUs"
    assert pipeline_limit({"records_per_s": 10.0}, None, 2)["cpu_limit"] is None
    # the steady rate leaves out the start and the tail whose CPU the per-record figures count: no ratio
    assert pipeline_limit({"records_per_s": 10.0, "cpu_ms_per_record": {"filter": 1.0}}, None, 2)["of_cpu_limit"] is None


def test_a_turn_is_split_into_processing_commit_and_waiting() -> None:
    t = turn_split(_results()["stages"]["filter"])
    assert t["turn_s"] == pytest.approx(256 / 3800)
    assert t["process_s"] == pytest.approx(0.050) and t["commit_s"] == pytest.approx(0.010)
    assert t["wait_s"] == pytest.approx(256 / 3800 - 0.060)
    assert turn_split({"records_per_s": 1.0}) == {}
    # processing during the commit: a batch's fetch-to-commit time spans more than its turn
    overlapped = {**_results()["stages"]["filter"], "settings": {"process_during_commit": True}}
    t = turn_split(overlapped)
    assert t["overlapped"] and t["process_s"] is None and t["wait_s"] is None
    assert t["commit_s"] == pytest.approx(0.010) and t["turn_s"] == pytest.approx(256 / 3800)


def test_targets_give_each_goal_a_verdict() -> None:
    v = _verdicts(finish(_results()))
    assert v["filter: records/s / the lower of its Kafka and CPU limits"] is True        # 95 %
    assert v["classifier: records/s / the lower of its Kafka and CPU limits"] is False   # 80 %
    # one classifier: 600 / its core's 800 = 75 %; two: 1100 / (2000 / 2.0) = 110 %
    assert v["end to end / pipeline's CPU-bound limit, one classifier"] is False
    assert v["end to end / pipeline's CPU-bound limit, two classifiers"] is True
    assert v["p99 produced → predicted at half load"] is False                          # 0.30 s > 0.25 s
    assert v["classifier peak RSS"] is False and v["filter peak RSS"] is True            # 650 MB, 150 MB
    goals = {t["goal"] for t in finish(_results())["targets"]}
    assert {"1", "2", "3", "4", "5"} <= goals


def test_missing_measurements_are_not_verdicts() -> None:
    results = _results()
    del results["pipeline"]["latency"]
    del results["stages"]["classifier"]
    v = _verdicts(finish(results))
    assert v["p99 produced → predicted at half load"] is None
    assert v["classifier: records/s / the lower of its Kafka and CPU limits"] is None


def test_the_scaling_goal_takes_its_verdict_from_the_simulation() -> None:
    scaling = {"bound_s": 5.0, "chart_defaults": {"delay_quantile_s": 6.75}, "recommended": {"delay_quantile_s": 2.65}}
    target = next(t for t in finish(_results(), scaling)["targets"] if t["goal"] == "5")
    assert "6.8 s (**not within** 5 s)" in target["status"] and "2.6 s" in target["status"]
    target = next(t for t in finish(_results())["targets"] if t["goal"] == "5")
    assert target["status"].startswith("not run")


def test_reports_are_written_with_targets_limits_and_where_time_goes(tmp_path: Path) -> None:
    write_reports(finish(_results()), tmp_path / "p.json", tmp_path / "p.md")
    assert json.loads((tmp_path / "p.json").read_text())["ratios"]["filter"]["binding"] == "Kafka"
    md = (tmp_path / "p.md").read_text()
    assert "Test CPU" in md and "1.00 / 1.00 / 1.00" in md
    assert md.index("## Targets") < md.index("## Limits") < md.index("## Where the time goes")
    assert "| 1 | filter: records/s / the lower of its Kafka and CPU limits | 95 % (≥ 90 %) | met |" in md
    assert "Kafka: **95 %**" in md and "CPU: **80 %**" in md
    assert "filter, before: PPG_MI_FETCH_QUEUE_BACKOFF_MS=1000" in md
    assert "| filter | 256 | 67 | 50 | 10 | 7 |" in md  # one turn: 67 ms = 50 processing + 10 commit + 7 waiting
    assert "p99 **300 ms**" in md


def test_notes_say_where_a_stage_turn_goes_and_show_before_and_after() -> None:
    results = _results()
    results["stage_knobs"] = [_stage(4500.0, 0.2, stage="filter", knob_label="PPG_MI_BATCH_MAX_RECORDS=1024"),
                              _stage(2000.0, 0.2, stage="filter", knob_label="PPG_MI_BATCH_MAX_RECORDS=64")]
    results["pipeline"]["latency: x"] = {"knob_label": "PPG_MI_FETCH_WAIT_MAX_MS=500 (librdkafka's default, before)",
                                         "latency_s": {"p99": 0.42}}
    text = "\n".join(finish(results)["notes"])
    assert "filter: 95 % of its Kafka limit. A turn of 256 records is 50 ms of processing" in text
    assert "idles 26 % of the time" in text  # (10 ms commit + 7 ms waiting) / 67 ms
    assert "Best knob run: PPG_MI_BATCH_MAX_RECORDS=1024, 4,500 records/s (90 % of its CPU limit)" in text
    assert "filter 1,900 records/s with PPG_MI_FETCH_QUEUE_BACKOFF_MS=1000 → 3,800 as configured" in text
    assert "p99 420 ms with PPG_MI_FETCH_WAIT_MAX_MS=500 (librdkafka's default, before) → 300 ms" in text


def test_a_bench_run_keeps_the_scaling_section_of_the_page(tmp_path: Path) -> None:
    md = tmp_path / "performance.md"
    md.write_text("# Performance\n\nan old run's figures\n\n" + SCALING_BLOCK + "\n")
    write_reports(finish(_results()), tmp_path / "p.json", md)
    first = md.read_text()
    assert SCALING_BLOCK in first and "an old run's figures" not in first
    write_reports(finish(_results()), tmp_path / "p.json", md)  # again: the block once, not twice
    assert md.read_text() == first and first.count(SCALING_END) == 1
    fresh = tmp_path / "fresh.md"
    write_reports(finish(_results()), tmp_path / "p.json", fresh)
    assert "scaling-simulation" not in fresh.read_text()


def test_a_new_simulation_refreshes_goal_5s_verdict_and_keeps_the_measurements(tmp_path: Path) -> None:
    md, js = tmp_path / "performance.md", tmp_path / "performance.json"
    assert not refresh_targets(js, md, {})  # no bench report yet: nothing to refresh
    write_reports(finish(_results(), {"bound_s": 5.0, "chart_defaults": {"delay_quantile_s": 6.75}}), js, md)
    before = json.loads(js.read_text())
    assert refresh_targets(js, md, {"bound_s": 5.0, "chart_defaults": {"delay_quantile_s": 2.4}})
    after = json.loads(js.read_text())
    goal5 = next(t for t in after["targets"] if t["goal"] == "5")
    assert "2.4 s (within 5 s)" in goal5["status"] and "2.4 s (within 5 s)" in md.read_text()
    assert after["stages"] == before["stages"] and after["ratios"] == before["ratios"]


def test_render_tolerates_an_empty_run() -> None:
    assert render_markdown({}).startswith("# Performance")


def test_knobs_are_settings_of_the_same_code() -> None:
    from ppg_mi.bench.runner import FILTER_BEFORE, Knob
    from ppg_mi.config import Settings

    base = Settings.from_env({})
    assert FILTER_BEFORE.applied(base).fetch_queue_backoff_ms == 1000
    assert base.fetch_queue_backoff_ms < 1000  # the configured value is not librdkafka's default
    knob = Knob("filter", (("batch_max_records", 64), ("queued_max_kbytes", 4096)))
    assert knob.label == "PPG_MI_BATCH_MAX_RECORDS=64, PPG_MI_QUEUED_MAX_KBYTES=4096"
    assert knob.applied(base).batch_max_records == 64


def test_the_consumer_fetches_again_after_the_configured_backoff() -> None:
    from ppg_mi.config import Settings
    from ppg_mi.streaming.clients import transactional_consumer_config

    settings = Settings.from_env({"PPG_MI_FETCH_QUEUE_BACKOFF_MS": "35", "PPG_MI_FETCH_WAIT_MAX_MS": "15"})
    config = transactional_consumer_config(settings, "g")
    assert config["fetch.queue.backoff.ms"] == 35
    # librdkafka's 500 ms fetch wait was most of a record's wait between the stages at half load
    assert config["fetch.wait.max.ms"] == 15
    assert Settings.from_env({}).fetch_wait_max_ms < 500


def test_a_drain_window_is_interpolated_between_polls() -> None:
    from ppg_mi.bench.stages import turns, window

    progress = [(0.0, 0.0), (1.0, 0.0), (2.0, 500.0), (3.0, 1000.0)]
    start, end, inside = window(progress, 1000)
    assert start == pytest.approx(1.2) and end == pytest.approx(2.8) and inside == pytest.approx(800)
    with pytest.raises(ValueError):
        window([(0.0, 0.0), (1.0, 100.0)], 1000)
    exposition = ('ppg_mi_batch_size_records_count{stage="filter"} 4.0\n'
                  'ppg_mi_batch_size_records_sum{stage="filter"} 1000.0\n'
                  'ppg_mi_batch_processing_seconds_count{stage="filter"} 4.0\n'
                  'ppg_mi_batch_processing_seconds_sum{stage="filter"} 0.2\n'
                  'ppg_mi_transaction_seconds_count{stage="filter"} 4.0\n'
                  'ppg_mi_transaction_seconds_sum{stage="filter"} 0.04\n')
    assert turns(exposition) == {"batches": 4.0, "mean_batch": 250.0, "batch_s": pytest.approx(0.05),
                                 "commit_s": pytest.approx(0.01)}
    assert turns("")["mean_batch"] is None


def test_percentiles_and_ratio() -> None:
    p = percentiles([1.0, 2.0, 3.0, 4.0, 5.0])
    assert p["p50"] == 3.0 and p["p99"] == pytest.approx(4.96)
    assert math.isnan(percentiles([])["p99"])
    assert ratio(1.0, 0.0) is None and ratio(None, 2.0) is None and ratio(1.0, 4.0) == 0.25


def test_sustained_rate_counts_batches_after_the_window_start() -> None:
    # ten batches of 10 records, one per second: 10 records/s
    stamps = [float(t) for t in range(10) for _ in range(10)]
    start, end, inside = steady_window(stamps)
    assert (start, end) == (0.0, 8.0) and inside == 80
    assert sustained_rate(stamps) == pytest.approx(10.0)
    with pytest.raises(ValueError):
        sustained_rate([1.0, 1.0, 1.0])


def test_cpu_delta_interpolates_between_samples() -> None:
    samples = [(0.0, 0.0), (1.0, 0.5), (3.0, 2.5)]
    assert value_at(samples, 2.0) == pytest.approx(1.5)
    assert value_at(samples, -1.0) == 0.0 and value_at(samples, 9.0) == 2.5
    assert delta_between(samples, 0.5, 2.0) == pytest.approx(1.25)


def test_parse_kafka_tool_output() -> None:
    producer = ("5000 records sent, 1000.0 records/sec (7.8 MB/sec), 10.0 ms avg latency, 50.0 ms max latency.\n"
                "10000 records sent, 1234.5 records/sec (9.47 MB/sec), 12.3 ms avg latency, 80.0 ms max latency, "
                "5 ms 50th, 20 ms 95th, 30 ms 99th, 70 ms 99.9th.\n")
    p = parse_producer_output(producer)
    assert p == {"records": 10000, "records_per_s": 1234.5, "mb_per_s": 9.47, "avg_latency_ms": 12.3}
    steady = producer + ("8000 steady state records sent, 1500.0 records/sec (11.5 MB/sec), 9.0 ms avg latency, "
                         "80.0 ms max latency.\n")
    assert parse_producer_output(steady)["records_per_s"] == 1500.0
    consumer = ("start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, "
                "rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec\n"
                "2026-01-01 00:00:00:000, 2026-01-01 00:00:04:000, 78.6, 19.6, 10000, 2500.0, 3000, 1000, "
                "78.6, 10000.0\n")
    c = parse_consumer_output(consumer)
    assert c["records"] == 10000 and c["records_per_s"] == 10000.0 and c["records_per_s_with_join"] == 2500.0
    with pytest.raises(ValueError):
        parse_producer_output("nothing useful")
    with pytest.raises(ValueError):
        parse_consumer_output("nothing useful")


def test_cpu_shares_split_the_window_between_roles_and_the_rest() -> None:
    from ppg_mi.bench.pipeline import Child, cpu_shares

    def child(name: str, cpu_per_s: float) -> Child:
        c = Child(name, None, 0, Path("/dev/null"))  # type: ignore[arg-type]
        c.cpu = [(t, cpu_per_s * t) for t in (0.0, 10.0, 20.0)]
        return c

    kids = [child("classifier-1-ab", 0.8), child("classifier-2-ab", 0.7), child("filter-ab", 0.2),
            child("producer-ab", 0.1)]
    machine = [(t, 1.9 * t) for t in (0.0, 20.0)]
    shares = cpu_shares(kids, machine, 5.0, 15.0)
    assert shares["classifier"] == pytest.approx(1.5)
    assert shares["filter"] == pytest.approx(0.2) and shares["producer"] == pytest.approx(0.1)
    assert shares["machine"] == pytest.approx(1.9)
    assert shares["other"] == pytest.approx(0.1)
    assert cpu_shares(kids, machine, 5.0, 5.0) == {}


def test_half_load_is_half_the_whole_span_rate_not_the_steady_one() -> None:
    from ppg_mi.bench.runner import half_load

    run = {"records_per_s": 3569.0, "span_records_per_s": 2600.0}
    assert half_load(run) == pytest.approx(1300.0)
    # a run without a span (too few records to time it) falls back to its steady rate
    assert half_load({"records_per_s": 3000.0, "span_records_per_s": None}) == pytest.approx(1500.0)
