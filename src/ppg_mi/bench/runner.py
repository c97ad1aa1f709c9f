"""Orchestrates one benchmark run and writes the reports (see :mod:`ppg_mi.bench`)."""

from __future__ import annotations

import os
import platform
import shutil
import signal
import threading
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import psutil

from ..config import Settings
from . import kafka_perf, micro
from .pipeline import run_pipeline
from .report import finish, write_reports


@dataclass(frozen=True)
class BenchOptions:
    records: int | None = None
    quick: bool = False
    out_json: str = "docs/performance.json"
    out_md: str = "docs/performance.md"
    models: str | None = None

    @property
    def pipeline_records(self) -> int:
        return self.records or (600 if self.quick else 6000)

    @property
    def repeats(self) -> int:
        """Runs of each pipeline configuration, interleaved; the best is reported."""
        return 1 if self.quick else 2

    @property
    def perf_records(self) -> int:
        return 1000 if self.quick else 10000

    @property
    def micro_seconds(self) -> float:
        return 0.5 if self.quick else 4.0

    @property
    def latency_seconds(self) -> float:
        return 8.0 if self.quick else 20.0

    @property
    def latency_warm_up_seconds(self) -> float:
        """Seconds at the offered rate before latency counts: the ramp from an idle pipeline
        (tiny first batches, a backlog drained with half the capacity spare) is reported apart."""
        return 3.0 if self.quick else 10.0

    @property
    def train_records(self) -> int:
        return 80 if self.quick else 200


class Clock:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def say(self, message: str) -> None:
        print(f"[bench {time.monotonic() - self.t0:6.1f}s] {message}", file=sys.stderr, flush=True)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextmanager
def broker_for(settings: Settings, say: Any) -> Iterator[tuple[Settings, str]]:
    """The configured broker, the running local one, or one started here on a free port."""
    from ..local.kafka import LocalBroker, free_port

    if settings.kafka_bootstrap_servers:
        yield settings, f"{settings.kafka_bootstrap_servers} (PPG_MI_KAFKA_BOOTSTRAP_SERVERS)"
        return
    local = LocalBroker.for_settings(settings)
    if local.running():
        yield settings, f"{local.bootstrap} (the running `ppg-mi kafka up` broker)"
        return
    state = Path(tempfile.mkdtemp(prefix="ppg-mi-bench-kafka-"))
    port = free_port()
    own = settings.replace(kafka_local_port=port)
    broker = LocalBroker(own, state, own.kafka_local_host, port)
    say(f"starting a broker for the bench at {broker.bootstrap} (state {state})")
    broker.start()
    try:
        yield own.replace(kafka_bootstrap_servers=broker.bootstrap), f"{broker.bootstrap} (started by the bench)"
    finally:
        say("stopping the bench's broker")
        broker.destroy()


def _model_store(settings: Settings, opts: BenchOptions, work: Path, say: Any) -> str:
    from ..model import ModelStore

    if opts.models:
        ModelStore(opts.models).current_path()  # fails early, with the reason, when there is no model
        return opts.models
    from training.train import TrainConfig, train

    from ..data import SyntheticConfig, generate
    from ..signal import BandPass

    root = work / "models"
    say(f"training a {settings.model_kind} model on {opts.train_records} synthetic recordings (folds=0)")
    data = generate(SyntheticConfig(records=opts.train_records, samples=settings.samples_per_record,
                                    sampling_rate_hz=settings.sampling_rate_hz, seed=11, id_prefix="benchtrain"))
    train(data, BandPass.from_settings(settings), TrainConfig(kind=settings.model_kind, folds=0), root)
    return str(root)


