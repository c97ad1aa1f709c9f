"""The benchmark's results as JSON and Markdown: limits, pipeline figures, ratios, targets.

Everything here is pure: it takes the results dictionary the runner assembled and
derives ratios and target verdicts from it, so the arithmetic is unit-tested on tiny
inputs without a broker.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .stats import ratio

#: the stages whose stand-alone limits bound the pipeline (key in results["limits"], label)
STAGE_LIMITS = (
    ("kafka_producer", "Kafka producer (ProducerPerformance)"),
    ("kafka_consumer", "Kafka consumer (ConsumerPerformance)"),
    ("filter", "filter function (preprocess_batch, batch 64)"),
    ("model", "model.predict_proba (batch 64)"),
)
LIMIT_BATCH = "64"


@dataclass(frozen=True)
class Target:
    name: str
    value: float | None
    threshold: float
    unit: str
    higher_is_better: bool

    @property
    def met(self) -> bool | None:
        if self.value is None or (isinstance(self.value, float) and math.isnan(self.value)):
            return None
        return self.value >= self.threshold if self.higher_is_better else self.value < self.threshold

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met}


def stage_limit(limits: dict[str, Any], key: str) -> float | None:
    """Records/s one stage manages alone (batch 64 for the in-process functions)."""
    entry = limits.get(key)
    if not entry:
        return None
    if "records_per_s" in entry:
        return entry["records_per_s"]
    batch = entry.get("batches", {}).get(LIMIT_BATCH)
    return batch["records_per_s"] if batch else None


def slowest_stage(limits: dict[str, Any]) -> tuple[str, float] | None:
    """(key, records/s) of the stage with the lowest stand-alone limit."""
    rated = [(key, stage_limit(limits, key)) for key, _ in STAGE_LIMITS]
    rated = [(k, v) for k, v in rated if v is not None]
    return min(rated, key=lambda kv: kv[1]) if rated else None


def model_cpu_rate(limits: dict[str, Any]) -> float | None:
    batch = limits.get("model", {}).get("batches", {}).get(LIMIT_BATCH)
    return batch["records_per_cpu_s"] if batch else None


def compute_ratios(results: dict[str, Any]) -> dict[str, Any]:
    """End-to-end throughput over the slowest limit; in-pipeline classifier CPU efficiency."""
    limits = results.get("limits", {})
    pipeline = results.get("pipeline", {})
    slow = slowest_stage(limits)
    one = pipeline.get("one_classifier", {})
    two = pipeline.get("two_classifiers", {})
    out: dict[str, Any] = {
        "slowest_stage": slow[0] if slow else None,
        "slowest_stage_records_per_s": slow[1] if slow else None,
        "e2e_over_slowest_one_classifier": ratio(one.get("records_per_s"), slow[1] if slow else None),
        "e2e_over_slowest_two_classifiers": ratio(two.get("records_per_s"), slow[1] if slow else None),
        "classifier_efficiency_one": ratio(one.get("classifier_records_per_cpu_s"), model_cpu_rate(limits)),
        "classifier_efficiency_two": ratio(two.get("classifier_records_per_cpu_s"), model_cpu_rate(limits)),
        "two_over_one_classifier": ratio(two.get("records_per_s"), one.get("records_per_s")),
        "classifier_cpu_share_one": (one.get("cpu_share_in_window") or {}).get("classifier"),
        "classifier_transaction_share_one": transaction_share(one),
    }
    return out


def transaction_share(run: dict[str, Any]) -> float | None:
    """Fraction of the classifier's wall time spent committing: transactions per second × mean commit."""
    commit_ms = (run.get("commit_ms") or {}).get("classifier")
    batch = run.get("classifier_mean_batch")
    rate = run.get("records_per_s")
    if not commit_ms or not batch or not rate:
        return None
    return rate / batch * commit_ms / 1000


