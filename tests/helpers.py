"""Test helpers: waiting with deadlines, reading topics, running services as real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from confluent_kafka import Consumer, TopicPartition

from ppg_mi.config import Settings
from ppg_mi.local.kafka import free_port
from ppg_mi.streaming.clients import reader_config


def wait_for(condition: Callable[[], object], timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll ``condition`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class TopicRecord:
    key: str
    value: bytes
    headers: dict[str, str]
    partition: int
    offset: int


def read_topic(settings: Settings, topic: str, min_count: int = 0, timeout: float = 60.0,
               idle: float = 1.5) -> list[TopicRecord]:
    """Read ``topic`` from the beginning (read_committed) until ``min_count`` records and ``idle`` s of silence."""
    consumer = Consumer({**reader_config(settings, f"reader-{time.monotonic_ns()}"), "enable.partition.eof": False})
    md = consumer.list_topics(topic, timeout=10)
    partitions = [TopicPartition(topic, p, 0) for p in md.topics[topic].partitions]
    consumer.assign(partitions)
    records: list[TopicRecord] = []
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            msgs = consumer.consume(500, 0.3)
            for m in msgs:
                if m.error():
                    continue
                records.append(TopicRecord((m.key() or b"").decode(), m.value() or b"",
                                           {k: (v or b"").decode() for k, v in (m.headers() or [])},
                                           m.partition(), m.offset()))
                last = time.monotonic()
            if len(records) >= min_count and time.monotonic() - last >= idle:
                break
    finally:
        consumer.close()
    return records


class ServiceProcess:
    """One ``ppg-mi`` role as a real OS process with its own metrics port."""

    def __init__(self, settings: Settings, *args: str, log_dir: Path, name: str, env: dict | None = None) -> None:
        self.metrics_port = free_port()
        self.name = name
        full_env = {**os.environ, **settings.as_env(), "PPG_MI_METRICS_PORT": str(self.metrics_port),
                    "PPG_MI_INSTANCE_ID": name, "PPG_MI_LOG_FORMAT": "json", **(env or {})}
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "ppg_mi", *args], env=full_env,
                                     stdout=self._log, stderr=subprocess.STDOUT)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.metrics_port}{path}"

    def get(self, path: str) -> tuple[int, str]:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(self.url(path), timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return 0, ""

    def wait_ready(self, timeout: float = 120.0) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            return self.get("/readyz")[0] == 200

        wait_for(ready, timeout, what=f"{self.name} ready")

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` matching ``labels`` on /metrics."""
        from prometheus_client.parser import text_string_to_metric_families

        _, text = self.get("/metrics")
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 15.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-5000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


# --- fault tests (#4): producing test input, pacing it, a broker of one's own -----------------
def synthetic_raw(n: int, prefix: str, samples: int = 2000, seed: int = 3) -> list[tuple[bytes, bytes]]:
    """``n`` valid raw recordings as (key, value) pairs, keyed by record id ``<prefix>-<i>``."""
    from ppg_mi.data import SyntheticConfig, generate
    from ppg_mi.streaming.codec import Recording, now_us

    data = generate(SyntheticConfig(records=n, samples=samples, seed=seed, id_prefix=prefix))
    return [(rid.encode(), Recording(rid, data.samples[i], 125.0, data.labels[i], 0, now_us()).encode())
            for i, rid in enumerate(data.record_ids)]


def produce_raw(settings: Settings, records: list[tuple[bytes | None, bytes]], topic: str | None = None,
                headers: list | None = None) -> None:
    """Send (key, value) pairs to ``topic`` (default ``topic_raw``) with the idempotent producer; wait for acks."""
    from confluent_kafka import Producer

    from ppg_mi.streaming.clients import idempotent_producer_config

    producer = Producer(idempotent_producer_config(settings))
    failed: list[str] = []
    for key, value in records:
        while True:
            try:
                producer.produce(topic or settings.topic_raw, key=key, value=value, headers=headers,
                                 on_delivery=lambda err, _m: failed.append(str(err)) if err else None)
                break
            except BufferError:
                producer.poll(0.1)  # local queue full: wait for acknowledgements
        producer.poll(0)
    assert producer.flush(120) == 0 and not failed, f"undelivered test records: {failed[:3]}"


