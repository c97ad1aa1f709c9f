"""Hot reload on the real broker: `current` moves mid-stream, predictions switch version, none lost or doubled."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from ppg_mi.config import Settings
from ppg_mi.data import SyntheticConfig, generate, write_csv
from ppg_mi.model import ModelStore
from ppg_mi.signal import BandPass
from ppg_mi.streaming.codec import decode_prediction
from training.train import TrainConfig, train

from ..helpers import ServiceProcess, read_topic, wait_for

WAVE = 40


def _produce(settings: Settings, csv_path: Path, rate: float) -> subprocess.Popen:
    env = {**os.environ, **settings.as_env(), "PPG_MI_METRICS_PORT": "0"}
    return subprocess.Popen([sys.executable, "-m", "ppg_mi", "produce", "--data", str(csv_path), "--rate", str(rate)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_classifier_switches_model_between_batches_without_losing_a_record(
    broker_settings: Settings, trained_models_dir: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    shutil.copytree(trained_models_dir, models)
    store = ModelStore(models)
    first = store.current_version()
    # a genuinely different second version, trained into the same store but not made current
    data = generate(SyntheticConfig(records=60, samples=broker_settings.samples_per_record, seed=8, id_prefix="v2"))
    _, card = train(data, BandPass.from_settings(broker_settings), TrainConfig(kind="minirocket", folds=0, seed=1),
                    models, make_current=False)
    second = card["version"]
    assert first and second != first and store.current_version() == first

    settings = broker_settings.replace(models_dir=str(models), batch_max_records=8)
    waves = [generate(SyntheticConfig(records=WAVE, seed=30 + i, id_prefix=f"wave{i}")) for i in range(2)]
    for i, wave in enumerate(waves):
        write_csv(wave, tmp_path / f"wave{i}.csv")

    services = [ServiceProcess(settings, "filter", log_dir=tmp_path, name="filter-hr"),
                ServiceProcess(settings, "classify", log_dir=tmp_path, name="classifier-hr")]
    try:
        for s in services:
            s.wait_ready()
        classifier = services[1]
        # wave 0 streams at a steady pace; `current` moves once part of it is predicted
        producer = _produce(settings, tmp_path / "wave0.csv", rate=10)
        wait_for(lambda: classifier.metric("ppg_mi_predictions_total") >= 8, 120,
                 what="the first predictions of wave 0")
        store.set_current(second)
        wait_for(lambda: classifier.metric("ppg_mi_model_reloads_total", outcome="loaded") >= 1, 120,
                 what="the classifier to switch to the second version")
        _, err = producer.communicate(timeout=120)
        assert producer.returncode == 0, err
        # wave 1 is sent only after the switch: all of it must be predicted by the second version
        producer = _produce(settings, tmp_path / "wave1.csv", rate=0)
        _, err = producer.communicate(timeout=120)
        assert producer.returncode == 0, err
        predictions = read_topic(settings, settings.topic_predictions, 2 * WAVE, timeout=180)
        dead = read_topic(settings, settings.topic_dlq, 0, timeout=5)
    finally:
        for s in services:
            s.terminate()
            s.close()

    expected = Counter(rid for wave in waves for rid in wave.record_ids)
    assert Counter(p.key for p in predictions) == expected, "every record predicted exactly once"
    assert dead == []
    decoded = sorted((decode_prediction(p.value) for p in predictions), key=lambda d: d.predicted_us)
    versions = [d.model_version for d in decoded]
    assert set(versions) == {first, second}
    # one switch, between batches: once the second version appears the first never returns
    switch = versions.index(second)
    assert versions[:switch] == [first] * switch and versions[switch:] == [second] * (len(versions) - switch)
    assert all(d.model_version == second for d in decoded if d.record_id.startswith("wave1-"))
    assert any(d.model_version == first for d in decoded if d.record_id.startswith("wave0-"))
