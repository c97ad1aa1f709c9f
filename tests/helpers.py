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
