"""The benchmark's arithmetic and report generation on tiny, hand-made inputs (no timing)."""

from __future__ import annotations

import json
import math

import pytest

from ppg_mi.bench.kafka_perf import parse_consumer_output, parse_producer_output
from ppg_mi.bench.report import compute_ratios, finish, render_markdown, slowest_stage, write_reports
from ppg_mi.bench.stats import delta_between, percentiles, ratio, steady_window, sustained_rate, value_at


def _results() -> dict:
    def fn(rate64: float, cpu64: float) -> dict:
        return {"batches": {"1": {"records_per_s": rate64 / 2, "records_per_cpu_s": cpu64 / 2, "records": 10,
                                  "seconds": 1.0},
                            "64": {"records_per_s": rate64, "records_per_cpu_s": cpu64, "records": 640,
                                   "seconds": 1.0}}}

    return {
        "meta": {"cpu_count": 2, "cpu_model": "Test CPU", "quick": True, "load_start": [1.0, 1.0, 1.0],
                 "load_end": [2.0, 1.5, 1.0], "record_bytes": 8047, "samples_per_record": 2000},
        "limits": {
            "kafka_producer": {"records_per_s": 3000.0},
            "kafka_consumer": {"records_per_s": 9000.0},
            "filter": fn(8000.0, 8000.0),
            "model": fn(200.0, 160.0),
        },
        "codec": {"encode_us": 3.0, "decode_us": 6.0, "encode_decode_us": 9.0},
        "pipeline": {
            "one_classifier": {"records": 100, "records_per_s": 170.0, "classifier_records_per_cpu_s": 150.0,
                               "peak_rss_mb": {"filter": 130.0, "classifier-1": 400.0, "producer": 60.0}},
            "two_classifiers": {"records": 100, "records_per_s": 255.0, "classifier_records_per_cpu_s": 120.0,
                                "peak_rss_mb": {"filter": 140.0, "classifier-1": 410.0, "classifier-2": 650.0}},
            "latency": {"records": 50, "rate": 85.0, "latency_s": {"p50": 0.3, "p95": 0.6, "p99": 1.2, "max": 1.3},
                        "peak_rss_mb": {"filter": 120.0, "classifier-1": 390.0}},
        },
    }


def test_slowest_stage_is_the_lowest_batch_64_or_tool_rate() -> None:
    assert slowest_stage(_results()["limits"]) == ("model", 200.0)
    limits = _results()["limits"]
    limits["kafka_producer"]["records_per_s"] = 150.0
    assert slowest_stage(limits) == ("kafka_producer", 150.0)


def test_ratios() -> None:
    r = compute_ratios(_results())
    assert r["e2e_over_slowest_one_classifier"] == pytest.approx(170 / 200)
    assert r["e2e_over_slowest_two_classifiers"] == pytest.approx(255 / 200)
    assert r["classifier_efficiency_one"] == pytest.approx(150 / 160)
    assert r["classifier_efficiency_two"] == pytest.approx(120 / 160)
    assert r["two_over_one_classifier"] == pytest.approx(1.5)


def test_targets_report_met_and_not_met() -> None:
    results = finish(_results())
    verdicts = {t["name"]: t["met"] for t in results["targets"]}
    assert verdicts["end to end / slowest stage's limit"] is True          # 85 % >= 80 %
    assert verdicts["classifier efficiency in the pipeline"] is True       # 94 % >= 85 %
    assert verdicts["p99 latency at half load"] is False                   # 1.2 s > 1 s
    assert verdicts["classifier peak RSS"] is False                        # 650 MB, the second replica
    assert verdicts["filter peak RSS"] is True                             # 140 MB
    assert verdicts["codec encode + decode of one recording"] is True      # 9 µs


def test_missing_measurements_are_not_verdicts() -> None:
    results = _results()
    del results["pipeline"]["latency"]
    del results["codec"]
    verdicts = {t["name"]: t["met"] for t in finish(results)["targets"]}
    assert verdicts["p99 latency at half load"] is None
    assert verdicts["codec encode + decode of one recording"] is None


def test_reports_are_written(tmp_path) -> None:
    results = finish(_results())
    results["fixes"] = [{"title": "A fix", "finding": "why", "figures": [
        {"what": "rate", "before": 100.0, "after": 130.0, "unit": "records/s"}], "status": "applied"}]
    write_reports(results, tmp_path / "p.json", tmp_path / "p.md")
    assert json.loads((tmp_path / "p.json").read_text())["ratios"]["slowest_stage"] == "model"
    md = (tmp_path / "p.md").read_text()
    assert "Test CPU" in md and "| CPUs (logical) | 2 |" in md
    assert "85 %" in md and "**not met**" in md
    assert "before 100 → after 130 records/s" in md
    assert "1.00 / 1.00 / 1.00" in md  # load average at start


def test_render_tolerates_an_empty_run() -> None:
    assert render_markdown({}).startswith("# Performance")


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