def where_the_rate_goes(results: dict[str, Any], ratios: dict[str, Any]) -> list[str]:
    """The one-classifier ratio taken apart: the classifier's share of a CPU × its efficiency."""
    one = results.get("pipeline", {}).get("one_classifier") or {}
    shares = one.get("cpu_share_in_window") or {}
    e2e, eff = ratios.get("e2e_over_slowest_one_classifier"), ratios.get("classifier_efficiency_one")
    share = shares.get("classifier")
    if e2e is None or eff is None or share is None:
        return []
    cpus = results.get("meta", {}).get("cpu_count")
    lines = [
        f"End to end / slowest stage = the classifier's share of a CPU while it worked × its records per "
        f"CPU-second relative to the model alone: {_num(share, 2)} × {_pct(eff)} ≈ {_pct(share * eff)} "
        f"(measured: {_pct(e2e)}).",
        f"- CPUs in use in the one-classifier window, of {cpus}: {_num(shares.get('machine'), 2)} — classifier "
        f"{_num(share, 2)}, filter {_num(shares.get('filter'), 2)}, producer {_num(shares.get('producer'), 2)}, "
        f"other {_num(shares.get('other'), 2)} (the broker, the bench's prediction reader, anything else on the "
        "machine).",
    ]
    batch, most = one.get("classifier_mean_batch"), results.get("meta", {}).get("batch_max_records")
    if batch and most and batch >= 0.9 * most:
        lines[-1] += (f" Its batches were full (mean {batch:.0f} of at most {most}): input was always waiting, "
                      "so the CPU the classifier did not get went to the other processes, not to idling.")
    txn = ratios.get("classifier_transaction_share_one")
    if txn is not None:
        lines.append(
            f"- Of the classifier's time, committing transactions took {_pct(txn)} (transactions per second × mean "
            f"commit, {_num((one.get('commit_ms') or {}).get('classifier'), 0)} ms per batch of "
            f"{_num(one.get('classifier_mean_batch'), 0)}); decoding, validating, encoding and librdkafka's "
            "threads take the rest of what is not `predict_proba`.")
    return lines


def peak_rss_mb(pipeline: dict[str, Any], role: str) -> float | None:
    """Largest peak RSS of any process of ``role`` over every pipeline run."""
    peaks = [mb for run in pipeline.values() if isinstance(run, dict)
             for name, mb in run.get("peak_rss_mb", {}).items() if name.split("-")[0] == role]
    return max(peaks) if peaks else None


def compute_targets(results: dict[str, Any]) -> list[Target]:
    ratios = results.get("ratios") or compute_ratios(results)
    pipeline = results.get("pipeline", {})
    latency = pipeline.get("latency", {}).get("latency_s", {})
    codec = results.get("codec", {})
    return [
        Target("end to end / slowest stage's limit", ratios.get("e2e_over_slowest_one_classifier"), 0.80, "ratio", True),
        Target("classifier efficiency in the pipeline", ratios.get("classifier_efficiency_one"), 0.85, "ratio", True),
        Target("p99 latency at half load", latency.get("p99"), 1.0, "s", False),
        Target("classifier peak RSS", peak_rss_mb(pipeline, "classifier"), 600.0, "MB", False),
        Target("filter peak RSS", peak_rss_mb(pipeline, "filter"), 250.0, "MB", False),
        Target("codec encode + decode of one recording", codec.get("encode_decode_us"), 20.0, "µs", False),
    ]


def finish(results: dict[str, Any]) -> dict[str, Any]:
    """Add the derived ratios and target verdicts to ``results`` (in place) and return it."""
    results["ratios"] = compute_ratios(results)
    results["targets"] = [t.as_dict() for t in compute_targets(results)]
    return results


# --- rendering -----------------------------------------------------------------
def _num(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}"
    return str(value)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f} %"


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "**not met**", None: "not measured"}[met]


def _target_value(t: dict[str, Any]) -> str:
    if t["unit"] == "ratio":
        return f"{_pct(t['value'])} (≥ {_pct(t['threshold'])})"
    op = "≥" if t["higher_is_better"] else "<"
    if t["unit"] == "s":
        op = "≤"
    return f"{_num(t['value'], 2 if t['unit'] in ('s', 'µs') else 0)} {t['unit']} ({op} {_num(t['threshold'], 0)} {t['unit']})"


