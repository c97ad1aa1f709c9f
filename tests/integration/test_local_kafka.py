"""`ppg-mi kafka up | status | down | tool` as a user runs them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from ppg_mi.config import Settings
from ppg_mi.local.kafka import LocalBroker, free_port


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ppg_mi", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=180)


def test_kafka_up_status_tool_down_on_a_free_port() -> None:
    port = free_port()
    env = {"PPG_MI_KAFKA_LOCAL_PORT": str(port), "PPG_MI_KAFKA_LOCAL_HEAP": "256m",
           "PPG_MI_KAFKA_BOOTSTRAP_SERVERS": ""}
    broker = LocalBroker.for_settings(Settings.from_env(env))
    try:
        up = _cli(env, "kafka", "up")
        assert up.returncode == 0, up.stderr
        assert f"is up at 127.0.0.1:{port}" in up.stdout
        assert broker.log_file.is_file()

        status = _cli(env, "kafka", "status")
        assert status.returncode == 0 and "running" in status.stdout

        again = _cli(env, "kafka", "up")  # idempotent: reuses the running broker
        assert again.returncode == 0

        topics = _cli(env, "topics", "ensure")
        assert topics.returncode == 0 and "ppg.raw: created" in topics.stdout

        listed = _cli(env, "kafka", "tool", "org.apache.kafka.tools.TopicCommand", "--list",
                      "--bootstrap-server", f"127.0.0.1:{port}")
        assert listed.returncode == 0, listed.stderr
        assert {"ppg.raw", "ppg.filtered", "ppg.predictions", "ppg.dlq"} <= set(listed.stdout.split())

        down = _cli(env, "kafka", "down")
        assert down.returncode == 0 and "stopped" in down.stdout
        assert _cli(env, "kafka", "status").returncode == 1

        # restart on the same formatted storage keeps the topics
        assert _cli(env, "kafka", "up").returncode == 0
        assert "ppg.raw: exists" in _cli(env, "topics", "ensure").stdout
    finally:
        broker.stop()
        shutil.rmtree(broker.state_dir, ignore_errors=True)


def test_a_configured_broker_means_none_is_started() -> None:
    env = {"PPG_MI_KAFKA_BOOTSTRAP_SERVERS": "broker.example:9092"}
    result = _cli(env, "kafka", "up")
    assert result.returncode == 0
    assert "none is started" in result.stderr


def test_help_teaches_the_commands() -> None:
    result = _cli({}, "--help")
    assert result.returncode == 0
    for command in ("kafka", "topics", "data", "produce", "filter", "classify", "train", "evaluate",
                    "dashboard", "demo", "config"):
        assert command in result.stdout
    assert "PPG_MI_" in result.stdout
