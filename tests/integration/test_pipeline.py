"""The spine end to end on the real broker: producer → filter → classifier → predictions."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

from ppg_mi.config import Settings
from ppg_mi.data import SyntheticConfig, generate, write_csv
from ppg_mi.streaming.codec import decode_prediction, decode_recording
from ppg_mi.streaming.topics import ensure_topics

from ..helpers import ServiceProcess, read_topic


def _cli(settings: Settings, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, **settings.as_env(), "PPG_MI_METRICS_PORT": "0"}
    return subprocess.run([sys.executable, "-m", "ppg_mi", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_topics_ensure_is_idempotent(broker_settings: Settings) -> None:
    again = ensure_topics(broker_settings)
    assert [r.created for r in again] == [False] * 4
    assert {r.partitions for r in again} == {3}


def test_pipeline_predicts_every_recording_exactly_once(
    served_settings: Settings, tmp_path: Path
) -> None:
    settings = served_settings
    dataset = generate(SyntheticConfig(records=60, seed=11, id_prefix="spine"))
    csv_path = tmp_path / "spine.csv"
    write_csv(dataset, csv_path)

    services = [ServiceProcess(settings, "filter", log_dir=tmp_path, name="filter-1"),
                ServiceProcess(settings, "classify", log_dir=tmp_path, name="classifier-1")]
    try:
        for s in services:
            s.wait_ready()
        # two shards of one file, as two producer Jobs would send them
        for shard in ("0/2", "1/2"):
            result = _cli(settings, "produce", "--data", str(csv_path), "--shard", shard)
            assert result.returncode == 0, result.stderr
            assert f"shard {shard}: 30/30 delivered, 0 failed" in result.stderr

        raw = read_topic(settings, settings.topic_raw, 60)
        predictions = read_topic(settings, settings.topic_predictions, 60, timeout=120)
    finally:
        for s in services:
            s.terminate()
            s.close()

    raw_ids = [r.key for r in raw]
    assert sorted(raw_ids) == sorted(f"spine-{i}" for i in range(60))
    assert {decode_recording(r.value).shard for r in raw} == {0, 1}

    counts = Counter(p.key for p in predictions)
    assert counts == Counter(raw_ids), "every recording predicted exactly once, keyed by its id"
    decoded = [decode_prediction(p.value) for p in predictions]
    assert all(d.record_id == p.key for d, p in zip(decoded, predictions))
    assert all(d.model_version for d in decoded)
    assert all(abs(sum(d.scores.values()) - 1) < 1e-4 for d in decoded)
    assert all(d.produced_us <= d.filtered_us <= d.predicted_us for d in decoded)
    truth = dict(zip(dataset.record_ids, dataset.labels))
    assert all(d.true_label == truth[d.record_id] for d in decoded)
    accuracy = sum(d.true_label == d.predicted_label for d in decoded) / len(decoded)
    assert accuracy > 0.7, f"the small model should beat chance on easy synthetic data, got {accuracy:.2f}"


def test_filter_sends_undecodable_input_to_the_dlq(broker_settings: Settings, tmp_path: Path) -> None:
    from confluent_kafka import Producer

    from ppg_mi.streaming.clients import idempotent_producer_config

    producer = Producer(idempotent_producer_config(broker_settings))
    producer.produce(broker_settings.topic_raw, key=b"garbage-1", value=b"\x00\x01not a recording")
    producer.flush(10)
    service = ServiceProcess(broker_settings, "filter", log_dir=tmp_path, name="filter-dlq")
    try:
        dead = read_topic(broker_settings, broker_settings.topic_dlq, 1, timeout=90)
        assert service.proc.poll() is None, "a bad message must not stop the service"
    finally:
        service.terminate()
        service.close()
    assert [d.key for d in dead] == ["garbage-1"]
    assert dead[0].headers["ppg-mi.stage"] == "filter"
    assert dead[0].headers["ppg-mi.reason"] == "unknown_schema"
    assert dead[0].headers["ppg-mi.original.topic"] == broker_settings.topic_raw
    assert dead[0].value == b"\x00\x01not a recording"


def test_produce_reports_a_bad_shard_clearly(broker_settings: Settings) -> None:
    result = _cli(broker_settings, "produce", "--synthetic", "3", "--shard", "3/2")
    assert result.returncode != 0
    assert "shard 3/2" in result.stderr and "Traceback" not in result.stderr


def test_producer_fails_non_zero_when_no_broker_answers(tmp_path: Path) -> None:
    from ppg_mi.local.kafka import free_port

    settings = Settings.from_env({}, kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")
    import os

    env = {**os.environ, **settings.as_env(), "PPG_MI_METRICS_PORT": "0"}
    # message.timeout bounds how long the producer retries an unreachable broker
    env["PPG_MI_PRODUCER_DELIVERY_TIMEOUT_MS"] = "3000"
    result = subprocess.run([sys.executable, "-m", "ppg_mi", "produce", "--synthetic", "2"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "0/2 delivered" in result.stderr
