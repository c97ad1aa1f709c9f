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


def fixes_and_notes(results: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    limits = results.get("limits", {})
    pipeline = results.get("pipeline", {})
    fixes: list[dict[str, Any]] = []
    notes: list[str] = []

    blas_alone = (_get(limits, "model", "batches", "64", "records_per_cpu_s"),
                  _get(limits, "model_blas_1", "batches", "64", "records_per_cpu_s"))
    blas_pipe = (_get(pipeline, "one_classifier", "classifier_records_per_cpu_s"),
                 _get(pipeline, "one_classifier_blas_1", "classifier_records_per_cpu_s"))
    blas_rate = (_get(pipeline, "one_classifier", "records_per_s"),
                 _get(pipeline, "one_classifier_blas_1", "records_per_s"))
    if None not in blas_alone:
        fixes.append({
            "title": "The classifier's BLAS thread pool spins on tiny matrix products",
            "finding": (
                "The profile of `ClassifierProcessor.process` puts nearly all time in MiniRocket's "
                "transform (numba, one thread as configured), yet the process burns more CPU than wall "
                "time: the ridge classifier's product of the 64 × ~10 000 feature matrix with its "
                "coefficients runs on OpenBLAS's thread pool (as many threads as CPUs), whose workers "
                "busy-wait after every tiny call and take CPU from the other stages on the same cores. "
                "Limiting BLAS to one thread in the classifier process (`threadpoolctl.threadpool_limits(1, "
                "'blas')` once at start-up in `services/classifier.py`, or `OPENBLAS_NUM_THREADS=1` in the "
                "image's environment) removes the waste without slowing the prediction."),
            "figures": [
                {"what": "`predict_proba` alone, batch 64, records per CPU-second", "before": blas_alone[0],
                 "after": blas_alone[1], "unit": "records/CPU-s"},
                {"what": "classifier in the pipeline, records per CPU-second", "before": blas_pipe[0],
                 "after": blas_pipe[1], "unit": "records/CPU-s"},
                {"what": "end to end, one classifier", "before": blas_rate[0], "after": blas_rate[1],
                 "unit": "records/s"},
            ],
            "status": ("measured here with `OPENBLAS_NUM_THREADS=1` in the classifier's environment; the "
                       "one-line change belongs to `services/classifier.py` (owned by another change) and is "
                       "proposed, not applied, by this benchmark's change."),
        })
    fixes.extend(results.get("applied_fixes", []))

    slow = slowest_stage(limits)
    ratios = results.get("ratios") or compute_ratios(results)
    if slow:
        notes.append(
            f"The slowest part alone is `{slow[0]}` at {slow[1]:,.0f} records/s; every other part is at least "
            f"{_headroom(limits, slow):.0f}× faster, so the pipeline's throughput is the classifier's: "
            "MiniRocket's 10 000-kernel transform of 2000 samples is ~95 % of its time (profile above). "
            "More throughput needs more classifier replicas (one per core; KEDA scales them on lag up to the "
            "partition count) or a cheaper model (fewer kernels), a model decision traded against accuracy.")
    two = ratios.get("two_over_one_classifier")
    cpus = results.get("meta", {}).get("cpu_count")
    if two is not None:
        notes.append(
            f"Two classifiers reach {two:.2f}× one classifier's rate. On {cpus} CPUs that also run the broker, "
            "the filter, the producer and this benchmark's reader, a second replica can only use what is left "
            "of the second core; on a machine with a core per replica the gain is close to 2×.")
    return fixes, notes


def _headroom(limits: dict[str, Any], slow: tuple[str, float]) -> float:
    from .report import STAGE_LIMITS, stage_limit

    others = [stage_limit(limits, k) for k, _ in STAGE_LIMITS if k != slow[0]]
    others = [v for v in others if v is not None]
    return min(others) / slow[1] if others and slow[1] > 0 else float("nan")
