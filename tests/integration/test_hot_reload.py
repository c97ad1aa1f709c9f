"""Hot reload on the real broker: `current` moves mid-stream, predictions switch version, none lost or doubled;
a bad new `current` (warm-up raising, estimator bytes not the card's) keeps the old model serving, and a
classifier started on a bad `current` waits, live and not ready, instead of crash-looping."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from ppg_mi.config import Settings
from ppg_mi.data import SyntheticConfig, generate, write_csv
from ppg_mi.model import ModelStore
from ppg_mi.model.checkpoint import CARD_FILE
from ppg_mi.signal import BandPass
from ppg_mi.streaming.codec import decode_prediction
from training.train import TrainConfig, train

from ..bad_models import add_corrupted_version, add_warm_up_failing_version
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


def _produce_all(settings: Settings, csv_path: Path) -> None:
    producer = _produce(settings, csv_path, rate=0)
    _, err = producer.communicate(timeout=120)
    assert producer.returncode == 0, err


def test_a_bad_new_model_keeps_the_classifier_serving_the_old_one_without_losing_a_record(
    broker_settings: Settings, trained_models_dir: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    shutil.copytree(trained_models_dir, models)
    store = ModelStore(models)
    first = store.current_version()
    assert first is not None
    # two bad versions: one passes every load check but its warm-up raises LinAlgError (not a
    # ModelError: this used to end the process), one whose estimator bytes changed after its card
    warm_up_fails = add_warm_up_failing_version(store, first, "bad-warm-up")
    corrupted = add_corrupted_version(store, first, "bad-digest")

    settings = broker_settings.replace(models_dir=str(models), batch_max_records=8)
    waves = [generate(SyntheticConfig(records=WAVE, seed=60 + i, id_prefix=f"bad{i}")) for i in range(3)]
    for i, wave in enumerate(waves):
        write_csv(wave, tmp_path / f"bad{i}.csv")

    filter_ = ServiceProcess(settings, "filter", log_dir=tmp_path, name="filter-bad")
    classifier = ServiceProcess(settings, "classify", log_dir=tmp_path, name="classifier-bad")
    restarted = None
    try:
        for s in (filter_, classifier):
            s.wait_ready()

        def still_running(service: ServiceProcess) -> bool:
            assert service.proc.poll() is None, f"{service.name} exited ({service.proc.returncode}):\n{service.log()}"
            return True

        def rejected(service: ServiceProcess, n: int) -> bool:
            return still_running(service) and service.metric("ppg_mi_model_reloads_total", outcome="rejected") >= n

        # wave 0 streams while `current` moves to each bad version in turn
        producer = _produce(settings, tmp_path / "bad0.csv", rate=10)
        wait_for(lambda: classifier.metric("ppg_mi_predictions_total") >= 8, 120, what="the first predictions")
        store.set_current(warm_up_fails)
        wait_for(lambda: rejected(classifier, 1), 120, what="the warm-up-failing version rejected")
        store.set_current(corrupted)
        wait_for(lambda: rejected(classifier, 2), 120, what="the corrupted version rejected")
        _, err = producer.communicate(timeout=120)
        assert producer.returncode == 0, err
        status, body = classifier.get("/readyz")
        assert status == 200 and "bad-digest" in body and "not the one trained" in body, body
        assert classifier.metric("ppg_mi_model_current_rejected") == 1
        # wave 1 after both rejections: still predicted, by the first version
        _produce_all(settings, tmp_path / "bad1.csv")
        wait_for(lambda: still_running(classifier) and classifier.metric("ppg_mi_predictions_total") >= 2 * WAVE,
                 180, what="waves 0 and 1 predicted")
        assert still_running(classifier)
        assert classifier.terminate() == 0

        # a restart on the bad `current` (previous = the other bad one): not a crash loop but a wait,
        # live and not ready, saying why, until `current` names a version that loads
        restarted = ServiceProcess(settings, "classify", log_dir=tmp_path, name="classifier-bad-restart")
        wait_for(lambda: rejected(restarted, 2), 120, what="both bad versions rejected at start")
        status, body = restarted.get("/readyz")
        assert status == 503 and "no model loaded" in body and "bad-digest" in body, body
        assert restarted.get("/healthz")[0] == 200 and still_running(restarted)
        store.set_current(first)
        restarted.wait_ready()
        _produce_all(settings, tmp_path / "bad2.csv")
        predictions = read_topic(settings, settings.topic_predictions, 3 * WAVE, timeout=180)
        dead = read_topic(settings, settings.topic_dlq, 0, timeout=5)
        assert still_running(restarted)
    finally:
        for s in (filter_, classifier, restarted):
            if s is not None:
                if s.proc.poll() is None:
                    s.terminate()
                s.close()

    expected = Counter(rid for wave in waves for rid in wave.record_ids)
    assert Counter(p.key for p in predictions) == expected, "every record predicted exactly once"
    assert dead == []
    versions = {decode_prediction(p.value).model_version for p in predictions}
    first_card_version = json.loads((models / first / CARD_FILE).read_text())["version"]
    assert versions == {first_card_version}, "only the good version ever predicted"