def render_markdown(results: dict[str, Any]) -> str:
    meta = results.get("meta", {})
    limits = results.get("limits", {})
    pipeline = results.get("pipeline", {})
    ratios = results.get("ratios", {})
    lines: list[str] = []
    add = lines.append
    add("# Performance")
    add("")
    add("Produced by `ppg-mi bench` "
        f"({'quick smoke run' if meta.get('quick') else 'full run'}) — rerun it to refresh this page; "
        "the numbers below are from one run on the machine described here, measured against the limits "
        "of the parts taken in the same run.")
    add("")
    add("## Machine and run")
    add("")
    add("| | |")
    add("| --- | --- |")
    for label, key in (("CPU model", "cpu_model"), ("CPUs (logical)", "cpu_count"), ("memory", "memory_gb"),
                       ("Python", "python"), ("Kafka", "kafka_version"), ("broker", "broker"),
                       ("started (UTC)", "started"), ("duration", "duration_s"),
                       ("load average at start (1/5/15 min)", "load_start"),
                       ("load average at end (1/5/15 min)", "load_end"),
                       ("model", "model_version"), ("record", "record_bytes"),
                       ("partitions per topic", "partitions"), ("micro-batch", "batch"),
                       ("broker warm-up (not reported)", "warm_up_records")):
        value = meta.get(key)
        if key == "memory_gb" and value is not None:
            value = f"{value:.1f} GB"
        elif key == "duration_s" and value is not None:
            value = f"{value:.0f} s"
        elif key.startswith("load_") and value is not None:
            value = " / ".join(f"{x:.2f}" for x in value)
        elif key == "warm_up_records" and value is not None:
            value = f"one pipeline run of {value} records before the measured ones (the JVM's compilation)"
        elif key == "record_bytes" and value is not None:
            value = f"{value} bytes ({meta.get('samples_per_record')} float32 samples + header)"
        add(f"| {label} | {_num(value) if isinstance(value, (int, float)) and key != 'cpu_count' else value} |")
    if meta.get("load_note"):
        add("")
        add(meta["load_note"])
    add("")

    add("## Targets")
    add("")
    add("| target | measured (goal) | verdict |")
    add("| --- | --- | --- |")
    for t in results.get("targets", []):
        add(f"| {t['name']} | {_target_value(t)} | {_verdict(t['met'])} |")
    add("")

    add("## Ratios")
    add("")
    slow = ratios.get("slowest_stage")
    add(f"- slowest stage alone: **{slow}** at {_num(ratios.get('slowest_stage_records_per_s'))} records/s")
    add(f"- end to end / slowest stage, one classifier: **{_pct(ratios.get('e2e_over_slowest_one_classifier'))}**; "
        f"two classifiers: {_pct(ratios.get('e2e_over_slowest_two_classifiers'))} "
        f"(two / one classifier: {_num(ratios.get('two_over_one_classifier'), 2)}×)")
    add(f"- classifier records per CPU-second in the pipeline / `model.predict_proba` alone (batch {LIMIT_BATCH}): "
        f"one classifier **{_pct(ratios.get('classifier_efficiency_one'))}**, "
        f"two classifiers {_pct(ratios.get('classifier_efficiency_two'))}")
    codec = results.get("codec", {})
    add(f"- codec: encode {_num(codec.get('encode_us'), 2)} µs + decode {_num(codec.get('decode_us'), 2)} µs = "
        f"**{_num(codec.get('encode_decode_us'), 2)} µs** per recording")
    add("")
    breakdown = where_the_rate_goes(results, ratios)
    if breakdown:
        add("### Where the one-classifier rate goes")
        add("")
        for line in breakdown:
            add(line)
        add("")

    add("## Limits of the parts, alone")
    add("")
    add("| part | records/s | records per CPU-second | CPU share | notes |")
    add("| --- | ---: | ---: | ---: | --- |")
    for key, label in (("kafka_producer", "Kafka ProducerPerformance"),
                       ("kafka_consumer", "Kafka ConsumerPerformance")):
        e = limits.get(key)
        if e:
            add(f"| {label} | {_num(e.get('records_per_s'))} | — | — | {e.get('note', '')} |")
    for key, label in (("filter", "filter: `preprocess_batch`"), ("model", "model: `predict_proba`"),
                       ("model_blas_default", "model, BLAS's default pool (before the fix)")):
        e = limits.get(key)
        if not e:
            continue
        for batch, b in e.get("batches", {}).items():
            share = ratio(b["records_per_s"], b["records_per_cpu_s"])
            add(f"| {label}, batch {batch} | {_num(b['records_per_s'])} | {_num(b['records_per_cpu_s'])} | "
                f"{_num(share, 2)} | {b.get('records')} records in {_num(b.get('seconds'), 1)} s |")
    add("")
    add("CPU share = CPU seconds per wall second of the measuring process: below 1 for single-threaded work "
        "means other processes on the machine took the rest of the core; above 1, threads ran in parallel.")
    add("")
    txn = limits.get("transactions") or {}
    if txn:
        add("Transactions opened back to back (begin, one record, `send_offsets_to_transaction`, "
            "`commit_transaction`), the stages' producer configuration, per transaction:")
        add("")
        add("| retry backoff | transactions | p50 (ms) | p95 (ms) | send_offsets p50 (ms) | commit p50 (ms) |")
        add("| --- | ---: | ---: | ---: | ---: | ---: |")
        for key, label in (("configured", "as configured"), ("librdkafka_default", "librdkafka's default")):
            e = txn.get(key)
            if e:
                add(f"| {label}: {e['retry_backoff_ms']} ms | {e['transactions']} | {_num(e['total_ms']['p50'], 1)} | "
                    f"{_num(e['total_ms']['p95'], 1)} | {_num(e['send_offsets_ms']['p50'], 1)} | "
                    f"{_num(e['commit_ms']['p50'], 1)} |")
        add("")

    add("## End to end: producer → filter → classifier → predictions (real processes)")
    add("")
    repeats = results.get("pipeline_runs") or {}
    if any(len(v) > 1 for v in repeats.values()):
        add(f"Each configuration ran {results.get('meta', {}).get('repeats')} times, the rounds interleaved (every "
            "configuration once, then again), so that a drift of the machine favours none; the tables show the "
            "best run (highest records/s; lowest p99 for the half-load runs), *each run* lists them all.")
        add("")
    add("| run | records | records/s (steady) | classifier records per CPU-s | mean batch | peak RSS (MB) | each run |")
    add("| --- | ---: | ---: | ---: | ---: | --- | --- |")
    for key, label in (("one_classifier", "one classifier"), ("two_classifiers", "two classifiers"),
                       ("one_classifier_before", "one classifier, before the BLAS fix"),
                       ("one_classifier_lz4", "one classifier, before the compression fix"),
                       ("latency", "half load (latency)"),
                       ("latency_before_backoff", "half load, before the retry-backoff fix"),
                       ("latency_before_batching", "half load, before the batching fix"),
                       ("latency_before", "half load, before all four fixes")):
        run = pipeline.get(key)
        if not run:
            continue
        rss = ", ".join(f"{name} {mb:.0f}" for name, mb in sorted(run.get("peak_rss_mb", {}).items()))
        each = repeats.get(key) or []
        if run.get("rate"):
            each_text = "p99 " + " / ".join(f"{_num(r.get('p99_s'), 3)} s" for r in each)
        else:
            each_text = " / ".join(f"{_num(r.get('records_per_s'))}/s" for r in each)
        add(f"| {label} | {run.get('records')} | {_num(run.get('records_per_s'))} | "
            f"{_num(run.get('classifier_records_per_cpu_s'))} | {_num(run.get('classifier_mean_batch'), 0)} | {rss} | "
            f"{each_text if each else '—'} |")
    latency_runs = [(k, label) for k, label in (
        ("latency", "as configured"),
        ("latency_before_backoff", "before the retry-backoff fix: PPG_MI_TRANSACTION_RETRY_BACKOFF_MS=100"),
        ("latency_before_batching", "before the batching fix: PPG_MI_BATCH_FILL_MS=200"),
        ("latency_before", "before all four fixes: both, PPG_MI_CLASSIFIER_BLAS_THREADS=0 and PPG_MI_COMPRESSION=lz4")) if pipeline.get(k)]
    if latency_runs:
        first = pipeline[latency_runs[0][0]]
        add("")
        add(f"Latency, produced → predicted, at {_num(first.get('rate'), 1)} records/s offered (half of the "
            f"one-classifier sustained rate). The percentiles cover the records produced after the first "
            f"{_num(first.get('warm_up_s'), 0)} s (steady state); *from idle* is the p99 of all records, including "
            "the ramp from an idle pipeline, when the first batches are tiny, each pays a whole transaction, and "
            "the backlog they leave drains with only half the capacity spare. Segments: producer → the filter's "
            "stamp, and the filter's stamp → the classifier's (which includes the filter's commit). Mean commit = "
            "`send_offsets_to_transaction` + `commit_transaction` per transaction. In each round the as-configured run goes "
            "first and the before runs after it, so what is left of the broker's warming favours the befores.")
        add("")
        add("| half-load run | records | p50 (s) | p95 (s) | p99 (s) | max (s) | p99 from idle (s) | "
            "p50 → filter / → classifier (s) | mean commit filter / classifier (ms) |")
        add("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for key, label in latency_runs:
            run = pipeline[key]
            ls = run.get("latency_s", {})
            seg = run.get("latency_segments_s", {})
            commit = run.get("commit_ms", {})
            add(f"| {label} | {run.get('latency_records', run.get('records'))} | {_num(ls.get('p50'), 3)} | "
                f"{_num(ls.get('p95'), 3)} | **{_num(ls.get('p99'), 3)}** | {_num(ls.get('max'), 3)} | "
                f"{_num(run.get('latency_cold_s', {}).get('p99'), 3)} | "
                f"{_num(seg.get('produced_to_filtered', {}).get('p50'), 3)} / "
                f"{_num(seg.get('filtered_to_predicted', {}).get('p50'), 3)} | "
                f"{_num(commit.get('filter'), 0)} / {_num(commit.get('classifier'), 0)} |")
    add("")
    add("Sustained records/s are taken between the 10th and 90th percentile of the prediction times "
        "(start-up and the tail excluded); CPU seconds are read from `/proc` (psutil) at the same moments.")
    add("")

    fixes = results.get("fixes", [])
    if fixes:
        add("## Bottlenecks found and fixes (before → after)")
        add("")
        for f in fixes:
            add(f"### {f['title']}")
            add("")
            add(f.get("finding", ""))
            add("")
            for row in f.get("figures", []):
                add(f"- {row['what']}: before {_num(row.get('before'), row.get('digits', 0))} → "
                    f"after {_num(row.get('after'), row.get('digits', 0))} {row.get('unit', '')}")
            if f.get("status"):
                add("")
                add(f"Status: {f['status']}")
            add("")

    profile = results.get("profile", {})
    if profile:
        add("## Profile")
        add("")
        add("pyinstrument samples wall time: on a busy machine the time a process waits for a CPU is charged "
            "to whichever frame was running (often `[self]`), so compare the branches, not the absolute seconds.")
        add("")
        for name, text in profile.items():
            add(f"`{name}` (pyinstrument):")
            add("")
            add("```")
            add(text.rstrip())
            add("```")
            add("")

    notes = results.get("notes", [])
    if notes:
        add("## What stands in the way")
        add("")
        for n in notes:
            add(f"- {n}")
        add("")
    add("## Rerun")
    add("")
    add("```")
    add("ppg-mi bench                 # full run (a few minutes), writes docs/performance.{json,md}")
    add("ppg-mi bench --quick        # smoke run with small sizes")
    add("ppg-mi bench --models DIR   # serve an existing model store instead of training one")
    add("```")
    add("")
    return "\n".join(lines)


def write_reports(results: dict[str, Any], json_path: str | Path, md_path: str | Path) -> None:
    Path(json_path).parent.mkdir(parents=True, exist_ok=True)
    Path(json_path).write_text(json.dumps(results, indent=2, sort_keys=True, default=str) + "\n")
    Path(md_path).parent.mkdir(parents=True, exist_ok=True)
    Path(md_path).write_text(render_markdown(results))
