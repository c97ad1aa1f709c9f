"""The operating point in the product (issue 19): the setting, `ppg-mi train`, the classifier's
decision, the prediction message and `ppg-mi evaluate`.

A model wrapped in ``OperatingPoint`` decides MI when its calibrated MI probability reaches the
card's threshold; before this, the classifier and `ppg-mi evaluate` took the argmax (0.5).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from ppg_mi.cli import main
from ppg_mi.config import ConfigError, Settings, parse_target_sensitivity
from ppg_mi.data import SyntheticConfig, generate, write_csv
from ppg_mi.model import Checkpoint, load_checkpoint
from ppg_mi.model.checkpoint import operating_point
from ppg_mi.services.classifier import ClassifierProcessor
from ppg_mi.streaming.codec import Prediction, Recording, decode_prediction, now_us
from ppg_mi.streaming.loop import InputRecord, Output

SAMPLES = 256


class _FixedScores:
    """A fitted estimator stand-in returning fixed MI probabilities (pure decision logic)."""

    classes_ = np.array(["MI", "Normal"], dtype=object)

    def __init__(self, mi: list[float], threshold: float | None) -> None:
        self.mi = np.asarray(mi)
        if threshold is not None:
            self.threshold_ = threshold

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.column_stack([self.mi[: len(x)], 1.0 - self.mi[: len(x)]])


def _card(threshold: float | None) -> dict:
    params: dict = {"class": "x"}
    if threshold is not None:
        params.update(threshold=threshold, target_sensitivity=0.95,
                      validation={"sensitivity_mi": 0.96, "specificity": 0.8, "brier": 0.1, "calibration_error": 0.03})
    return {"version": "v-test", "classes": ["Normal", "MI"], "params": params}


@pytest.mark.parametrize("raw, expected", [("0.95", 0.95), ("0.9", 0.9), ("1", 1.0), ("0", None), ("", None),
                                           (" ", None), (None, None)])
def test_target_sensitivity_setting_parses_zero_and_empty_as_no_operating_point(raw, expected) -> None:
    assert parse_target_sensitivity(raw) == expected


@pytest.mark.parametrize("raw", ["1.5", "-0.1", "high"])
def test_target_sensitivity_setting_refuses_values_outside_0_1(raw) -> None:
    with pytest.raises(ConfigError, match="PPG_MI_TARGET_SENSITIVITY"):
        Settings.from_env({"PPG_MI_TARGET_SENSITIVITY": raw})


def test_target_sensitivity_defaults_to_0_95() -> None:
    assert parse_target_sensitivity(Settings.from_env({}).target_sensitivity) == 0.95


def test_checkpoint_decides_by_the_threshold_and_without_one_by_the_argmax() -> None:
    x = np.zeros((3, SAMPLES), dtype=np.float32)
    with_point = Checkpoint(_FixedScores([0.3, 0.1, 0.9], threshold=0.2), _card(0.2))
    assert list(with_point.decide(x)[1]) == ["MI", "Normal", "MI"]       # 0.3 >= 0.2: MI, argmax says Normal
    assert with_point.threshold == 0.2
    argmax = Checkpoint(_FixedScores([0.3, 0.1, 0.9], threshold=None), _card(None))
    assert list(argmax.decide(x)[1]) == ["Normal", "Normal", "MI"]
    assert argmax.threshold is None and argmax.operating_point is None


def test_operating_point_of_a_card() -> None:
    assert operating_point(_card(0.2)) == {"threshold": 0.2, "target_sensitivity": 0.95,
                                           "validation_sensitivity": 0.96, "validation_specificity": 0.8,
                                           "validation_brier": 0.1, "validation_calibration_error": 0.03}
    assert operating_point(_card(None)) is None
    assert operating_point({"version": "v", "classes": []}) is None


class _Server:
    def __init__(self, checkpoint: Checkpoint) -> None:
        self.checkpoint = checkpoint
        self.samples_per_record = SAMPLES


def _filtered(i: int, rate: float = 125.0) -> InputRecord:
    rec = Recording(f"r{i}", np.sin(np.arange(SAMPLES, dtype=np.float32) / 5 + i), rate, "MI",
                    produced_us=now_us(), filtered_us=now_us())
    return InputRecord(key=rec.record_id.encode(), value=rec.encode(), topic="t", partition=0, offset=i, timestamp_ms=0)


def test_classifier_decides_with_the_threshold_and_the_message_carries_it() -> None:
    checkpoint = Checkpoint(_FixedScores([0.3, 0.1], threshold=0.2), _card(0.2))
    outcomes = ClassifierProcessor(_Server(checkpoint)).process([_filtered(0), _filtered(1)])  # type: ignore[arg-type]
    assert all(isinstance(o, Output) for o in outcomes)
    first, second = (decode_prediction(o.value) for o in outcomes)  # type: ignore[union-attr]
    assert first.predicted_label == "MI" and second.predicted_label == "Normal"
    assert first.scores["MI"] == pytest.approx(0.3)
    assert first.threshold == pytest.approx(0.2) and first.target_sensitivity == pytest.approx(0.95)
    assert first.validation_sensitivity == pytest.approx(0.96)
    assert first.validation_specificity == pytest.approx(0.8) and first.validation_brier == pytest.approx(0.1)


def test_classifier_without_an_operating_point_takes_the_argmax_and_sends_no_threshold() -> None:
    checkpoint = Checkpoint(_FixedScores([0.3, 0.6], threshold=None), _card(None))
    outcomes = ClassifierProcessor(_Server(checkpoint)).process([_filtered(0), _filtered(1)])  # type: ignore[arg-type]
    first, second = (decode_prediction(o.value) for o in outcomes)  # type: ignore[union-attr]
    assert (first.predicted_label, second.predicted_label) == ("Normal", "MI")
    assert first.threshold is None and first.target_sensitivity is None and first.validation_brier is None


def test_prediction_version_2_round_trips_and_version_1_is_still_read() -> None:
    p = Prediction("r1", "MI", {"Normal": 0.25, "MI": 0.75}, "v1", "MI", threshold=0.5, target_sensitivity=0.95,
                   validation_sensitivity=0.97, validation_specificity=0.85, validation_brier=0.12)
    back = decode_prediction(p.encode())
    assert back.operating_point_fields() == pytest.approx(p.operating_point_fields())
    # a version-1 message (written before operating points): the same header and body, no trailer
    v2 = Prediction("r1", "MI", {"Normal": 0.25, "MI": 0.75}, "v1", "MI").encode()
    v1 = struct.pack("<BB", 2, 1) + v2[2:-20]
    old = decode_prediction(v1)
    assert old.record_id == "r1" and old.predicted_label == "MI" and old.scores["MI"] == pytest.approx(0.75)
    assert old.operating_point_fields() == (None,) * 5


@pytest.fixture(scope="module")
def labelled_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("csv") / "train.csv"
    write_csv(generate(SyntheticConfig(records=60, samples=SAMPLES, difficulty=0.8, seed=2, id_prefix="op")), path)
    return path


def _train(tmp_path: Path, csv: Path, monkeypatch: pytest.MonkeyPatch, capsys, *extra: str,
           setting: str | None = None) -> dict:
    monkeypatch.setenv("PPG_MI_SAMPLES_PER_RECORD", str(SAMPLES))
    if setting is not None:
        monkeypatch.setenv("PPG_MI_TARGET_SENSITIVITY", setting)
    out = tmp_path / "models"
    assert main(["train", "--data", str(csv), "--out", str(out), "--folds", "0", "--kind", "minirocket-100-ds4",
                 *extra]) == 0
    printed = json.loads(capsys.readouterr().out)
    return json.loads((Path(printed["checkpoint"]) / "model-card.json").read_text())


def test_train_sets_the_operating_point_from_the_setting_and_the_option_overrides_it(
        tmp_path: Path, labelled_csv: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    card = _train(tmp_path / "a", labelled_csv, monkeypatch, capsys)                  # default 0.95
    assert card["params"]["target_sensitivity"] == 0.95 and card["params"]["threshold"] is not None
    card = _train(tmp_path / "b", labelled_csv, monkeypatch, capsys, setting="0.8")
    assert card["params"]["target_sensitivity"] == 0.8
    card = _train(tmp_path / "c", labelled_csv, monkeypatch, capsys, "--target-sensitivity", "0.9", setting="0.8")
    assert card["params"]["target_sensitivity"] == 0.9
    card = _train(tmp_path / "d", labelled_csv, monkeypatch, capsys, "--target-sensitivity", "0", setting="0.8")
    assert "threshold" not in card["params"]                                           # plain pipeline, argmax
    card = _train(tmp_path / "e", labelled_csv, monkeypatch, capsys, setting="")
    assert "threshold" not in card["params"]


def test_evaluate_decides_with_the_models_threshold(tmp_path: Path, labelled_csv: Path,
                                                    monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    card = _train(tmp_path, labelled_csv, monkeypatch, capsys, "--target-sensitivity", "1")
    assert main(["evaluate", "--model", str(tmp_path / "models"), "--data", str(labelled_csv)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["threshold"] == pytest.approx(card["params"]["threshold"])
    assert {"brier", "calibration_error"} <= set(result)
    from ppg_mi.data import read_csv
    from ppg_mi.signal import BandPass, preprocess_batch

    checkpoint = load_checkpoint(tmp_path / "models" / card["version"])
    data = read_csv(labelled_csv)
    proba, decided = checkpoint.decide(preprocess_batch(data.samples, BandPass()))
    mi = proba[:, checkpoint.classes.index("MI")]
    truth = np.asarray(data.labels) == "MI"
    # evaluate's sensitivity is that of the threshold's decisions, not of the argmax's
    assert result["sensitivity_mi"] == pytest.approx(float((decided[truth] == "MI").mean()))
    assert result["sensitivity_mi"] == pytest.approx(float((mi[truth] >= checkpoint.threshold).mean()))
