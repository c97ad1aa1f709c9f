"""Bottlenecks the benchmark shows, with before/after figures taken in the same run."""

from __future__ import annotations

from typing import Any

from .report import compute_ratios, slowest_stage


def _get(d: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _latency_rows(before: dict[str, Any], after: dict[str, Any], *keys: str) -> list[dict[str, Any]]:
    """Before/after rows of latency percentiles (``p50``, ``p99``, or ``cold_p99`` for the p99 from idle)."""
    rows = []
    for key in keys:
        path = ("latency_cold_s", "p99") if key == "cold_p99" else ("latency_s", key)
        what = "p99 latency from idle" if key == "cold_p99" else f"{key} latency at half load"
        rows.append({"what": what, "before": _get(before, *path), "after": _get(after, *path), "unit": "s",
                     "digits": 3})
    return rows


def fixes_and_notes(results: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    limits = results.get("limits", {})
    pipeline = results.get("pipeline", {})
    fixes: list[dict[str, Any]] = []
    notes: list[str] = []

    blas_alone = (_get(limits, "model_blas_default", "batches", "64", "records_per_cpu_s"),
                  _get(limits, "model", "batches", "64", "records_per_cpu_s"))
    blas_pipe = (_get(pipeline, "one_classifier_before", "classifier_records_per_cpu_s"),
                 _get(pipeline, "one_classifier", "classifier_records_per_cpu_s"))
    blas_rate = (_get(pipeline, "one_classifier_before", "records_per_s"),
                 _get(pipeline, "one_classifier", "records_per_s"))
    if None not in blas_alone:
        fixes.append({
            "title": "The classifier's BLAS thread pool spun on tiny matrix products (applied)",
            "finding": (
                "The profile of `ClassifierProcessor.process` puts most of `predict_proba` in MiniRocket's "
                "transform (numba, one thread as configured), yet alone on an idle core the model burned more "
                "CPU seconds than wall seconds: the ridge classifier's product of the batch's ~10 000 "
                "features with its coefficients runs on OpenBLAS's pool (one thread per CPU), whose workers "
                "spin after every tiny call. The classifier now limits BLAS to `PPG_MI_CLASSIFIER_BLAS_THREADS` "
                "(1) threads once its model's libraries are loaded (`threadpoolctl`). This is a trade: with a "
                "second core idle, the pool's threads do finish the product sooner, so one classifier's "
                "records/s can be higher before the fix, at more CPU per record (the CPU share rows). A pod "
                "with a CPU limit pays the spinning as throttled quota, OpenBLAS sizes its pool by the node's "
                "CPUs, not the pod's, and KEDA scales replicas, not threads: CPU-seconds per record is "
                "what costs there."),
            "figures": [
                {"what": "`predict_proba` alone, batch 64, records per CPU-second", "before": blas_alone[0],
                 "after": blas_alone[1], "unit": "records/CPU-s"},
                {"what": "classifier in the pipeline, records per CPU-second", "before": blas_pipe[0],
                 "after": blas_pipe[1], "unit": "records/CPU-s"},
                {"what": "end to end, one classifier", "before": blas_rate[0], "after": blas_rate[1],
                 "unit": "records/s", "trade": True},
                {"what": "classifier's CPUs in use, one classifier", "digits": 2, "unit": "CPUs", "trade": True,
                 "before": _get(pipeline, "one_classifier_before", "cpu_share_in_window", "classifier"),
                 "after": _get(pipeline, "one_classifier", "cpu_share_in_window", "classifier")},
            ],
            "status": ("applied in `services/classifier.py`; before = the same run with "
                       "`PPG_MI_CLASSIFIER_BLAS_THREADS=0` (BLAS's default pool)."),
        })
    now = _get(pipeline, "latency")
    backoff = _get(pipeline, "latency_before_backoff")
    if now and backoff:
        back_to_back = []
        if _get(limits, "transactions"):
            back_to_back.append({
                "what": "one transaction, opened back to back, p50", "unit": "ms", "digits": 1,
                "before": _get(limits, "transactions", "librdkafka_default", "total_ms", "p50"),
                "after": _get(limits, "transactions", "configured", "total_ms", "p50")})
        fixes.append({
            "title": "Every transaction waited out librdkafka's 100 ms retry backoff (applied)",
            "finding": (
                "A transaction begun right after a commit is refused with `CONCURRENT_TRANSACTIONS` until the "
                "broker has written the previous transaction's markers (a few ms), and librdkafka retries after "
                "`retry.backoff.ms`, 100 ms by default. Timing the loop's calls once (temporary "
                "instrumentation) showed the filter spending a median 119 ms in `send_offsets_to_transaction` "
                "for two requests to a local broker; transactions opened back to back (table of limits) show "
                "the same wait. The transactional producer now retries after "
                "`PPG_MI_TRANSACTION_RETRY_BACKOFF_MS` (10 ms; librdkafka still backs off exponentially up to "
                "1 s when refusals repeat). A stage opens transactions back to back whenever records are "
                "waiting when it commits: in the ramp from idle, under backlog, and at half load whenever a "
                "commit outlasts the gap between two records."),
            "figures": [
                *back_to_back,
                {"what": "mean commit per transaction, filter", "before": _get(backoff, "commit_ms", "filter"),
                 "after": _get(now, "commit_ms", "filter"), "unit": "ms"},
                {"what": "mean commit per transaction, classifier",
                 "before": _get(backoff, "commit_ms", "classifier"), "after": _get(now, "commit_ms", "classifier"),
                 "unit": "ms"},
                *_latency_rows(backoff, now, "p50", "p99", "cold_p99"),
            ],
            "status": ("applied in `streaming/clients.py`; before = the same half-load run with "
                       "`PPG_MI_TRANSACTION_RETRY_BACKOFF_MS=100` (librdkafka's default)."),
        })
    batching = _get(pipeline, "latency_before_batching")
    if now and batching:
        fixes.append({
            "title": "Every stage waited out the whole batch window, even with records ready (applied)",
            "finding": (
                "`StageLoop` called `consumer.consume(num_messages=batch_max_records, "
                "timeout=batch_max_wait_ms)`, and librdkafka returns from that call only when the batch is "
                "full or the timeout has passed: with a record already waiting, `consume(256, 2.0)` still "
                "blocks 2.0 s (checked against the broker). Below saturation no batch filled, so the filter "
                "and the classifier each added up to 200 ms to every record's latency, on top of their "
                "transaction commits. The loop now blocks only for the first record (`poll`) and then takes "
                "what is already fetched (`consume(batch_max_records - 1, batch_fill_ms)`, 0 ms by default): "
                "under backlog the prefetch queue still yields full batches, so throughput keeps its "
                "batching, and at low load a record no longer waits for company."),
            "figures": _latency_rows(batching, now, "p50", "p99"),
            "status": ("applied in `streaming/loop.py`; before = the same half-load run with "
                       "`PPG_MI_BATCH_FILL_MS=200` (the old wait for a full batch)."),
        })
    lz4 = _get(pipeline, "one_classifier_lz4")
    one = _get(pipeline, "one_classifier")
    if lz4 and one:
        fixes.append({
            "title": "Every client compressed samples that do not compress (applied)",
            "finding": (
                "Every producer compressed its batches with lz4, so the producer compressed each recording, "
                "the broker decompressed every batch to validate it, the filter decompressed and compressed "
                "again and the classifier decompressed: float32 samples of a noisy signal have no repeated byte "
                "runs for lz4 to find (an lz4 frame of 64 recordings, 512 000 bytes, came out at 512 051). "
                "Compression is now `PPG_MI_COMPRESSION`, `none` by default, for every client."),
            "figures": [
                {"what": "end to end, one classifier", "before": lz4.get("records_per_s"),
                 "after": one.get("records_per_s"), "unit": "records/s"},
                {"what": "classifier in the pipeline, records per CPU-second",
                 "before": lz4.get("classifier_records_per_cpu_s"), "after": one.get("classifier_records_per_cpu_s"),
                 "unit": "records/CPU-s"},
            ],
            "status": ("applied in `config.py` and `streaming/clients.py`; before = the same run with "
                       "`PPG_MI_COMPRESSION=lz4` for every process."),
        })
    before_all = _get(pipeline, "latency_before")
    if now and before_all and batching:
        next(f for f in fixes if f["title"].startswith("Every stage waited"))["figures"].append({
            "what": "p99 latency at half load, before all four fixes → now",
                                     "before": _get(before_all, "latency_s", "p99"),
                                     "after": _get(now, "latency_s", "p99"), "unit": "s", "digits": 3})
    v = results.get("validation_fix")
    if v:
        fixes.append({
            "title": "Validation cost a third of the filter stage (applied)",
            "finding": (
                "The profile of `FilterProcessor.process` showed `validate_samples` at about a third of the "
                "stage's time, more than the decode and encode together: `np.isfinite(x).all()` and "
                "`np.std(x)` made four passes and two temporary arrays per recording. It now takes the "
                "minimum and maximum (NaN and infinities show in them) and computes the standard deviation "
                "only when the range is so small that the recording could be flat (any n values spanning r "
                "have a standard deviation of at least r/√(2n)), so the verdicts are unchanged. The "
                "classifier, which validates its input too, gains the same per record."),
            "figures": [
                {"what": "`validate_samples`, one recording", "before": v["validate_before_us"],
                 "after": v["validate_after_us"], "unit": "µs", "digits": 1},
                {"what": "`FilterProcessor.process` (decode, validate, filter, encode), per recording in a "
                         "batch of 64", "before": v["filter_process_before_us"],
                 "after": v["filter_process_after_us"], "unit": "µs", "digits": 1},
            ],
            "status": "applied in `src/ppg_mi/signal/filters.py` (public function and verdicts unchanged); "
                      "before is the replaced code (`ppg_mi.bench.baselines`) measured in the same run.",
        })

    load = results.get("meta", {})
    for fix in fixes:
        worse = [row["what"] for row in fix.get("figures", []) if _worse(row)]
        if worse:
            fix["status"] = (fix.get("status", "") + " In this run the after figure is worse for: "
                             + "; ".join(worse) + ". Before and after are separate runs minutes apart on a shared "
                             f"machine whose 1-minute load went from {_load(load, 'load_start')} to "
                             f"{_load(load, 'load_end')}: compare the CPU-second figures, which depend least on "
                             "the load, and rerun on a quiet machine to separate the effect from the noise.")

    slow = slowest_stage(limits)
    ratios = results.get("ratios") or compute_ratios(results)
    if slow:
        notes.append(
            f"The slowest part alone is `{slow[0]}` at {slow[1]:,.0f} records/s; every other part is at least "
            f"{_headroom(limits, slow):.1f}× faster, so the pipeline's throughput is the classifier's, and most of "
            "the classifier's time is the model's feature transform (profile above). "
            "More throughput needs more classifier replicas (one per core; KEDA scales them on lag up to the "
            "partition count) or a cheaper model (fewer kernels), a model decision traded against accuracy.")
    two = ratios.get("two_over_one_classifier")
    cpus = results.get("meta", {}).get("cpu_count")
    if two is not None:
        notes.append(
            f"Two classifiers reach {two:.2f}× one classifier's rate on {cpus} CPUs that also run the broker, "
            "the filter, the producer, this benchmark's reader and whatever else the machine runs: a second "
            "replica gains only the CPU left over; with a free core per replica the gain approaches 2×.")
    e2e = ratios.get("e2e_over_slowest_one_classifier")
    share, eff = ratios.get("classifier_cpu_share_one"), ratios.get("classifier_efficiency_one")
    if e2e is not None and e2e < 0.8 and share is not None and eff is not None:
        notes.append(
            f"End to end reaches {100 * e2e:.0f} % of the slowest stage's limit, short of 80 %, and the profile says why "
            f"(*Where the one-classifier rate goes*): the classifier turns {100 * eff:.0f} % of its CPU into records at "
            f"the model's rate, but it got only {share:.2f} of a CPU, because on {cpus} CPUs the producer, the "
            "filter and the broker ran at the same time, far ahead of it. Nothing in the classifier waits; a "
            "core of its own (in Kubernetes, a CPU request per pod on a node with room) brings the ratio up to "
            "the efficiency.")
    if e2e is not None and e2e > 1.0:
        notes.append(
            f"End to end above the slowest stage's limit ({e2e:.0%}) means the machine's load changed between "
            "the two measurements (see the load averages and the CPU share column): the limit was taken while "
            "other work held the CPUs. The ratio is only as steady as the machine.")
    return fixes, notes


def _headroom(limits: dict[str, Any], slow: tuple[str, float]) -> float:
    from .report import STAGE_LIMITS, stage_limit

    others = [stage_limit(limits, k) for k, _ in STAGE_LIMITS if k != slow[0]]
    others = [v for v in others if v is not None]
    return min(others) / slow[1] if others and slow[1] > 0 else float("nan")


def _worse(row: dict[str, Any]) -> bool:
    """True when a before/after pair moved the wrong way (rates should rise, times fall)."""
    before, after = row.get("before"), row.get("after")
    if before is None or after is None or row.get("trade"):
        return False  # a traded figure is explained by its finding, not by noise
    lower_is_better = row.get("unit") in ("s", "ms", "µs", "MB")
    return after > before if lower_is_better else after < before


def _load(meta: dict[str, Any], key: str) -> str:
    value = meta.get(key)
    return f"{value[0]:.1f}" if value else "?"
