"""Each stage alone, draining a backlog: its records/s, its CPU per record and the broker's.

A backlog of synthetic recordings is produced once (the producer alone, timed too); then each
stage, as a real process with a consumer group of its own, drains it (or the filter's output)
into a topic of its own.  The identity stage (:mod:`.identity`) drains the same backlog through
the same loop with a processor that costs nothing: the limit Kafka sets a stage here.  A knob
(a setting such as ``fetch_queue_backoff_ms``) is a parameter of a run, so an old value is one
more run of the same code.

Rates are taken while the stage's committed count goes from 10 % to 90 % of the backlog
(start-up, the group join and the tail excluded); CPU seconds of the stage and of the broker
are read from ``/proc`` at the same moments.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import Settings
from ..streaming.topics import ensure_topics
from .pipeline import Child, Monitor, delete_topics, spawn, _stop
from .stats import delta_between

Progress = Callable[[str], None]

#: stage → (command line after ``python -m``, consumed-records metric)
COMMANDS = {
    "identity": (["-m", "ppg_mi.bench.identity"], "ppg_mi_records_consumed_total"),
    "filter": (["filter"], "ppg_mi_records_consumed_total"),
    "classifier": (["classify"], "ppg_mi_records_consumed_total"),
}


@dataclass
class Backlog:
    """Topics of one stage-alone session: the raw backlog and what each drain wrote."""

    base: Settings
    records: int
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    topics: list[str] = field(default_factory=list)

    def topic(self, name: str) -> str:
        topic = f"bench-{self.tag}-{name}"
        if topic not in self.topics:
            self.topics.append(topic)
        return topic

    @property
    def raw(self) -> str:
        return self.topic("raw")

    def drop(self, topic: str) -> None:
        """Delete one of the session's topics now (a drain's output: 160 MB for 20,000 records)."""
        try:
            delete_topics(self.base.replace(topic_raw=topic, topic_filtered=topic, topic_predictions=topic,
                                            topic_dlq=topic))
        except Exception:  # noqa: BLE001 - cleanup is best effort
            pass
        if topic in self.topics:
            self.topics.remove(topic)

    def close(self) -> None:
        for topic in list(self.topics):
            self.drop(topic)


def window(progress: list[tuple[float, float]], total: int, lo: float = 0.1, hi: float = 0.9) -> tuple[float, float, float]:
    """(start, end, records between) of a cumulative count's climb from ``lo`` to ``hi`` of ``total``.

    The times are interpolated between samples, so a count polled every 0.1 s still places a
    2-second climb to within a few per cent.
    """
    def crossing(target: float) -> float:
        for (t0, c0), (t1, c1) in zip(progress, progress[1:]):
            if c1 >= target:
                return t1 if c1 == c0 else t0 + (t1 - t0) * (target - c0) / (c1 - c0)
        raise ValueError(f"the count never reached {target:.0f} of {total}")

    start, end = crossing(lo * total), crossing(hi * total)
    if end <= start:
        raise ValueError("no time between the window's ends")
    return start, end, (hi - lo) * total


def _broker_child(broker_pid: int | None, monitor: Monitor) -> Child | None:
    if broker_pid is None:
        return None
    broker = Child("broker", None, 0, Path("/dev/null"))  # type: ignore[arg-type]
    try:
        monitor.watch(broker, broker_pid)
    except Exception:  # noqa: BLE001 - a broker of another user, or gone: its CPU is not measured
        return None
    return broker


def _follow(child: Child, metric: str, total: int, timeout: float, stall_s: float,
            progress: list[tuple[float, float]], poll_s: float = 0.1) -> None:
    """Poll ``metric`` of ``child`` until it reaches ``total``."""
    deadline = time.monotonic() + timeout
    last, last_at = -1.0, time.monotonic()
    while True:
        code = child.proc.poll()
        if code == 0 and progress:
            # a producer that sent everything and exited between two polls: done by now at the latest
            progress.append((time.time(), float(total)))
            return
        if code is not None:
            raise RuntimeError(f"{child.name} exited with {code}:\n{child.tail()}")
        text = child.get("/metrics")
        if text is not None:
            from ..observability.probe import metric_total

            count = metric_total(text, metric)
            progress.append((time.time(), count))
            if count >= total:
                return
            if count != last:
                last, last_at = count, time.monotonic()
        if time.monotonic() > deadline or time.monotonic() - last_at > stall_s:
            raise RuntimeError(f"{child.name}: {last:.0f}/{total} after {timeout:.0f}s:\n{child.tail()}")
        time.sleep(poll_s)


def _measure(child: Child, broker: Child | None, progress: list[tuple[float, float]], total: int) -> dict[str, Any]:
    start, end, inside = window(progress, total)
    cpu = delta_between(child.cpu, start, end)
    out: dict[str, Any] = {
        "records": total, "window_s": end - start, "records_per_s": inside / (end - start),
        "cpu_ms_per_record": 1000 * cpu / inside, "cpu_share": cpu / (end - start),
        "records_per_cpu_s": inside / cpu if cpu > 0 else None,
        "peak_rss_mb": child.peak_rss / 2**20,
    }
    if broker is not None and broker.cpu:
        broker_cpu = delta_between(broker.cpu, start, end)
        out["broker_cpu_ms_per_record"] = 1000 * broker_cpu / inside
        out["broker_cpu_share"] = broker_cpu / (end - start)
    return out


def produce_backlog(backlog: Backlog, log_dir: Path, broker_pid: int | None, *, seed: int = 7,
                    timeout: float = 600, progress: Progress = print) -> dict[str, Any]:
    """Write ``backlog.records`` synthetic recordings to the backlog's raw topic, the producer alone."""
    settings = backlog.base.replace(topic_raw=backlog.raw, topic_dlq=backlog.topic("dlq"))
    ensure_topics(settings, [backlog.raw, settings.topic_dlq])
    log_dir.mkdir(parents=True, exist_ok=True)
    monitor = Monitor(0.1)
    monitor.start()
    broker = _broker_child(broker_pid, monitor)
    producer = spawn(settings, f"producer-{backlog.tag}",
                     ["produce", "--synthetic", str(backlog.records), "--seed", str(seed), "--rate", "0"], log_dir)
    monitor.watch(producer)
    samples: list[tuple[float, float]] = []
    try:
        progress(f"backlog: producing {backlog.records} records to {backlog.raw}")
        _follow(producer, "ppg_mi_producer_records_sent_total", backlog.records, timeout, 120, samples)
        time.sleep(0.25)  # one more CPU sample after the last acknowledgement
        return _measure(producer, broker, samples, backlog.records)
    finally:
        _stop([producer])
        monitor.stop()


