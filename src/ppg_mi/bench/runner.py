"""Orchestrates one benchmark run and writes the reports (see :mod:`ppg_mi.bench`)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import psutil

from ..config import Settings
from . import kafka_perf, micro, stages
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
        # goal 2 divides the whole run's rate, which counts the second or so the pipeline takes to
        # fill and to drain, by a limit: at ~4,000 records/s that second is a tenth of a run of
        # 40,000 records, a twentieth of one of 80,000 (the producer generates them first: ~75 s)
        return self.records or (600 if self.quick else 80000)

    @property
    def backlog_records(self) -> int:
        """The backlog each stage drains alone (issue #20 measured the filter on 20,000)."""
        return 3000 if self.quick else 20000

    @property
    def repeats(self) -> int:
        """Runs of each configuration, the rounds interleaved; the best is reported."""
        return 1 if self.quick else 2

    @property
    def perf_records(self) -> int:
        return 1000 if self.quick else 10000

    @property
    def micro_seconds(self) -> float:
        return 0.5 if self.quick else 3.0

    @property
    def latency_seconds(self) -> float:
        return 8.0 if self.quick else 12.0

    @property
    def latency_warm_up_seconds(self) -> float:
        """Seconds at the offered rate before latency counts: the ramp from an idle pipeline
        (tiny first batches, a backlog drained with half the capacity spare) is left out."""
        return 3.0 if self.quick else 5.0

    @property
    def train_records(self) -> int:
        return 80 if self.quick else 200


@dataclass(frozen=True)
class Knob:
    """One setting of the product changed for one run: an old value is just another setting."""

    stage: str
    overrides: tuple[tuple[str, int], ...]
    why: str = ""

    @property
    def label(self) -> str:
        return ", ".join(f"PPG_MI_{k.upper()}={v}" for k, v in self.overrides) + (f" ({self.why})" if self.why else "")

    def applied(self, settings: Settings) -> Settings:
        return settings.replace(**dict(self.overrides))


#: the knob whose old value is goal 1's "before": librdkafka's default fetch back-off
FILTER_BEFORE = Knob("filter", (("fetch_queue_backoff_ms", 1000),), "librdkafka's default, before")


def stage_knobs(quick: bool) -> list[Knob]:
    """Settings of the fetch and the batch each stage-alone round also runs with."""
    knobs = [FILTER_BEFORE]
    if quick:
        return knobs
    return knobs + [
        Knob("filter", (("process_during_commit", 0),), "the serial loop, before"),
        Knob("filter", (("fetch_queue_backoff_ms", 20),)),
        Knob("filter", (("fetch_queue_backoff_ms", 0),)),
        Knob("filter", (("queued_max_kbytes", 65536),), "4x the prefetch cap"),
        Knob("identity", (("batch_max_records", 256),), "before"),
        Knob("filter", (("batch_max_records", 256),), "before"),
        Knob("filter", (("batch_max_records", 64),)),
    ]


def latency_knobs(quick: bool) -> list[Knob]:
    """Settings the half-load latency run also runs with (the filter and the classifier)."""
    linger_before = Knob("pipeline", (("producer_linger_ms", 5),), "before")
    if quick:
        return [linger_before]
    return [linger_before, Knob("pipeline", (("fetch_wait_max_ms", 500),), "librdkafka's default, before"),
            Knob("pipeline", (("classifier_threads", 1),)),
            Knob("pipeline", (("batch_fill_ms", 20),), "fewer, larger transactions")]


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


def listening_pid(port: int) -> int | None:
    """The process listening on ``port`` here (the broker), if this user may see it."""
    try:
        for conn in psutil.net_connections("tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return conn.pid
    except (psutil.Error, OSError):
        pass
    return None


@contextmanager
def broker_for(settings: Settings, say: Any) -> Iterator[tuple[Settings, str, int | None]]:
    """The configured broker, the running local one, or one started here on a free port; and its pid."""
    from ..local.kafka import LocalBroker, free_port

    if settings.kafka_bootstrap_servers:
        first = settings.kafka_bootstrap_servers.split(",")[0]
        port = first.rsplit(":", 1)[-1]
        pid = listening_pid(int(port)) if port.isdigit() and first.startswith(("127.", "localhost")) else None
        yield settings, f"{settings.kafka_bootstrap_servers} (PPG_MI_KAFKA_BOOTSTRAP_SERVERS)", pid
        return
    local = LocalBroker.for_settings(settings)
    if local.running():
        yield settings, f"{local.bootstrap} (the running `ppg-mi kafka up` broker)", local.pid()
        return
    state = Path(tempfile.mkdtemp(prefix="ppg-mi-bench-kafka-"))
    port = free_port()
    own = settings.replace(kafka_local_port=port)
    broker = LocalBroker(own, state, own.kafka_local_host, port)
    say(f"starting a broker for the bench at {broker.bootstrap} (state {state})")
    broker.start()
    try:
        yield (own.replace(kafka_bootstrap_servers=broker.bootstrap), f"{broker.bootstrap} (started by the bench)",
               broker.pid())
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
    say("codec, the filter function and the model alone")
    codec = micro.codec_us(raw[0], 2000 if opts.quick else 20000)
    limits: dict[str, Any] = {"filter": micro.batches(lambda x: preprocess_batch(x, band), raw, (64,),
                                                      opts.micro_seconds)}
    checkpoint = load_checkpoint(ModelStore(models_dir).current_path(), band, settings.samples_per_record)
    checkpoint.warm_up(settings.samples_per_record)
    served = micro.blas_limited(checkpoint.predict_proba, settings.classifier_blas_threads)
    limits["model"] = micro.batches(served, preprocess_batch(raw, band), (64,), opts.micro_seconds)
    say("profiling the filter's and the classifier's process() on a batch of 64 (no Kafka)")
    return {"codec": codec, "limits": limits, "profile": _profiles(settings, models_dir, data, band),
            "model_version": checkpoint.version}


def _raw_records(settings: Settings, data: Any, n: int) -> list[Any]:
    from ..streaming.codec import Recording, now_us
    from ..streaming.loop import InputRecord

    out = []
    for i in range(n):
        rec = Recording(data.record_ids[i], data.samples[i], settings.sampling_rate_hz, data.labels[i], 0, now_us())
        out.append(InputRecord(rec.record_id.encode(), rec.encode(), "raw", 0, i, 0))
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
    """Kafka's own tools at the pipeline's record size, and transactions opened back to back."""
    from ..streaming.topics import ensure_topics
    from .pipeline import delete_topics
    from .transactions import back_to_back_transactions

    topic = f"bench-{uuid.uuid4().hex[:8]}-perf"
    ensure_topics(settings, [topic])
    try:
        say(f"Kafka ProducerPerformance: {opts.perf_records} records of {record_bytes} bytes")
        prod = kafka_perf.producer_limit(settings, topic, opts.perf_records, record_bytes)
        say(f"  {prod['records_per_s']:.0f} records/s; Kafka ConsumerPerformance")
        cons = kafka_perf.consumer_limit(settings, topic, opts.perf_records, f"bench-perf-{uuid.uuid4().hex[:8]}")
        say(f"  {cons['records_per_s']:.0f} records/s; transactions back to back")
        txn = {"configured": back_to_back_transactions(settings, topic)}
        say("  p50 {p50:.1f} ms per transaction".format(**txn["configured"]["total_ms"]))
    finally:
        delete_topics(settings.replace(topic_raw=topic, topic_filtered=topic, topic_predictions=topic,
                                       topic_dlq=topic))
    return {"kafka_producer": prod, "kafka_consumer": cons, "transactions": txn}


def _say_stage(say: Any, run: dict[str, Any]) -> None:
    say(f"  {run['records_per_s']:.0f} records/s, {run['cpu_ms_per_record']:.3f} CPU ms per record, "
        f"{run['cpu_share']:.2f} of a CPU")


def measure_stages(settings: Settings, models_dir: str, opts: BenchOptions, work: Path, broker_pid: int | None,
                   say: Any) -> dict[str, Any]:
    """The producer alone on a backlog, then each stage alone draining it, as configured and per knob."""
    logs = work / "logs"
    backlog = stages.Backlog(settings.replace(models_dir=models_dir), opts.backlog_records)
    runs: dict[str, list[dict[str, Any]]] = {}
    knobs = stage_knobs(opts.quick)
    try:
        produced = stages.produce_backlog(backlog, logs, broker_pid, progress=say)
        say(f"  producer: {produced['records_per_s']:.0f} records/s, {produced['cpu_ms_per_record']:.3f} CPU ms "
            "per record")
        for round_ in range(1, opts.repeats + 1):
            plan: list[tuple[str, Knob | None]] = [("identity", None), ("filter", None)]
            plan += [(k.stage, k) for k in knobs]
            if round_ % 2 == 0:
                # a run's place in the round moved its rate by up to half (the broker deleting the last
                # run's output, its caches): every other round runs the plan backwards
                plan.reverse()
            for stage, knob in plan:
                key = stage if knob is None else f"{stage}: {knob.label}"
                say(f"round {round_}/{opts.repeats}, {key}")
                run_settings = knob.applied(backlog.base) if knob else backlog.base
                label = f"{stage}-r{round_}" + (f"-k{knobs.index(knob)}" if knob else "")
                run = stages.drain(backlog, stage, "raw", logs, broker_pid, settings=run_settings, label=label,
                                   keep_output=label == "filter-r1", progress=say)
                run["knob_label"] = knob.label if knob else ""
                runs.setdefault(key, []).append(run)
                _say_stage(say, run)
            # the classifier drains what the first round's filter wrote (at least 90 % of the backlog), on
            # one thread: its CPU-bound limit is what it moves with a core to itself
            say(f"round {round_}/{opts.repeats}, classifier")
            run = stages.drain(backlog, "classifier", "filter-r1-out", logs, broker_pid,
                               settings=backlog.base.replace(classifier_threads=1), label=f"classifier-r{round_}",
                               records=int(0.9 * backlog.records), progress=say)
            run["knob_label"] = ""
            runs.setdefault("classifier", []).append(run)
            _say_stage(say, run)
    finally:
        backlog.close()
    best = {key: dict(max(each, key=lambda r: r["records_per_s"]), each=[r["records_per_s"] for r in each])
            for key, each in runs.items()}
    return {
        "backlog": produced,
        "stages": {key: best[key] for key in ("identity", "filter", "classifier")},
        "filter_before": best[f"filter: {FILTER_BEFORE.label}"],
        "stage_knobs": [best[key] for key in best if key not in ("identity", "classifier")],
    }


def half_load(one_classifier: dict[str, Any]) -> float:
    """The latency runs' offered rate: half of what a one-classifier run sustained over its whole span.

    The span runs from the first record produced to the last predicted, with every process sharing
    the machine.  The steady rate is measured once the producer's burst is over, so half of it is
    more than half of what the machine can carry end to end (1,784 records/s saturated it).
    """
    return (one_classifier.get("span_records_per_s") or one_classifier["records_per_s"]) / 2


def measure_pipeline(settings: Settings, models_dir: str, opts: BenchOptions, work: Path, broker_pid: int | None,
                     say: Any) -> dict[str, Any]:
    """One and two classifiers draining a backlog end to end; latency at half load, as configured and per knob."""
    logs = work / "logs"
    n = opts.pipeline_records
    runs: dict[str, list[dict[str, Any]]] = {}
    warm = opts.latency_warm_up_seconds
    seed = 101
    for round_ in range(1, opts.repeats + 1):
        for key, label, classifiers in (("one_classifier", "one classifier", 1),
                                        ("two_classifiers", "two classifiers", 2)):
            say(f"round {round_}/{opts.repeats}, {label}: {n} records as fast as possible")
            # the producer generates every recording before it sends one: no prediction for a while
            run = run_pipeline(settings, models_dir, logs, records=n, classifiers=classifiers, seed=seed,
                               broker_pid=broker_pid, progress=say, label=label, stall_s=max(120.0, n / 300))
            seed += 1
            runs.setdefault(key, []).append(run)
            say(f"  {run['records_per_s']:.1f} records/s sustained")
    # half of the best one-classifier run: a slow first round (a cold broker) set an easier rate
    half = half_load(max(runs["one_classifier"], key=lambda r: r.get("span_records_per_s") or r["records_per_s"]))
    lat_n = max(50, int(half * (opts.latency_seconds + warm)))
    for round_ in range(1, opts.repeats + 1):
        plan: list[Knob | None] = [None, *latency_knobs(opts.quick)]
        if round_ % 2 == 0:  # as the stage rounds: a run's place in the round is not its setting's doing
            plan.reverse()
        for knob in plan:
            key = "latency" if knob is None else f"latency: {knob.label}"
            say(f"round {round_}/{opts.repeats}, half load {knob.label if knob else 'as configured'}: {int(lat_n)} "
                f"records at {half:.1f}/s (the first {warm:.0f} s warm the pipeline up)")
            run = run_pipeline(knob.applied(settings) if knob else settings, models_dir, logs, records=int(lat_n),
                               classifiers=1, rate=half, warm_up_s=warm, seed=seed, broker_pid=broker_pid,
                               progress=say, label=key)
            run["knob_label"] = knob.label if knob else ""
            seed += 1
            runs.setdefault(key, []).append(run)
            say("  p50 {p50:.3f} s, p99 {p99:.3f} s".format(**run["latency_s"]))
    pipeline: dict[str, Any] = {}
    for key, each in runs.items():
        if key.startswith("latency"):
            best = min(each, key=lambda r: r["latency_s"]["p99"])
            pipeline[key] = dict(best, each_p99=[r["latency_s"]["p99"] for r in each])
        else:
            best = max(each, key=lambda r: r["records_per_s"])
            pipeline[key] = dict(best, each=[r["records_per_s"] for r in each])
    return pipeline


def _scaling_figures(out_md: str) -> dict[str, Any] | None:
    """docs/scaling.json beside the page, written by `ppg-mi bench scaling` (goal 5's verdict)."""
    try:
        return json.loads((Path(out_md).parent / "scaling.json").read_text())
    except (OSError, ValueError):
        return None


def run_bench(opts: BenchOptions, settings: Settings | None = None) -> dict[str, Any]:
    clock = Clock()
    say = clock.say
    if threading.current_thread() is threading.main_thread():
        # SIGTERM unwinds like Ctrl-C, so the child processes and the bench's broker are stopped
        signal.signal(signal.SIGTERM, _interrupt)
    settings = settings or Settings.from_env()
    meta: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "quick": opts.quick,
        "cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "memory_gb": psutil.virtual_memory().total / 2**30,
        "python": platform.python_version(), "kafka_version": settings.kafka_version,
        "load_start": list(os.getloadavg()), "samples_per_record": settings.samples_per_record,
        "partitions": settings.topic_partitions, "batch_max_records": settings.batch_max_records,
        "fetch_queue_backoff_ms": settings.fetch_queue_backoff_ms, "fetch_wait_max_ms": settings.fetch_wait_max_ms,
        "repeats": opts.repeats,
    }
    say(f"{meta['cpu_count']} CPUs ({meta['cpu_model']}), load {os.getloadavg()[0]:.2f}; "
        f"{'quick' if opts.quick else 'full'} run")
    results: dict[str, Any] = {"meta": meta}
    work = Path(tempfile.mkdtemp(prefix="ppg-mi-bench-"))
    say(f"services' logs in {work / 'logs'} (removed after a successful run)")
    with broker_for(settings, say) as (live, broker_label, broker_pid):
        meta["broker"] = broker_label
        meta["broker_cpu_measured"] = broker_pid is not None
        models_dir = _model_store(live, opts, work, say)
        fn = measure_functions(live, models_dir, opts, say)
        results.update(codec=fn["codec"], profile=fn["profile"])
        meta["model_version"] = fn["model_version"]
        meta["record_bytes"] = fn["codec"]["record_bytes"]
        results["limits"] = {**fn["limits"], **measure_kafka(live, opts, fn["codec"]["record_bytes"], say)}
        # the stage-alone runs come first: they also warm the broker's JVM up for the pipeline runs
        results.update(measure_stages(live, models_dir, opts, work, broker_pid, say))
        results["pipeline"] = measure_pipeline(live, models_dir, opts, work, broker_pid, say)
    meta["load_end"] = list(os.getloadavg())
    meta["duration_s"] = time.monotonic() - clock.t0
    # only the load before the bench tells of other work: at its end the load is the bench's own
    # processes (a broker and up to four stage processes on the same CPUs)
    if meta["load_start"][0] > (meta["cpu_count"] or 1) * 1.25:
        meta["load_note"] = (
            f"**Measured on a busy machine** (1-minute load {meta['load_start'][0]:.1f} at the start on "
            f"{meta['cpu_count']} CPUs): other work took CPU from every process measured, so rates and ratios "
            "are low and noisy; rerun on a quiet machine for the figures to quote.")
    finish(results, _scaling_figures(opts.out_md))
    write_reports(results, opts.out_json, opts.out_md)
    # the services' logs and the bench's model are kept only when a run fails (for the diagnosis)
    shutil.rmtree(work, ignore_errors=True)
    say(f"wrote {opts.out_json} and {opts.out_md} in {meta['duration_s']:.0f} s")
    return results
