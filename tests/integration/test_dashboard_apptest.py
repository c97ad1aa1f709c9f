"""The dashboard page (Streamlit AppTest) fed by its real reader thread from the real broker."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import streamlit as st
from confluent_kafka import Producer
from streamlit.testing.v1 import AppTest

from ppg_mi.config import Settings
from ppg_mi.dashboard import APP_SCRIPT
from ppg_mi.dashboard import runtime as dashboard_runtime
from ppg_mi.local.kafka import LocalBroker, free_port
from ppg_mi.streaming.clients import idempotent_producer_config
from ppg_mi.streaming.codec import Prediction, Recording, now_us
from ppg_mi.streaming.dlq import H_REASON, H_STAGE
from ppg_mi.streaming.topics import ensure_topics

from ..helpers import wait_for

pytestmark = pytest.mark.integration


OPERATING_POINT = dict(threshold=0.25, target_sensitivity=0.95, validation_sensitivity=0.96,
                       validation_specificity=0.85, validation_brier=0.1)


def make_predictions(n: int, seed: int = 0, labelled: bool = True, shards: int = 2,
                     prefix: str = "dash") -> list[Prediction]:
    rng = np.random.default_rng(seed)
    out = []
    base = now_us()
    for i in range(n):
        true = ["Normal", "MI"][int(rng.integers(0, 2))]
        predicted = true if rng.random() < 0.8 else ("MI" if true == "Normal" else "Normal")
        score = float(rng.uniform(0.5, 1.0) if predicted == "MI" else rng.uniform(0.0, 0.5))
        t = base - (n - i) * 10_000
        # test-v1 has an operating point (issue 19), test-v2 decides by argmax
        point = OPERATING_POINT if i % 3 else {}
        out.append(Prediction(f"{prefix}-{i}", predicted, {"Normal": 1 - score, "MI": score},
                              "test-v1" if i % 3 else "test-v2", true if labelled else None, i % shards,
                              t - 40_000, t - 20_000, t, **point))
    return out


def produce(settings: Settings, predictions: list[Prediction] = (), recordings: list[tuple[str, Recording]] = (),
            dead_letters: list[tuple[str, str]] = ()) -> None:
    producer = Producer(idempotent_producer_config(settings))
    for p in predictions:
        producer.produce(settings.topic_predictions, key=p.record_id.encode(), value=p.encode())
    for topic, rec in recordings:
        producer.produce(topic, key=rec.record_id.encode(), value=rec.encode())
    for stage, reason in dead_letters:
        producer.produce(settings.topic_dlq, key=b"bad", value=b"\x00garbage",
                         headers=[(H_STAGE, stage.encode()), (H_REASON, reason.encode())])
    assert producer.flush(30) == 0


def confusion_counts(predictions: list[Prediction]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for p in predictions:
        key = (f"true {p.true_label}", f"predicted {p.predicted_label}")
        out[key] = out.get(key, 0) + 1
    return out


@pytest.fixture
def page_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[callable]:
    """Point the page script at ``settings`` (it reads PPG_MI_* like the real process)."""

    def use(settings: Settings) -> AppTest:
        for name, value in settings.as_env().items():
            monkeypatch.setenv(name, value)
        return AppTest.from_file(str(APP_SCRIPT), default_timeout=60)

    yield use
    dashboard_runtime.stop_all()
    st.cache_resource.clear()


def metric(at: AppTest, label: str) -> str | None:
    values = [m.value for m in at.metric if m.label == label]
    return values[0] if values else None


def run_until(at: AppTest, condition: callable, what: str, timeout: float = 60.0) -> AppTest:
    def check() -> bool:
        at.run()
        assert not at.exception, at.exception
        return bool(condition(at))

    wait_for(check, timeout, interval=0.5, what=what)
    return at


def test_page_shows_what_the_broker_holds_counting_each_recording_once(broker_settings: Settings,
                                                                      page_env) -> None:
    settings = broker_settings
    predictions = make_predictions(120)
    wave_ids = [predictions[-1].record_id, predictions[-2].record_id]
    recordings = []
    for rid in wave_ids:
        samples = np.sin(np.linspace(0, 20, 500)).astype(np.float32)
        recordings.append((settings.topic_raw, Recording(rid, samples * 100 + 500, 125.0, shard=0, produced_us=1)))
        recordings.append((settings.topic_filtered, Recording(rid, samples, 125.0, shard=0, produced_us=1,
                                                              filtered_us=2)))
    # the whole stream twice: a producer shard run again and replayed through the pipeline
    produce(settings, predictions, recordings, [("filter", "truncated"), ("classifier", "bad_label")])
    produce(settings, predictions)

    at = page_env(settings)
    run_until(at, lambda a: metric(a, "Recordings") == "120" and metric(a, "Dead letters (DLQ)") == "2",
              "the page to show 120 recordings and 2 dead letters")
    assert dashboard_runtime.shared(settings).store.duplicates == 120
    assert not at.exception
    assert any("Research demonstration, not a medical device" in w.value for w in at.warning)
    assert any("connected to" in s.value for s in at.success)

    mi = sum(p.predicted_label == "MI" for p in predictions)
    assert metric(at, "MI predicted") == str(mi)
    counts = at.table[0].value
    assert {(r, c): int(counts.loc[r, c]) for r in counts.index for c in counts.columns} == {
        **{(r, c): 0 for r in ("true Normal", "true MI") for c in ("predicted Normal", "predicted MI")},
        **confusion_counts(predictions)}
    accuracy = sum(p.true_label == p.predicted_label for p in predictions) / len(predictions)
    assert metric(at, "Accuracy (running)") == f"{accuracy:.3f}"
    for label in ("Macro-F1 (running)", "MI sensitivity (running)", "Specificity (running)"):
        assert metric(at, label) not in (None, "–")

    # each model version's operating point, from the predictions' fields (the page reads no model store)
    versions = next(d.value for d in at.dataframe if "MI threshold" in d.value.columns).set_index("model version")
    assert versions.loc["test-v1", "MI threshold"] == pytest.approx(0.25)
    assert versions.loc["test-v1", "target sensitivity"] == pytest.approx(0.95)
    assert versions.loc["test-v1", "validation specificity"] == pytest.approx(0.85)
    assert versions.loc["test-v1", "validation Brier"] == pytest.approx(0.1)
    assert np.isnan(versions.loc["test-v2", "MI threshold"])
    assert any("Operating point" in c.value for c in at.caption)

    # the newest record is selected by default and its raw and filtered waveforms are cached
    assert at.selectbox(key="record").value == predictions[-1].record_id
    assert not any("Not in memory" in c.value for c in at.caption)
    assert any(predictions[-1].record_id in md.value and "predicted" in md.value for md in at.markdown)
    at.selectbox(key="record").set_value(predictions[0].record_id).run()
    assert sum("Not in memory" in c.value for c in at.caption) == 2   # samples of this one were never sent

    # filters: one producer shard, then one model version
    at.multiselect(key="f_shards").set_value([1]).run()
    assert metric(at, "Recordings") == str(sum(p.shard == 1 for p in predictions))
    at.multiselect(key="f_shards").set_value([]).run()
    at.multiselect(key="f_versions").set_value(["test-v2"]).run()
    assert metric(at, "Recordings") == str(sum(p.model_version == "test-v2" for p in predictions))


def test_unlabelled_stream_hides_label_metrics_and_still_shows_predictions(broker_settings: Settings,
                                                                          page_env) -> None:
    predictions = make_predictions(40, seed=3, labelled=False)
    produce(broker_settings, predictions)
    at = page_env(broker_settings)
    run_until(at, lambda a: metric(a, "Recordings") == "40", "40 unlabelled predictions on the page")
    assert metric(at, "MI predicted") == str(sum(p.predicted_label == "MI" for p in predictions))
    assert metric(at, "Accuracy (running)") is None and not at.table
    assert any("no true label" in i.value for i in at.info)
    assert at.selectbox(key="record").value == predictions[-1].record_id


def test_broker_outage_shows_disconnected_and_the_page_reconnects_by_itself(
    kafka_bootstrap: str, tmp_path: Path, page_env
) -> None:
    port = free_port()
    settings = Settings.from_env({}, kafka_bootstrap_servers=f"127.0.0.1:{port}", topic_partitions=1,
                                 group_dashboard="dash-outage", metrics_port=0, kafka_local_heap="256m",
                                 kafka_local_port=port, cache_dir=Settings.from_env({}).cache_dir)
    at = page_env(settings)
    run_until(at, lambda a: any("disconnected" in e.value for e in a.error), "'disconnected' while no broker")

    broker = LocalBroker(settings, tmp_path / "kafka", "127.0.0.1", port)
    broker.start()
    try:
        ensure_topics(settings)
        first = make_predictions(10, seed=1, prefix="before")
        produce(settings, first)
        run_until(at, lambda a: metric(a, "Recordings") == "10" and any("connected to" in s.value for s in a.success),
                  "reconnected and showing the first 10 predictions")

        broker.stop()
        run_until(at, lambda a: any("disconnected" in e.value for e in a.error), "'disconnected' after the outage")
        assert metric(at, "Recordings") == "10", "what was read stays on the page during the outage"

        broker.start()
        produce(settings, make_predictions(5, seed=2, prefix="after"))
        run_until(at, lambda a: metric(a, "Recordings") == "15" and any("connected to" in s.value for s in a.success),
                  "reconnected by itself and reading new predictions", timeout=90)
    finally:
        broker.destroy()