def drain(backlog: Backlog, stage: str, source: str, log_dir: Path, broker_pid: int | None, *,
          settings: Settings | None = None, label: str = "", records: int | None = None, timeout: float = 900,
          keep_output: bool = False, progress: Progress = print) -> dict[str, Any]:
    """Run ``stage`` alone on the backlog's topic ``source`` until it consumed 90 % of ``records``
    (default: the backlog; a stage's output may hold less when it was stopped at 90 %).
    The output topic is deleted afterwards unless ``keep_output`` (another stage's input).

    Writes to a topic of its own (``<label>``, returned as ``"output"``) with a group of its own;
    ``settings`` (default: the backlog's) carries the knobs of this run.
    """
    base = settings or backlog.base
    name = label or stage
    out_name = f"{name}-out".replace(" ", "-").replace("=", "-")
    out_topic = backlog.topic(out_name)
    group = f"bench-{backlog.tag}-{uuid.uuid4().hex[:6]}"
    source_topic = backlog.topic(source)
    dlq = backlog.topic("dlq")
    if stage == "classifier":
        run = base.replace(topic_filtered=source_topic, topic_predictions=out_topic, group_classifier=group,
                           topic_dlq=dlq)
    else:
        run = base.replace(topic_raw=source_topic, topic_filtered=out_topic, group_filter=group, topic_dlq=dlq)
    ensure_topics(run, [out_topic, dlq])
    args, metric = COMMANDS[stage]
    monitor = Monitor(0.1)
    monitor.start()
    broker = _broker_child(broker_pid, monitor)
    child = _spawn(run, f"{stage}-{uuid.uuid4().hex[:6]}", args, log_dir)
    monitor.watch(child)
    samples: list[tuple[float, float]] = []
    total = records or backlog.records
    until = int(0.9 * total) + 1
    try:
        progress(f"{name}: draining {total} records of {source_topic}")
        _follow(child, metric, until, timeout, 120, samples)
        time.sleep(0.25)
        result = _measure(child, broker, samples, total)
        result["turns"] = turns(child.get("/metrics") or "")
    finally:
        _stop([child])
        monitor.stop()
        if not keep_output:
            backlog.drop(out_topic)
    result.update({"stage": stage, "label": name, "output": out_name,
                   "settings": {k: getattr(run, k) for k in KNOBS}})
    return result