def measure_functions(settings: Settings, models_dir: str, opts: BenchOptions, say: Any) -> dict[str, Any]:
    """Codec, filter and model alone; and profiles of the two stages' ``process``."""
    from ..data import SyntheticConfig, generate
    from ..model import ModelStore, load_checkpoint
    from ..signal import BandPass, preprocess_batch

    band = BandPass.from_settings(settings)
    data = generate(SyntheticConfig(records=256, samples=settings.samples_per_record,
                                    sampling_rate_hz=settings.sampling_rate_hz, seed=5, id_prefix="benchmicro"))
    raw = np.asarray(data.samples, dtype=np.float32)
    say("codec: encode + decode of one recording")
    codec = micro.codec_us(raw[0], 2000 if opts.quick else 20000)
    say(f"codec: {codec['encode_decode_us']:.2f} µs; filter function alone (batch 1, 64)")
    limits: dict[str, Any] = {}
    limits["filter"] = micro.batches(lambda x: preprocess_batch(x, band), raw, (1, 64), opts.micro_seconds)
    checkpoint = load_checkpoint(ModelStore(models_dir).current_path(), band, settings.samples_per_record)
    checkpoint.warm_up(settings.samples_per_record)
    filtered = preprocess_batch(raw, band)
    say("model.predict_proba alone (batch 1, 64) as served, and with BLAS's default thread pool (before)")
    served = micro.blas_limited(checkpoint.predict_proba, settings.classifier_blas_threads)
    limits["model"] = micro.batches(served, filtered, (1, 64), opts.micro_seconds)
    limits["model"]["version"] = checkpoint.version
    limits["model"]["blas_threads"] = settings.classifier_blas_threads
    limits["model_blas_default"] = micro.batches(micro.blas_limited(checkpoint.predict_proba, 0), filtered, (64,),
                                                 opts.micro_seconds)
    say("profiling the filter's and the classifier's process() on a batch of 64 (no Kafka)")
    profile = _profiles(settings, models_dir, data, band)
    say("validate_samples and FilterProcessor.process before and after the validation fix")
    validation = _validation_fix(settings, data, band, 200 if opts.quick else 2000)
    return {"codec": codec, "limits": limits, "profile": profile, "model_version": checkpoint.version,
            "validation_fix": validation}


def _raw_records(settings: Settings, data: Any, n: int) -> list[Any]:
    from ..streaming.codec import Recording, now_us
    from ..streaming.loop import InputRecord

    out = []
    for i in range(n):
        rec = Recording(data.record_ids[i], data.samples[i], settings.sampling_rate_hz, data.labels[i], 0, now_us())
        out.append(InputRecord(rec.record_id.encode(), rec.encode(), "raw", 0, i, 0))
    return out


