"""The pipeline end to end as real processes: producer → filter → classifier(s) → predictions.

Each run gets its own topics and consumer groups, so runs (and other users of the broker)
never see each other's records.  A monitor thread polls every process's RSS and CPU
seconds (psutil); a reader in this process collects every prediction's timestamps.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psutil
from confluent_kafka import Consumer, TopicPartition

from ..config import Settings
from ..local.kafka import free_port
from ..model.threads import usable_cpus
from ..observability.probe import fetch, metric_total
from ..streaming.clients import common_config, reader_config
from ..streaming.codec import decode_prediction
from ..streaming.topics import ensure_topics, topic_names
from .stats import delta_between, percentiles, steady_window, sustained_rate

Progress = Callable[[str], None]

# the reader's librdkafka chatter (e.g. reconnects while the bench's broker stops) is not the report
_QUIET = logging.getLogger("ppg_mi.bench.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


@dataclass
class Child:
    """One ``python -m ppg_mi <role>`` process with its own metrics port and log file."""

    name: str
    proc: subprocess.Popen
    port: int
    log: Path
    cpu: list[tuple[float, float]] = field(default_factory=list)  # (wall time, CPU seconds)
    peak_rss: int = 0

    def get(self, path: str) -> str | None:
        return fetch(self.port, path)

    def metric(self, name: str) -> float:
        return metric_total(self.get("/metrics") or "", name)

    def tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def spawn(settings: Settings, name: str, args: list[str], log_dir: Path, extra_env: dict[str, str] | None = None) -> Child:
    port = free_port()
    env = {**os.environ, **settings.as_env(), "PPG_MI_METRICS_PORT": str(port), "PPG_MI_INSTANCE_ID": name,
           "PPG_MI_LOG_FORMAT": "json", "PPG_MI_LOG_LEVEL": "INFO", **(extra_env or {})}
    log = log_dir / f"{name}.log"
    proc = subprocess.Popen([sys.executable, "-m", "ppg_mi", *args], env=env, stdout=log.open("ab"),
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return Child(name, proc, port, log)


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent working (all CPUs; idle, I/O wait and steal excluded)."""
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


class Monitor(threading.Thread):
    """Polls RSS (peak) and cumulative CPU seconds of every child, and the machine's busy CPU seconds."""

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(daemon=True, name="bench-monitor")
        self.interval = interval
        self.children: list[tuple[Child, psutil.Process]] = []
        self.machine: list[tuple[float, float]] = []
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def watch(self, child: Child, pid: int | None = None) -> None:
        """Sample ``child`` (its process, or ``pid``: the broker is no child of the bench)."""
        with self._lock:
            self.children.append((child, psutil.Process(pid if pid is not None else child.proc.pid)))

    def run(self) -> None:
        while not self._halt.is_set():
            now = time.time()
            self.machine.append((now, machine_busy_seconds()))
            with self._lock:
                watched = list(self.children)
            for child, ps in watched:
                try:
                    with ps.oneshot():
                        rss = ps.memory_info().rss
                        t = ps.cpu_times()
                except psutil.Error:
                    continue
                child.peak_rss = max(child.peak_rss, rss)
                child.cpu.append((now, t.user + t.system))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


