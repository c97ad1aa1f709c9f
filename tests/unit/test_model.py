"""The model component: checkpoints and cards, the store, estimators, determinism, evaluate, compare."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ppg_mi.data import SyntheticConfig, generate, write_csv
from ppg_mi.model import ModelCardMismatch, ModelDigestMismatch, ModelError, ModelStore, load_checkpoint
from ppg_mi.model.checkpoint import CARD_FILE, DIGEST_FIELD, ESTIMATOR_FILE
from ppg_mi.model.estimators import (ChannelwiseRocket, Derivatives, Downsample, ScoredRidgeClassifierCV,
                                     build_estimator, resolve_kind)
from ppg_mi.signal import BandPass, preprocess_batch
from training.train import TrainConfig, train

from ..bad_models import add_corrupted_version, add_unpicklable_version, add_unreadable_card_version

SAMPLES = 256  # short recordings: these tests are about the checkpoint, not the model's accuracy
BAND = BandPass()
KIND = "minirocket"


def _data(seed: int = 3, records: int = 40):
    return generate(SyntheticConfig(records=records, samples=SAMPLES, difficulty=0.2, seed=seed, id_prefix="unit"))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("store")
    _, card = train(_data(), BAND, TrainConfig(kind=KIND, folds=2, seed=0), root)
    return root, card


def _copy_checkpoint(root: Path, version: str, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(root / version, tmp_path / version))


def test_train_writes_a_checkpoint_directory_and_moves_current(store: tuple[Path, dict]) -> None:
    root, card = store
    models = ModelStore(root)
    assert models.current_version() == card["version"]
    assert models.versions() == [card["version"]]
    path = models.current_path()
    # the estimator and its card, nothing else: no loose pickled label encoder
    assert sorted(p.name for p in path.iterdir()) == sorted([ESTIMATOR_FILE, CARD_FILE])
    saved = json.loads((path / CARD_FILE).read_text())
    assert saved["classes"] == ["Normal", "MI"]
    assert saved["preprocessing"] == BAND.as_dict()
    assert saved["preprocessing"]["sampling_rate_hz"] == 125.0
    assert saved["samples_per_record"] == SAMPLES
    assert len(saved["training_data_sha256"]) == 64
    assert {"aeon", "scikit-learn", "numpy", "python"} <= set(saved["libraries"])
    assert saved["params"]["downsample"]["factor"] == 4
    assert saved["params"]["classifier"]["class"].endswith("MiniRocketClassifier")
    assert set(saved["metrics"]["held_out"]) >= {"accuracy", "macro_f1", "sensitivity_mi", "specificity", "roc_auc"}
    assert saved["metrics"]["cross_validation"]["folds"] == 2
    assert saved["created_at"] and saved["version"].startswith(KIND + "-")


def test_round_trip_load_predicts_like_the_trained_model(store: tuple[Path, dict]) -> None:
    root, card = store
    checkpoint = load_checkpoint(ModelStore(root).current_path(), BAND, SAMPLES)
    assert checkpoint.version == card["version"]
    held_out = _data(seed=99, records=20)
    x = preprocess_batch(held_out.samples, BAND)
    proba = checkpoint.predict_proba(x)
    assert proba.shape == (20, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert 0.0 < proba.min() and proba.max() < 1.0, "scores, not one-hot votes"
    predicted = checkpoint.predict(x)
    assert list(predicted) == [checkpoint.classes[i] for i in proba.argmax(axis=1)]
    accuracy = np.mean(predicted == np.array(held_out.labels, dtype=object))
    assert accuracy >= 0.8, f"easy synthetic data should be learnt, got {accuracy:.2f}"
    # a second load of the same directory predicts exactly the same
    np.testing.assert_array_equal(load_checkpoint(checkpoint.path).predict_proba(x), proba)


def test_loading_refuses_a_different_preprocessing_with_the_reason(store: tuple[Path, dict]) -> None:
    root, _ = store
    other = BandPass(sampling_rate_hz=125.0, low_hz=0.5, high_hz=10.0, order=4)
    with pytest.raises(ModelCardMismatch, match=r"preprocessing .*'high_hz': 8\.0.* at training, .*'high_hz': 10\.0"):
        load_checkpoint(ModelStore(root).current_path(), other, SAMPLES)
    with pytest.raises(ModelCardMismatch, match=f"{SAMPLES} samples per record at training, 2000 configured now"):
        load_checkpoint(ModelStore(root).current_path(), BAND, 2000)


def test_loading_refuses_other_library_versions_and_names_them(store: tuple[Path, dict], tmp_path: Path) -> None:
    root, card = store
    path = _copy_checkpoint(root, card["version"], tmp_path)
    saved = json.loads((path / CARD_FILE).read_text())
    saved["libraries"]["aeon"] = "0.11.1"
    saved["libraries"]["scikit-learn"] = "1.2.0"
    (path / CARD_FILE).write_text(json.dumps(saved))
    with pytest.raises(ModelCardMismatch) as exc:
        load_checkpoint(path, BAND, SAMPLES)
    message = str(exc.value)
    assert "aeon 0.11.1 at training" in message and "scikit-learn 1.2.0 at training" in message


def test_loading_refuses_a_card_whose_classes_disagree_with_the_estimator(store: tuple[Path, dict],
                                                                         tmp_path: Path) -> None:
    root, card = store
    path = _copy_checkpoint(root, card["version"], tmp_path)
    saved = json.loads((path / CARD_FILE).read_text())
    saved["classes"] = ["Normal", "AF"]
    (path / CARD_FILE).write_text(json.dumps(saved))
    with pytest.raises(ModelCardMismatch, match="estimator predicts classes"):
        load_checkpoint(path, BAND, SAMPLES)


def test_a_directory_without_a_card_is_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model-card.json is missing"):
        load_checkpoint(tmp_path)
    with pytest.raises(ModelError, match="no model in"):
        ModelStore(tmp_path).current_path()


def test_the_card_records_the_sha256_of_the_estimator_file_it_was_written_for(store: tuple[Path, dict]) -> None:
    root, card = store
    path = ModelStore(root).current_path()
    saved = json.loads((path / CARD_FILE).read_text())
    digest = hashlib.sha256((path / ESTIMATOR_FILE).read_bytes()).hexdigest()
    assert saved[DIGEST_FIELD] == digest == card[DIGEST_FIELD]


def test_loading_refuses_an_estimator_whose_bytes_changed_and_names_both_digests(store: tuple[Path, dict],
                                                                                 tmp_path: Path) -> None:
    root, card = store
    models = ModelStore(tmp_path / "models")
    shutil.copytree(root, models.root)
    bad = add_corrupted_version(models, card["version"], "corrupted")
    actual = hashlib.sha256((models.root / bad / ESTIMATOR_FILE).read_bytes()).hexdigest()
    with pytest.raises(ModelDigestMismatch) as exc:
        load_checkpoint(models.root / bad, BAND, SAMPLES)
    assert actual in str(exc.value) and card[DIGEST_FIELD] in str(exc.value)
    # a whole other (valid) estimator in its place is refused the same way: the bytes are checked, not parsed
    other, _ = train(_data(seed=5), BAND, TrainConfig(kind=KIND, folds=0, seed=1), tmp_path / "other")
    swapped = _copy_checkpoint(root, card["version"], tmp_path / "swapped")
    shutil.copyfile(other / ESTIMATOR_FILE, swapped / ESTIMATOR_FILE)
    with pytest.raises(ModelDigestMismatch, match="not the one trained"):
        load_checkpoint(swapped, BAND, SAMPLES)


def test_a_card_without_a_digest_is_loaded_with_a_warning(store: tuple[Path, dict], tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    # a checkpoint written before digests were recorded: its bytes cannot be checked, so it loads and says so
    root, card = store
    path = _copy_checkpoint(root, card["version"], tmp_path)
    saved = json.loads((path / CARD_FILE).read_text())
    del saved[DIGEST_FIELD]
    (path / CARD_FILE).write_text(json.dumps(saved))
    with caplog.at_level(logging.WARNING, logger="ppg_mi.model.checkpoint"):
        checkpoint = load_checkpoint(path, BAND, SAMPLES)
    assert checkpoint.version == card["version"]
    assert any("no estimator digest" in r.getMessage() for r in caplog.records)


def test_an_unpicklable_estimator_and_malformed_cards_are_model_errors(store: tuple[Path, dict],
                                                                     tmp_path: Path) -> None:
    root, card = store
    models = ModelStore(tmp_path / "models")
    shutil.copytree(root, models.root)
    with pytest.raises(ModelError, match="cannot load the estimator"):
        load_checkpoint(models.root / add_unpicklable_version(models, card["version"], "garbage"), BAND, SAMPLES)
    with pytest.raises(ModelError, match="unreadable model card"):
        load_checkpoint(models.root / add_unreadable_card_version(models, card["version"], "nojson"), BAND, SAMPLES)
    for i, (text, reason) in enumerate([("[1, 2]", "not an object"), ('{"classes": ["Normal", "MI"]}', "no version"),
                                        (b"\xff\xfe{", "unreadable")]):
        path = _copy_checkpoint(root, card["version"], tmp_path / f"card{i}")
        (path / CARD_FILE).write_bytes(text if isinstance(text, bytes) else text.encode())
        with pytest.raises(ModelError, match=reason):
            load_checkpoint(path, BAND, SAMPLES)


def test_moving_current_records_the_previous_version(store: tuple[Path, dict], tmp_path: Path) -> None:
    root, card = store
    models = ModelStore(tmp_path / "models")
    shutil.copytree(root, models.root)
    assert models.previous_version() is None
    other = add_corrupted_version(models, card["version"], "other")
    models.set_current(other)
    assert (models.current_version(), models.previous_version()) == (other, card["version"])
    models.set_current(other)   # setting the same version again keeps what was before it
    assert models.previous_version() == card["version"]


def test_same_data_and_seed_give_the_same_card_metrics(store: tuple[Path, dict], tmp_path: Path) -> None:
    _, first = store
    _, again = train(_data(), BAND, TrainConfig(kind=KIND, folds=2, seed=0), tmp_path / "again")
    assert again["metrics"] == first["metrics"]
    assert again["training_data_sha256"] == first["training_data_sha256"]
    assert again["params"] == first["params"]
    # and the fingerprint does tell other data apart
    _, other = train(_data(seed=4), BAND, TrainConfig(kind=KIND, folds=0, seed=0), tmp_path / "other")
    assert other["training_data_sha256"] != first["training_data_sha256"]


def test_downsample_averages_blocks_and_drops_the_remainder() -> None:
    x = np.arange(2 * 1 * 10, dtype=np.float32).reshape(2, 1, 10)
    out = Downsample(4).fit(x).transform(x)
    assert out.shape == (2, 1, 2)
    np.testing.assert_allclose(out[0, 0], [1.5, 5.5])
    assert Downsample(1).fit(x).transform(x).shape == x.shape
    with pytest.raises(ValueError):
        Downsample(0).fit(x)


def test_scored_ridge_scores_agree_with_its_decisions() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 5))
    y = np.where(x[:, 0] + 0.3 * rng.standard_normal(60) > 0, "MI", "Normal")
    clf = ScoredRidgeClassifierCV().fit(x, y)
    proba = clf.predict_proba(x)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert list(clf.classes_[proba.argmax(axis=1)]) == list(clf.predict(x))


def test_derivatives_append_the_z_scored_first_and_second_derivative_as_channels() -> None:
    t = np.linspace(0, 4 * np.pi, 400, dtype=np.float32)
    x = np.stack([np.sin(t), 3 * np.sin(2 * t) + 5])[:, np.newaxis, :]
    out = Derivatives(2).fit(x).transform(x)
    assert out.shape == (2, 3, 400)
    np.testing.assert_allclose(out[:, 0], x[:, 0])  # the recording itself is untouched
    inner = slice(5, -5)  # np.gradient's one-sided ends
    # d/dt sin = cos, d2/dt2 sin = -sin: after the z-score, sqrt(2) cos and -sqrt(2) sin
    np.testing.assert_allclose(out[0, 1, inner], np.sqrt(2) * np.cos(t[inner]), atol=0.02)
    np.testing.assert_allclose(out[0, 2, inner], -np.sqrt(2) * np.sin(t[inner]), atol=0.03)
    np.testing.assert_allclose(out[:, 1:].std(axis=-1), 1.0, atol=1e-4)  # scale and offset do not matter
    assert Derivatives(1).fit(x).transform(x).shape == (2, 2, 400)
    with pytest.raises(ValueError):
        Derivatives(3).fit(x)


def test_derivative_kinds_by_name_build_transform_each_channel_and_predict() -> None:
    assert "VPG, APG" in resolve_kind("minirocket-200-ds4-d2").description
    assert "VPG" in resolve_kind("minirocket-200-ds4-d1-sel50").description
    with pytest.raises(ValueError):
        resolve_kind("minirocket-200-ds4-d3")
    est = build_estimator("minirocket-168-ds4-d2", seed=0, sampling_rate_hz=125.0)
    assert [name for name, _ in est.steps] == ["downsample", "derivatives", "classifier"]
    assert [name for name, _ in build_estimator("minirocket-168-ds4").steps] == ["downsample", "classifier"]
    data = _data(records=40)
    x = preprocess_batch(data.samples, BandPass())[:, np.newaxis, :]
    est.fit(x, np.asarray(data.labels, dtype=object))
    rocket = est.named_steps["classifier"].steps[0][1]
    assert isinstance(rocket, ChannelwiseRocket) and len(rocket.transformers_) == 3  # one per channel
    proba = est.predict_proba(x)
    assert proba.shape == (40, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_a_derivative_kind_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    data = _data(seed=5, records=40)
    path, _ = train(data, BandPass(), TrainConfig(kind="minirocket-168-ds4-d2", folds=0), tmp_path)
    loaded = load_checkpoint(path)  # unpickles Derivatives and ChannelwiseRocket, checks the card
    x = preprocess_batch(data.samples, BandPass())
    mi = loaded.predict_proba(x)[:, loaded.classes.index("MI")]
    own = loaded.estimator.predict_proba(x[:, np.newaxis, :])[:, list(loaded.estimator.classes_).index("MI")]
    np.testing.assert_allclose(mi, own)
    assert ((mi >= 0.5) == (np.asarray(data.labels) == "MI")).mean() > 0.8  # easy data: it learned something


def test_unknown_kind_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown model kind 'nope'; choose one of .*minirocket"):
        build_estimator("nope")


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PPG_MI_SAMPLES_PER_RECORD": str(SAMPLES), "PPG_MI_LOG_FORMAT": "json"}
    return subprocess.run([sys.executable, "-m", "ppg_mi", *args], env=env, capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_evaluate_prints_one_json_object_of_metrics(store: tuple[Path, dict], tmp_path: Path) -> None:
    root, card = store
    held_out = _data(seed=21, records=24)
    write_csv(held_out, tmp_path / "held_out.csv")
    result = _cli("evaluate", "--model", str(root), "--data", str(tmp_path / "held_out.csv"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {"accuracy", "macro_f1", "sensitivity_mi", "specificity", "roc_auc", "n"} <= set(report)
    assert report["n"] == 24 and report["model_version"] == card["version"]
    assert 0.8 <= report["accuracy"] <= 1.0
    # a checkpoint directory works as well as a store
    direct = _cli("evaluate", "--model", str(root / card["version"]), "--data", str(tmp_path / "held_out.csv"))
    assert json.loads(direct.stdout)["accuracy"] == report["accuracy"]


def test_evaluate_reports_a_card_mismatch_without_a_traceback(store: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = store
    write_csv(_data(seed=22, records=4), tmp_path / "d.csv")
    env_band = {"PPG_MI_FILTER_HIGH_HZ": "10"}
    result = subprocess.run([sys.executable, "-m", "ppg_mi", "evaluate", "--model", str(root),
                             "--data", str(tmp_path / "d.csv")],
                            env={**os.environ, **env_band}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "model card does not match the running service: preprocessing" in result.stderr
    assert "Traceback" not in result.stderr


# the comparison's tests are in tests/unit/test_compare.py