class PacedProducer:
    """Sends (key, value) pairs to ``topic_raw`` at ``rate`` per second from a background thread.

    The pacing only spreads the input over time so that faults land mid-stream; nothing
    is asserted about time.  ``stop()`` ends the stream early (``keys`` holds what was
    sent); ``join()`` waits until every sent record is acknowledged.
    """

    def __init__(self, settings: Settings, records, rate: float) -> None:  # noqa: ANN001 - iterable of pairs
        import threading

        from confluent_kafka import Producer

        from ppg_mi.streaming.clients import idempotent_producer_config

        self.keys: list[str] = []
        self.failed: list[str] = []
        self._records = records
        self._interval = 1.0 / rate
        self._topic = settings.topic_raw
        self._stop = threading.Event()
        self._producer = Producer(idempotent_producer_config(settings))
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def sent(self) -> int:
        return len(self.keys)

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        next_send = time.monotonic()
        for key, value in self._records:
            if self._stop.is_set():
                break
            while (delay := next_send - time.monotonic()) > 0:
                self._producer.poll(delay)  # returns early when it serves a delivery report
            next_send += self._interval
            while True:
                try:
                    self._producer.produce(self._topic, key=key, value=value, on_delivery=self._delivered)
                    break
                except BufferError:
                    self._producer.poll(0.1)
            self.keys.append(key.decode())
        self._producer.flush(180)

    def _delivered(self, err: object, _msg: object) -> None:
        if err is not None:
            self.failed.append(str(err))

    def join(self, timeout: float = 200.0) -> list[str]:
        """Wait for the end of the stream; return the keys sent."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "paced producer did not finish"
        assert not self.failed, f"undelivered records: {self.failed[:3]}"
        return list(self.keys)


def endless_raw(prefix: str, samples: int = 2000, distinct: int = 50):  # noqa: ANN201 - iterator of pairs
    """Valid raw recordings with ids ``<prefix>-0``, ``<prefix>-1``... for as long as asked
    (the signals repeat every ``distinct`` records; the ids never do)."""
    import itertools

    from ppg_mi.streaming.codec import decode_recording

    base = [decode_recording(v) for _, v in synthetic_raw(distinct, prefix, samples=samples)]
    for i in itertools.count():
        rec = base[i % distinct]
        rec.record_id = f"{prefix}-{i}"
        yield rec.record_id.encode(), rec.encode()


def own_broker(tmp_path: Path, heap: str = "320m"):  # noqa: ANN201 - LocalBroker
    """A second real broker on a free port whose state lives in ``tmp_path`` (stop()/start() keep it)."""
    from ppg_mi.local.kafka import LocalBroker

    settings = Settings.from_env({}, kafka_local_heap=heap, kafka_local_port=free_port())
    broker = LocalBroker(settings, tmp_path / "own-broker", "127.0.0.1", settings.kafka_local_port)
    broker.start()
    return broker


def keys_of(settings: Settings, topic: str, expected: int, timeout: float = 90.0) -> list[str]:
    """Keys of ``topic`` read_committed, once at least ``expected`` are there (and the topic is quiet)."""
    return [r.key for r in read_topic(settings, topic, expected, timeout=timeout)]


def assert_exactly_once(settings: Settings, topic: str, ids: list[str], timeout: float = 120.0) -> None:
    """``topic`` (read_committed) holds every id of ``ids`` once and no other key."""
    from collections import Counter

    got = Counter(keys_of(settings, topic, len(ids), timeout=timeout))
    missing = set(ids) - set(got)
    doubled = {k: n for k, n in got.items() if n > 1}
    extra = set(got) - set(ids)
    assert not missing and not doubled and not extra, (
        f"{topic}: {len(missing)} missing {sorted(missing)[:5]}, {len(doubled)} doubled "
        f"{sorted(doubled.items())[:5]}, {len(extra)} unknown {sorted(extra)[:5]}")


class CommittedTail:
    """Reads ``topic`` read_committed in a background thread, noting when each partition's records arrive.

    What a downstream reader sees: a partition whose records sit behind an open transaction
    shows nothing until that transaction ends.
    """

    def __init__(self, settings: Settings, topic: str) -> None:
        import threading

        self.arrivals: list[tuple[float, int]] = []  # (monotonic time read, partition)
        self._consumer = Consumer({**reader_config(settings, f"tail-{time.monotonic_ns()}"),
                                   "enable.partition.eof": False})
        md = self._consumer.list_topics(topic, timeout=10)
        self._consumer.assign([TopicPartition(topic, p, 0) for p in md.topics[topic].partitions])
        self.partitions = len(md.topics[topic].partitions)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for m in self._consumer.consume(500, 0.1):
                if not m.error():
                    with self._lock:
                        self.arrivals.append((time.monotonic(), m.partition()))

    def partitions_since(self, since: float) -> set[int]:
        """Partitions with a record read after ``since`` (a ``time.monotonic()``)."""
        with self._lock:
            return {p for t, p in self.arrivals if t > since}

    def first_since(self, since: float) -> float | None:
        """When the first record after ``since`` was read, if any."""
        with self._lock:
            return next((t for t, _ in self.arrivals if t > since), None)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()