class PredictionReader(threading.Thread):
    """Reads the predictions topic from the start (read_committed) and keeps each one's timestamps.

    Values are kept as they come and decoded once the run is over: decoding them meanwhile took CPU
    from the processes measured, and no figure counts the bench's own CPU.
    """

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True, name="bench-reader")
        self.settings = settings
        self._values: list[bytes] = []
        self._decoded: tuple[list[int], list[int], list[int]] | None = None
        self.assigned = threading.Event()
        self._halt = threading.Event()

    def run(self) -> None:
        topic = self.settings.topic_predictions
        consumer = Consumer({**reader_config(self.settings, f"bench-reader-{uuid.uuid4().hex[:8]}"),
                             "enable.partition.eof": False, "logger": _QUIET})
        try:
            # a topic created a moment ago may not show all its partitions yet: wait for them all
            deadline = time.monotonic() + 60
            while True:
                md = consumer.list_topics(topic, timeout=10).topics.get(topic)
                if md is not None and md.error is None and len(md.partitions) >= self.settings.topic_partitions:
                    break
                if time.monotonic() > deadline or self._halt.wait(0.2):
                    raise RuntimeError(f"{topic} did not show {self.settings.topic_partitions} partitions")
            consumer.assign([TopicPartition(topic, p, 0) for p in md.partitions])
            self.assigned.set()
            while not self._halt.is_set():
                self._values.extend(m.value() for m in consumer.consume(500, 0.2) if not m.error())
        finally:
            consumer.close()

    @property
    def count(self) -> int:
        return len(self._values)

    def _timestamps(self) -> tuple[list[int], list[int], list[int]]:
        if self._decoded is None or len(self._decoded[0]) != len(self._values):
            decoded = [decode_prediction(v) for v in list(self._values)]
            self._decoded = ([p.produced_us for p in decoded], [p.filtered_us for p in decoded],
                             [p.predicted_us for p in decoded])
        return self._decoded

    @property
    def produced_us(self) -> list[int]:
        return self._timestamps()[0]

    @property
    def filtered_us(self) -> list[int]:
        return self._timestamps()[1]

    @property
    def predicted_us(self) -> list[int]:
        return self._timestamps()[2]

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def run_settings(base: Settings, tag: str, models_dir: str) -> Settings:
    """``base`` with topics and groups of its own for one run."""
    return base.replace(
        topic_raw=f"bench-{tag}-raw", topic_filtered=f"bench-{tag}-filtered",
        topic_predictions=f"bench-{tag}-predictions", topic_dlq=f"bench-{tag}-dlq",
        group_filter=f"bench-{tag}-filter", group_classifier=f"bench-{tag}-classifier",
        group_dashboard=f"bench-{tag}-dashboard", models_dir=models_dir,
    )


def delete_topics(settings: Settings) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(common_config(settings))
    for future in admin.delete_topics(topic_names(settings), operation_timeout=30).values():
        try:
            future.result()
        except Exception:  # noqa: BLE001 - cleanup is best effort
            pass