#: settings a stage-alone run reports, the knobs of the loop's fetching and batching
KNOBS = ("fetch_queue_backoff_ms", "queued_max_kbytes", "batch_max_records", "batch_max_wait_ms", "batch_fill_ms",
         "process_during_commit")


def _spawn(settings: Settings, name: str, args: list[str], log_dir: Path) -> Child:
    """``spawn`` for a ``-m module`` command as well as a ``ppg_mi`` role."""
    if args[0] != "-m":
        return spawn(settings, name, args, log_dir)
    import os
    import subprocess
    import sys

    from ..local.kafka import free_port

    port = free_port()
    env = {**os.environ, **settings.as_env(), "PPG_MI_METRICS_PORT": str(port), "PPG_MI_INSTANCE_ID": name,
           "PPG_MI_LOG_FORMAT": "json", "PPG_MI_LOG_LEVEL": "INFO"}
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    proc = subprocess.Popen([sys.executable, *args], env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    return Child(name, proc, port, log)


def limits(result: dict[str, Any], identity: dict[str, Any] | None) -> dict[str, Any]:
    """A stage's rate against the limit Kafka sets (the identity stage) and its CPU-bound limit.

    The CPU-bound limit is 1 / the stage's CPU per record: what it moves with a core to itself.
    The lower of the two is the one a stage can reach; ``of_binding`` is its rate over that one.
    """
    rate = result.get("records_per_s")
    kafka = identity.get("records_per_s") if identity else None
    cpu = result.get("records_per_cpu_s")
    bound = [v for v in (kafka, cpu) if v]
    binding = min(bound) if bound else None
    return {
        "kafka_limit": kafka, "cpu_limit": cpu,
        "of_kafka": rate / kafka if rate and kafka else None,
        "of_cpu": rate / cpu if rate and cpu else None,
        "binding": None if binding is None else ("kafka" if binding == kafka else "cpu"),
        "of_binding": rate / binding if rate and binding else None,
    }


def turns(exposition: str) -> dict[str, float | None]:
    """A stage's turns from its metrics: mean batch, seconds processing and committing one.

    ``batch_s`` runs from a batch's fetch to its commit (the processor, producing, and the
    transaction's ``send_offsets_to_transaction`` + ``commit_transaction``, which is ``commit_s``);
    a turn's remaining time is spent waiting in ``poll`` for the next batch's first record.
    """
    from ..observability.probe import metric_total

    def mean(name: str) -> float | None:
        n = metric_total(exposition, f"{name}_count")
        return metric_total(exposition, f"{name}_sum") / n if n else None

    return {"batches": metric_total(exposition, "ppg_mi_batch_size_records_count") or None,
            "mean_batch": mean("ppg_mi_batch_size_records"), "batch_s": mean("ppg_mi_batch_processing_seconds"),
            "commit_s": mean("ppg_mi_transaction_seconds")}