def _validation_fix(settings: Settings, data: Any, band: Any, iterations: int) -> dict[str, float]:
    """Same-run before/after of the validation fix: the old function swapped in, then the current one."""
    from ..services import filter as filter_service
    from ..signal import validate_samples
    from .baselines import validate_samples_before

    row = np.asarray(data.samples[0], dtype=np.float32)
    records = _raw_records(settings, data, 64)
    processor = filter_service.FilterProcessor(band, settings.samples_per_record)

    def per_call_us(fn: Any, n: int) -> float:
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            best = min(best, (time.perf_counter() - t0) / n * 1e6)
        return best

    out = {"validate_after_us": per_call_us(lambda: validate_samples(row), iterations),
           "validate_before_us": per_call_us(lambda: validate_samples_before(row), iterations)}
    rounds = max(3, iterations // 100)
    out["filter_process_after_us"] = per_call_us(lambda: processor.process(records), rounds) / len(records)
    current = filter_service.validate_samples
    filter_service.validate_samples = validate_samples_before
    try:
        out["filter_process_before_us"] = per_call_us(lambda: processor.process(records), rounds) / len(records)
    finally:
        filter_service.validate_samples = current
    return out


def _profiles(settings: Settings, models_dir: str, data: Any, band: Any) -> dict[str, str]:
    from ..model import ModelStore
    from ..services.classifier import ClassifierProcessor, ModelServer
    from ..services.filter import FilterProcessor
    from ..streaming.loop import InputRecord, Output

    raw = _raw_records(settings, data, 64)
    filt = FilterProcessor(band, settings.samples_per_record)
    filtered = [InputRecord(r.key, o.value, "filtered", 0, r.offset, 0)
                for r, o in zip(raw, filt.process(raw)) if isinstance(o, Output)]
    classifier = ClassifierProcessor(ModelServer(ModelStore(models_dir), band, settings.samples_per_record, 1e9))
    return {
        "FilterProcessor.process, 64 records x 20": micro.profile_text(lambda: filt.process(raw), 20),
        "ClassifierProcessor.process, 64 records x 3": micro.profile_text(lambda: classifier.process(filtered), 3),
    }


def measure_kafka(settings: Settings, opts: BenchOptions, record_bytes: int, say: Any) -> dict[str, Any]:
    from ..streaming.topics import ensure_topics
    from .transactions import back_to_back_transactions

    topic = f"bench-{uuid.uuid4().hex[:8]}-perf"
    ensure_topics(settings, [topic])
    try:
        say(f"Kafka ProducerPerformance: {opts.perf_records} records of {record_bytes} bytes")
        prod = kafka_perf.producer_limit(settings, topic, opts.perf_records, record_bytes)
        say(f"  {prod['records_per_s']:.0f} records/s; Kafka ConsumerPerformance")
        cons = kafka_perf.consumer_limit(settings, topic, opts.perf_records, f"bench-perf-{uuid.uuid4().hex[:8]}")
        say(f"  {cons['records_per_s']:.0f} records/s")
        txn = {}
        for key, backoff in (("configured", settings.transaction_retry_backoff_ms), ("librdkafka_default", 100)):
            say(f"transactions back to back, retry backoff {backoff} ms")
            txn[key] = back_to_back_transactions(settings.replace(transaction_retry_backoff_ms=backoff), topic)
            say("  p50 {p50:.1f} ms per transaction".format(**txn[key]["total_ms"]))
    finally:
        from .pipeline import delete_topics

        delete_topics(settings.replace(topic_raw=topic, topic_filtered=topic, topic_predictions=topic,
                                       topic_dlq=topic))
    return {"kafka_producer": prod, "kafka_consumer": cons, "transactions": txn}


#: configuration that restores the behaviour before each fix, for the before → after figures
BEFORE_BLAS_ENV = {"PPG_MI_CLASSIFIER_BLAS_THREADS": "0"}
BEFORE_BLAS = "PPG_MI_CLASSIFIER_BLAS_THREADS=0"
BEFORE_BATCHING_ENV = {"PPG_MI_BATCH_FILL_MS": "200"}
BEFORE_BATCHING = "PPG_MI_BATCH_FILL_MS=200"
BEFORE_BACKOFF_ENV = {"PPG_MI_TRANSACTION_RETRY_BACKOFF_MS": "100"}
BEFORE_BACKOFF = "PPG_MI_TRANSACTION_RETRY_BACKOFF_MS=100"
#: compression is every client's setting, the producer's included, so it changes the run's settings
BEFORE_COMPRESSION = {"compression": "lz4"}
BEFORE_COMPRESSION_LABEL = "PPG_MI_COMPRESSION=lz4"


def _say_latency(say: Any, run: dict[str, Any]) -> None:
    commit = run.get("commit_ms", {})
    say("  p50 {p50:.3f} s, p95 {p95:.3f} s, p99 {p99:.3f} s".format(**run["latency_s"])
        + "; from idle: p99 {:.3f} s".format(run["latency_cold_s"]["p99"])
        + "; mean commit: filter {} ms, classifier {} ms".format(
            *(f"{commit[k]:.0f}" if commit.get(k) is not None else "?" for k in ("filter", "classifier"))))


def run_bench(opts: BenchOptions, settings: Settings | None = None) -> dict[str, Any]:
    clock = Clock()
    say = clock.say
    if threading.current_thread() is threading.main_thread():
        # SIGTERM unwinds like Ctrl-C, so the child processes and the bench's broker are stopped
        signal.signal(signal.SIGTERM, _interrupt)
    settings = settings or Settings.from_env()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    meta: dict[str, Any] = {
        "started": started, "quick": opts.quick, "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
        "memory_gb": psutil.virtual_memory().total / 2**30, "python": platform.python_version(),
        "kafka_version": settings.kafka_version, "load_start": list(os.getloadavg()),
        "samples_per_record": settings.samples_per_record, "partitions": settings.topic_partitions,
        "batch": (f"≤ {settings.batch_max_records} records: what is fetched when the first arrives "
                  f"(+{settings.batch_fill_ms} ms)"),
        "classifier_blas_threads": settings.classifier_blas_threads,
        "batch_max_records": settings.batch_max_records,
    }
    say(f"{meta['cpu_count']} CPUs ({meta['cpu_model']}), load {os.getloadavg()[0]:.2f}; "
        f"{'quick' if opts.quick else 'full'} run")
    results: dict[str, Any] = {"meta": meta}
    work = Path(tempfile.mkdtemp(prefix="ppg-mi-bench-"))
    say(f"services' logs in {work / 'logs'} (removed after a successful run)")
    with broker_for(settings, say) as (live, broker_label):
        meta["broker"] = broker_label
        models_dir = _model_store(live, opts, work, say)
        fn = measure_functions(live, models_dir, opts, say)
        results["codec"] = fn["codec"]
        results["profile"] = fn["profile"]
        results["validation_fix"] = fn["validation_fix"]
        meta["model_version"] = fn["model_version"]
        meta["record_bytes"] = fn["codec"]["record_bytes"]
        limits = fn["limits"]
        limits.update(measure_kafka(live, opts, fn["codec"]["record_bytes"], say))
        results["limits"] = limits
        pipeline: dict[str, Any] = {}
        results["pipeline"] = pipeline
        n = opts.pipeline_records
        logs = work / "logs"
        # The broker's JVM compiles its hot paths during the first pipeline runs; unwarmed, the
        # first measured run was the slowest of a run by up to a third, whatever it measured.
        warm_n = max(200, n // 3)
        meta["warm_up_records"] = warm_n
        say(f"warming the broker up: one pipeline run of {warm_n} records (not reported)")
        run_pipeline(live, models_dir, logs, records=warm_n, classifiers=1, seed=100, label="warm-up")
        # Each configuration runs opts.repeats times, the rounds interleaved so that a drift of the
        # machine over the minutes favours no configuration; the best run of each is reported.
        throughput = (
            ("one_classifier", "one classifier", 1, live, None),
            ("two_classifiers", "two classifiers", 2, live, None),
            ("one_classifier_before", f"one classifier, before the BLAS fix ({BEFORE_BLAS})", 1, live,
             BEFORE_BLAS_ENV),
            ("one_classifier_lz4", f"one classifier, before the compression fix ({BEFORE_COMPRESSION_LABEL})", 1,
             live.replace(**BEFORE_COMPRESSION), None),
        )
        latency = (
            ("latency", "half load", live, None),
            ("latency_before_backoff", f"half load, before the retry-backoff fix ({BEFORE_BACKOFF})", live,
             BEFORE_BACKOFF_ENV),
            ("latency_before_batching", f"half load, before the batching fix ({BEFORE_BATCHING})", live,
             BEFORE_BATCHING_ENV),
            ("latency_before", "half load, before all four fixes", live.replace(**BEFORE_COMPRESSION),
             {**BEFORE_BACKOFF_ENV, **BEFORE_BATCHING_ENV, **BEFORE_BLAS_ENV}),
        )
        runs: dict[str, list[dict[str, Any]]] = {}
        warm = opts.latency_warm_up_seconds
        meta["latency_warm_up_s"] = warm
        meta["repeats"] = opts.repeats
        half = lat_n = 0
        seed = 101
        for round_ in range(1, opts.repeats + 1):
            for key, label, classifiers, base, env in throughput:
                say(f"round {round_}/{opts.repeats}, {label}: {n} records as fast as possible")
                run = run_pipeline(base, models_dir, logs, records=n, classifiers=classifiers, seed=seed,
                                   extra_env=env, progress=say, label=label)
                seed += 1
                runs.setdefault(key, []).append(run)
                say(f"  {run['records_per_s']:.1f} records/s sustained")
            if not half:
                # half of the first one-classifier rate, the same offered load for every latency run
                half = runs["one_classifier"][0]["records_per_s"] / 2
                lat_n = max(50, int(half * (opts.latency_seconds + warm)))
            for key, label, base, env in latency:
                say(f"round {round_}/{opts.repeats}, latency, {label}: {lat_n} records at {half:.1f}/s "
                    f"(the first {warm:.0f} s warm the pipeline up)")
                run = run_pipeline(base, models_dir, logs, records=lat_n, classifiers=1, rate=half,
                                   warm_up_s=warm, seed=seed, stage_env=env, progress=say, label=label)
                seed += 1
                runs.setdefault(key, []).append(run)
                _say_latency(say, run)
        for key, _, _, _, _ in throughput:
            pipeline[key] = max(runs[key], key=lambda r: r["records_per_s"])
        for key, _, _, _ in latency:
            pipeline[key] = min(runs[key], key=lambda r: r["latency_s"]["p99"])
        results["pipeline_runs"] = {key: [{"records_per_s": r["records_per_s"],
                                           "classifier_records_per_cpu_s": r["classifier_records_per_cpu_s"],
                                           "p99_s": r["latency_s"]["p99"] if r.get("rate") else None}
                                          for r in each] for key, each in runs.items()}
    meta["load_end"] = list(os.getloadavg())
    meta["duration_s"] = time.monotonic() - clock.t0
    meta["load_note"] = (
        f"The machine has {meta['cpu_count']} CPUs shared by everything running on it; a 1-minute load "
        f"average above the CPU count (start {meta['load_start'][0]:.2f}, end {meta['load_end'][0]:.2f}) "
        "means other work competed with the benchmark and the absolute figures are low. The ratios "
        "compare figures taken in the same run, minutes apart: when the machine's load changes between "
        "them, so do the ratios (the CPU share column shows how much of a core each measurement got).")
    from .findings import fixes_and_notes

    results["fixes"], results["notes"] = fixes_and_notes(results)
    finish(results)
    write_reports(results, opts.out_json, opts.out_md)
    # the services' logs and the bench's model are kept only when a run fails (for the diagnosis)
    shutil.rmtree(work, ignore_errors=True)
    say(f"wrote {opts.out_json} and {opts.out_md} in {meta['duration_s']:.0f} s")
    return results