def _wait(cond: Callable[[], bool], timeout: float, what: str, children: list[Child]) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        for c in children:
            if c.proc.poll() not in (None, 0) or (c.proc.poll() is not None and not c.name.startswith("producer")):
                raise RuntimeError(f"{c.name} exited with {c.proc.returncode} while waiting for {what}:\n{c.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.25)


def _diagnose(consumers: list[Child]) -> str:
    parts = []
    for c in consumers:
        parts.append(f"{c.name}: consumed {c.metric('ppg_mi_records_consumed_total'):.0f}, assigned "
                     f"{c.metric('ppg_mi_assigned_partitions'):.0f} partitions; log tail:\n{c.tail(8)}")
    return "\n".join(parts)


def _stop(children: list[Child]) -> None:
    for c in children:
        if c.proc.poll() is None:
            c.proc.terminate()
    for c in children:
        try:
            c.proc.wait(20)
        except subprocess.TimeoutExpired:
            c.proc.kill()
            c.proc.wait(5)


def cpu_shares(children: list[Child], machine: list[tuple[float, float]], lo: float, hi: float) -> dict[str, float]:
    """CPUs each role used, on average, between ``lo`` and ``hi``: who had the machine while the
    classifier worked.  ``other`` is the machine's busy CPU not used by the children: the broker,
    the bench's own reader and whatever else ran."""
    if hi <= lo or not machine:
        return {}
    shares: dict[str, float] = {}
    for c in children:
        if c.cpu:
            role = "classifier" if c.name.startswith("classifier") else c.name.rsplit("-", 1)[0]
            shares[role] = shares.get(role, 0.0) + delta_between(c.cpu, lo, hi) / (hi - lo)
    shares["machine"] = delta_between(machine, lo, hi) / (hi - lo)
    shares["other"] = max(shares["machine"] - sum(v for k, v in shares.items() if k != "machine"), 0.0)
    return shares


def run_pipeline(base: Settings, models_dir: str, log_dir: Path, *, records: int, classifiers: int,
                 rate: float = 0.0, warm_up_s: float = 0.0, seed: int = 0, extra_env: dict[str, str] | None = None,
                 stage_env: dict[str, str] | None = None, broker_pid: int | None = None,
                 timeout: float = 900, stall_s: float = 120, progress: Progress = print, label: str = "") -> dict[str, Any]:
    """Stream ``records`` synthetic recordings through filter and ``classifiers`` classifiers.

    ``rate`` 0 sends as fast as possible (a backlog: the sustained rate); a positive rate
    paces the producer (the latency run).  ``extra_env`` goes to the classifiers only,
    ``stage_env`` to the filter and the classifiers.  ``latency_s`` covers the records produced
    ``warm_up_s`` or more after the first (steady state); ``latency_cold_s`` covers all of them,
    including the ramp from an idle pipeline.  ``cpu_ms_per_record`` is each stage's and the
    broker's (``broker_pid``) CPU from the first record produced to the last predicted, per record.
    """
    tag = uuid.uuid4().hex[:8]
    settings = run_settings(base, tag, models_dir)
    ensure_topics(settings)
    log_dir.mkdir(parents=True, exist_ok=True)
    monitor = Monitor()
    reader = PredictionReader(settings)
    children: list[Child] = []
    try:
        monitor.start()
        reader.start()
        if not reader.assigned.wait(60):
            raise RuntimeError(f"the prediction reader could not assign {settings.topic_predictions}")
        filt = spawn(settings, f"filter-{tag}", ["filter"], log_dir, stage_env)
        children.append(filt)
        classifier_children = []
        # replicas on one machine share its cores as pods share a node: each gets its part as a CPU
        # limit would give it (two classifiers of two threads each on two cores lose to one each)
        share = {} if settings.classifier_threads else {
            "PPG_MI_CLASSIFIER_THREADS": str(max(1, usable_cpus() // max(classifiers, 1)))}
        for i in range(classifiers):
            c = spawn(settings, f"classifier-{i + 1}-{tag}", ["classify"], log_dir,
                      {**share, **(stage_env or {}), **(extra_env or {})})
            children.append(c)
            classifier_children.append(c)
        for c in children:
            monitor.watch(c)
        broker = Child("broker", None, 0, Path(os.devnull))  # type: ignore[arg-type]
        if broker_pid is not None:
            try:
                monitor.watch(broker, broker_pid)
            except psutil.Error:  # a broker of another user: its CPU is not measured
                pass
        consumers = [filt, *classifier_children]
        _wait(lambda: all(c.get("/readyz") is not None and '"ok": true' in (c.get("/readyz") or "")
                          for c in consumers), 300, "the stages to be ready", children)
        # every partition owned before the clock matters: a join mid-run is not the steady state
        _wait(lambda: filt.metric("ppg_mi_assigned_partitions") >= settings.topic_partitions
              and sum(c.metric("ppg_mi_assigned_partitions") for c in classifier_children) >= settings.topic_partitions,
              120, "partition assignment", children)
        progress(f"{label}: stages ready; producing {records} records"
                 + (f" at {rate:.1f}/s" if rate else " as fast as possible"))
        producing_from = time.time()
        producer = spawn(settings, f"producer-{tag}",
                         ["produce", "--synthetic", str(records), "--seed", str(seed), "--rate", str(rate)], log_dir)
        children.append(producer)
        monitor.watch(producer)
        deadline = time.monotonic() + timeout
        last_report = started = seen_at = time.monotonic()
        seen = 0
        while reader.count < records:
            if producer.proc.poll() not in (None, 0):
                raise RuntimeError(f"the producer exited with {producer.proc.returncode}:\n{producer.tail()}")
            for c in consumers:
                if c.proc.poll() is not None:
                    raise RuntimeError(f"{c.name} exited with {c.proc.returncode}:\n{c.tail()}")
            if reader.count != seen:
                seen, seen_at = reader.count, time.monotonic()
            if time.monotonic() > deadline or time.monotonic() - seen_at > stall_s:
                raise RuntimeError(f"only {reader.count}/{records} predictions after "
                                   f"{time.monotonic() - started:.0f}s; " + _diagnose(consumers))
            if time.monotonic() - last_report >= 5:
                last_report = time.monotonic()
                progress(f"{label}: {reader.count}/{records} predicted")
            time.sleep(0.2)
        time.sleep(monitor.interval * 2)  # one more CPU sample after the last prediction
        threads = sum(c.metric("ppg_mi_classifier_threads") for c in classifier_children)
        batches = sum(c.metric("ppg_mi_batch_size_records_count") for c in classifier_children)
        batch_records = sum(c.metric("ppg_mi_batch_size_records_sum") for c in classifier_children)
        dead = sum(c.metric("ppg_mi_records_dead_lettered_total") for c in consumers)
        commit_ms = {}
        for role, members in (("filter", [filt]), ("classifier", classifier_children)):
            n = sum(c.metric("ppg_mi_transaction_seconds_count") for c in members)
            total = sum(c.metric("ppg_mi_transaction_seconds_sum") for c in members)
            commit_ms[role] = 1000 * total / n if n else None
    finally:
        _stop(children)
        monitor.stop()
        reader.stop()
        try:
            delete_topics(settings)
        except Exception:  # noqa: BLE001
            pass

    predicted_s = [t / 1e6 for t in reader.predicted_us]
    first_us = min(reader.produced_us, default=0)
    steady = [i for i, t in enumerate(reader.produced_us) if t - first_us >= warm_up_s * 1e6]
    cold = [(b - a) / 1e6 for a, b in zip(reader.produced_us, reader.predicted_us)]
    latencies = [cold[i] for i in steady]
    lo, hi, inside = steady_window(predicted_s)
    cpu = sum(delta_between(c.cpu, lo, hi) for c in classifier_children)
    cpu_share = cpu_shares(children, monitor.machine, lo, hi)
    # the span runs from the first record produced (the producer's start-up is not the pipeline's)
    # to the last predicted
    producing_from = max(producing_from, min(reader.produced_us, default=0) / 1e6)
    span_end = max(predicted_s, default=producing_from)
    per_record: dict[str, float] = {}
    for c in [*consumers, broker]:
        if c.cpu and reader.count:
            role = "classifier" if c.name.startswith("classifier") else c.name.split("-", 1)[0]
            cpu_ms = 1000 * delta_between(c.cpu, producing_from, span_end) / reader.count
            per_record[role] = per_record.get(role, 0.0) + cpu_ms
    lat = percentiles(latencies)
    lat["max"] = max(latencies) if latencies else float("nan")
    lat["mean"] = sum(latencies) / len(latencies) if latencies else float("nan")
    # where the time goes: producer → filter's stamp, then filter's stamp → classifier's stamp
    # (which includes the filter's commit and the read_committed hand-over)
    segments = {
        "produced_to_filtered": percentiles([(reader.filtered_us[i] - reader.produced_us[i]) / 1e6 for i in steady]),
        "filtered_to_predicted": percentiles([(reader.predicted_us[i] - reader.filtered_us[i]) / 1e6 for i in steady]),
    }
    return {
        "records": reader.count,
        "classifiers": classifiers,
        "classifier_threads": int(threads) or None,  # of the model's transform, over all classifiers
        "rate": rate,
        "records_per_s": sustained_rate(predicted_s),
        "window_s": hi - lo,
        "window_records": inside,
        "classifier_cpu_s_in_window": cpu,
        "classifier_records_per_cpu_s": inside / cpu if cpu > 0 else None,
        "cpu_share_in_window": cpu_share,
        "cpu_ms_per_record": per_record,
        # the whole run's rate, over the same span as cpu_ms_per_record (the steady rate above leaves
        # out the start and the tail, whose CPU the per-record figures include)
        "span_s": span_end - producing_from,
        "span_records_per_s": reader.count / (span_end - producing_from) if span_end > producing_from else None,
        "classifier_mean_batch": batch_records / batches if batches else None,
        "dead_letters": dead,
        "latency_s": lat,
        "latency_segments_s": segments,
        "latency_cold_s": {**percentiles(cold), "max": max(cold, default=float("nan"))},
        "latency_records": len(latencies),
        "warm_up_s": warm_up_s,
        "commit_ms": commit_ms,
        "peak_rss_mb": {c.name.rsplit("-", 1)[0]: c.peak_rss / 2**20 for c in children},
        "extra_env": {**(stage_env or {}), **(extra_env or {})},
    }
