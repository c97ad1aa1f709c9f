"""Kafka's own performance tools at the pipeline's record size: the broker's limits here."""

from __future__ import annotations

import re
import subprocess
from typing import Any

from ..config import Settings
from ..local.kafka import kafka_tool

PRODUCER_MAIN = "org.apache.kafka.tools.ProducerPerformance"
CONSUMER_MAIN = "org.apache.kafka.tools.ConsumerPerformance"

_SUMMARY = re.compile(r"(\d+) (?:steady state )?records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency")


def parse_producer_output(text: str) -> dict[str, float]:
    """The last summary line of ProducerPerformance: the steady-state one when warm-up records were set."""
    matches = _SUMMARY.findall(text)
    if not matches:
        raise ValueError(f"no summary line in ProducerPerformance output:\n{text[-2000:]}")
    sent, per_s, mb_s, avg_ms = matches[-1]
    return {"records": int(sent), "records_per_s": float(per_s), "mb_per_s": float(mb_s),
            "avg_latency_ms": float(avg_ms)}


def parse_consumer_output(text: str) -> dict[str, float]:
    """ConsumerPerformance's CSV header and summary row; fetch.* excludes the group join."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if line.startswith("start.time") and i + 1 < len(lines):
            header = [h.strip() for h in line.split(",")]
            row = [v.strip() for v in lines[i + 1].split(",")]
            values = dict(zip(header, row))
            return {
                "records": int(float(values["data.consumed.in.nMsg"])),
                "records_per_s": float(values["fetch.nMsg.sec"]),
                "records_per_s_with_join": float(values["nMsg.sec"]),
                "mb_per_s": float(values["fetch.MB.sec"]),
                "rebalance_ms": float(values["rebalance.time.ms"]),
            }
    raise ValueError(f"no result table in ConsumerPerformance output:\n{text[-2000:]}")


def _run(cmd: list[str], timeout: float) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[-12:])} exited with {result.returncode}:\n"
                           f"{result.stdout[-1500:]}{result.stderr[-1500:]}")
    return result.stdout + result.stderr


def producer_limit(settings: Settings, topic: str, records: int, record_bytes: int,
                   timeout: float = 300) -> dict[str, Any]:
    """ProducerPerformance with the pipeline producer's settings (idempotent, acks=all, its compression and linger)."""
    cmd = kafka_tool(settings, PRODUCER_MAIN, "--topic", topic, "--num-records", str(records),
                     "--record-size", str(record_bytes), "--throughput", "-1",
                     # the JVM's and the connection's start-up is not the broker's limit
                     "--warmup-records", str(records // 5),
                     "--command-property", f"bootstrap.servers={settings.bootstrap_servers}", "acks=all",
                     "enable.idempotence=true", f"compression.type={settings.compression}", f"linger.ms={settings.producer_linger_ms}",
                     heap="512m")
    out = parse_producer_output(_run(cmd, timeout))
    out["note"] = (f"{record_bytes}-byte random records, acks=all, idempotent, compression {settings.compression}, "
                   f"linger {settings.producer_linger_ms} ms; "
                   f"steady state after {records // 5} warm-up records")
    return out


def consumer_limit(settings: Settings, topic: str, records: int, group: str, timeout: float = 300) -> dict[str, Any]:
    """ConsumerPerformance reading ``records`` back (read_committed, like the stages)."""
    cmd = kafka_tool(settings, CONSUMER_MAIN, "--bootstrap-server", settings.bootstrap_servers,
                     "--topic", topic, "--num-records", str(records), "--group", group,
                     "--timeout", "60000", "--command-property", "isolation.level=read_committed",
                     heap="512m")
    out = parse_consumer_output(_run(cmd, timeout))
    out["note"] = "read_committed; fetch rate (group join excluded)"
    return out