def test_findings_take_before_and_after_from_the_run() -> None:
    from ppg_mi.bench.findings import fixes_and_notes

    results = _results()
    results["limits"]["model_blas_default"] = {"batches": {"64": {"records_per_s": 190.0, "records_per_cpu_s": 120.0}}}
    results["pipeline"]["one_classifier_before"] = {"records_per_s": 140.0, "classifier_records_per_cpu_s": 110.0}
    results["pipeline"]["latency"]["commit_ms"] = {"filter": 30.0, "classifier": 25.0}
    results["pipeline"]["latency_before_backoff"] = {"latency_s": {"p50": 0.5, "p99": 1.4},
                                                     "commit_ms": {"filter": 120.0, "classifier": 40.0}}
    results["pipeline"]["latency_before_batching"] = {"latency_s": {"p50": 0.5, "p99": 1.5}}
    results["pipeline"]["latency_before"] = {"latency_s": {"p50": 0.6, "p99": 1.9}}
    results["pipeline"]["one_classifier_lz4"] = {"records_per_s": 120.0, "classifier_records_per_cpu_s": 140.0}
    results["limits"]["transactions"] = {"configured": {"total_ms": {"p50": 30.0}},
                                         "librdkafka_default": {"total_ms": {"p50": 118.0}}}
    results["validation_fix"] = {"validate_before_us": 60.0, "validate_after_us": 5.0,
                                 "filter_process_before_us": 180.0, "filter_process_after_us": 130.0}
    fixes, notes = fixes_and_notes(finish(results))
    figures = {(f["title"].split()[0], row["what"]): (row["before"], row["after"]) for f in fixes for row in f["figures"]}
    assert figures[("The", "classifier in the pipeline, records per CPU-second")] == (110.0, 150.0)
    assert figures[("The", "`predict_proba` alone, batch 64, records per CPU-second")] == (120.0, 160.0)
    assert figures[("Every", "mean commit per transaction, filter")] == (120.0, 30.0)
    assert figures[("Every", "one transaction, opened back to back, p50")] == (118.0, 30.0)
    assert figures[("Every", "p99 latency at half load, before all four fixes → now")] == (1.9, 1.2)
    assert figures[("Every", "end to end, one classifier")] == (120.0, 170.0)
    assert figures[("Validation", "`validate_samples`, one recording")] == (60.0, 5.0)
    batching = next(f for f in fixes if "batch window" in f["title"])
    assert {row["what"]: row["before"] for row in batching["figures"]}["p99 latency at half load"] == 1.5
    assert any("`model` at 200 records/s" in n for n in notes)


def test_a_fix_that_looks_worse_in_a_noisy_run_says_so() -> None:
    from ppg_mi.bench.findings import fixes_and_notes

    results = _results()
    results["pipeline"]["latency_before_batching"] = {"latency_s": {"p50": 0.1, "p99": 0.4}}  # better than 0.3 / 1.2
    fixes, _ = fixes_and_notes(finish(results))
    wait = next(f for f in fixes if "batch window" in f["title"])
    assert "worse for: p50 latency at half load; p99 latency at half load" in wait["status"]
    assert "from 1.0 to 2.0" in wait["status"]


def test_cpu_shares_split_the_window_between_roles_and_the_rest() -> None:
    from pathlib import Path

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


def test_the_one_classifier_ratio_is_taken_apart() -> None:
    from ppg_mi.bench.report import where_the_rate_goes

    results = _results()
    results["pipeline"]["one_classifier"].update({
        "cpu_share_in_window": {"classifier": 0.9, "filter": 0.3, "producer": 0.4, "other": 0.3, "machine": 1.9},
        "commit_ms": {"classifier": 40.0}, "classifier_mean_batch": 170.0})
    ratios = compute_ratios(results)
    assert ratios["classifier_transaction_share_one"] == pytest.approx(170 / 170 * 0.040)
    lines = where_the_rate_goes(results, ratios)
    assert lines[0].startswith("End to end / slowest stage = ") and "0.90 × 94 % ≈ 84 %" in lines[0]
    assert "classifier 0.90, filter 0.30, producer 0.40, other 0.30" in lines[1]
    assert "batches were full" not in lines[1]  # no batch limit in the run's meta
    results["meta"]["batch_max_records"] = 180
    assert "batches were full (mean 170 of at most 180)" in where_the_rate_goes(results, ratios)[1]
    assert "took 4 %" in lines[2]
    del results["pipeline"]["one_classifier"]["cpu_share_in_window"]
    assert where_the_rate_goes(results, compute_ratios(results)) == []


def test_a_missed_end_to_end_target_names_what_stands_in_the_way() -> None:
    from ppg_mi.bench.findings import fixes_and_notes

    results = _results()
    results["pipeline"]["one_classifier"]["cpu_share_in_window"] = {"classifier": 0.8}
    _, notes = fixes_and_notes(results)
    assert not any("short of 80 %" in n for n in notes)  # 85 %: met
    results["pipeline"]["one_classifier"]["records_per_s"] = 150.0
    _, notes = fixes_and_notes(results)
    assert any("reaches 75 % of the slowest stage's limit, short of 80 %" in n and "only 0.80 of a CPU" in n
               for n in notes)
