"""Searched kinds, rate-scaled down-sampling, the operating point and calibration metrics."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from ppg_mi.model.estimators import (OperatingPoint, build_estimator, describe_estimator, downsample_factor,
                                     resolve_kind, threshold_for_sensitivity)
from ppg_mi.model.metrics import calibration_metrics


def test_searched_configurations_are_buildable_by_name() -> None:
    est = build_estimator("minirocket-1000-ds8-sel500", seed=3)
    params = describe_estimator(est)
    assert params["downsample"]["factor"] == 8
    assert params["classifier"]["n_kernels"] == 1000 and params["classifier"]["random_state"] == 3
    assert "SelectKBest(k=500" in params["classifier"]["estimator"]
    assert "MultiRocket: 200 kernels" in resolve_kind("multirocket-200-ds4").description
    for bad in ("minirocket-0-ds4", "hydra-100-ds4", "minirocket-100", "minirocket-100-ds0"):
        with pytest.raises(ValueError, match="unknown model kind"):
            resolve_kind(bad)


@pytest.mark.parametrize(("factor", "rate", "expected"), [
    (4, 125.0, 4), (4, 250.0, 8), (4, 100.0, 3), (8, 100.0, 6), (8, 250.0, 16), (1, 250.0, 1), (4, None, 4),
])
def test_the_downsampling_factor_follows_the_sampling_rate(factor: int, rate: float | None, expected: int) -> None:
    # a kind's factor is stated at 125 Hz: every rate reaches the classifier at about the same rate
    assert downsample_factor(factor, rate) == expected


def test_build_estimator_scales_the_factor_to_the_rate_it_is_built_for() -> None:
    assert build_estimator("minirocket-500-ds8", sampling_rate_hz=250.0).named_steps["downsample"].factor == 16
    assert build_estimator("minirocket-500-ds8", sampling_rate_hz=100.0).named_steps["downsample"].factor == 6
    assert build_estimator("shapelet-seed", sampling_rate_hz=250.0).named_steps["downsample"].factor == 1


def test_threshold_is_the_highest_reaching_the_target_sensitivity() -> None:
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.05, 0.5])
    is_mi = np.array([True] * 10 + [False] * 2)
    assert threshold_for_sensitivity(p, is_mi, 0.9) == 0.2   # 9 of 10 MI at or above 0.2
    assert threshold_for_sensitivity(p, is_mi, 1.0) == 0.1
    assert threshold_for_sensitivity(p, is_mi, 0.95) == 0.1  # 0.95 of 10 needs all 10
    assert (p[is_mi] >= threshold_for_sensitivity(p, is_mi, 0.5)).mean() >= 0.5


def _overlapping(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.where(rng.random(n) < 0.5, "MI", "Normal").astype(object)
    x = rng.normal(0, 1, (n, 3)) + np.where(y == "MI", 1.0, 0.0)[:, None]
    return x, y


def test_operating_point_reaches_the_target_sensitivity_on_new_data_and_predict_applies_it() -> None:
    x, y = _overlapping(800, 0)
    op = OperatingPoint(LogisticRegression(), target_sensitivity=0.95, folds=5).fit(x, y)
    assert op.validation_["sensitivity_mi"] >= 0.95
    xt, yt = _overlapping(4000, 1)
    pred = op.predict(xt)
    sensitivity = float((pred[yt == "MI"] == "MI").mean())
    assert sensitivity > 0.93  # chosen on held-out folds, so it carries over to new data
    # predict applies threshold_, not argmax: with this much overlap the two differ
    mi_col = list(op.classes_).index("MI")
    p = op.predict_proba(xt)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert op.threshold_ < 0.5
    assert np.array_equal(pred == "MI", p[:, mi_col] >= op.threshold_)
    assert (pred == "MI").sum() > (p.argmax(axis=1) == mi_col).sum()
    card = describe_estimator(op)
    assert card["threshold"] == op.threshold_ and card["target_sensitivity"] == 0.95
    assert set(card["validation"]) >= {"brier", "calibration_error", "sensitivity_mi", "specificity"}


def test_operating_point_probabilities_are_calibrated_where_the_raw_scores_are_not() -> None:
    class Overconfident(LogisticRegression):
        def predict_proba(self, X):  # noqa: N803
            p = super().predict_proba(X)
            return np.clip((p - 0.5) * 6 + 0.5, 0.0, 1.0)  # right ranking, far too sure

    x, y = _overlapping(1000, 2)
    xt, yt = _overlapping(4000, 3)
    raw = Overconfident().fit(x, y)
    op = OperatingPoint(Overconfident(), folds=5).fit(x, y)
    mi_raw = raw.predict_proba(xt)[:, list(raw.classes_).index("MI")]
    mi_cal = op.predict_proba(xt)[:, list(op.classes_).index("MI")]
    before = calibration_metrics(yt == "MI", mi_raw)
    after = calibration_metrics(yt == "MI", mi_cal)
    assert after["calibration_error"] < 0.05 < before["calibration_error"]
    assert after["brier"] < before["brier"]


def test_calibration_metrics_of_known_cases() -> None:
    truth = np.array([True, False, True, False])
    assert calibration_metrics(truth, np.array([1.0, 0.0, 1.0, 0.0])) == {"brier": 0.0, "calibration_error": 0.0}
    m = calibration_metrics(truth, np.full(4, 0.5))
    assert m["brier"] == pytest.approx(0.25) and m["calibration_error"] == pytest.approx(0.0)
    m = calibration_metrics(np.array([False] * 4), np.full(4, 0.9))
    assert m["brier"] == pytest.approx(0.81) and m["calibration_error"] == pytest.approx(0.9)


def test_training_with_an_operating_point_writes_threshold_calibration_and_the_assumed_rate(tmp_path) -> None:
    from ppg_mi.data import SyntheticConfig, generate
    from ppg_mi.model import load_checkpoint
    from ppg_mi.signal import BandPass
    from training.train import TrainConfig, train

    band = BandPass(sampling_rate_hz=100.0)
    data = generate(SyntheticConfig(records=60, samples=256, sampling_rate_hz=100.0, difficulty=0.3, seed=1))
    path, card = train(data, band, TrainConfig(kind="minirocket-100-ds4", folds=0, target_sensitivity=0.9),
                       tmp_path)
    assert card["params"]["target_sensitivity"] == 0.9 and 0.0 < card["params"]["threshold"] < 1.0
    assert card["params"]["estimator"]["downsample"]["factor"] == 3  # x4 at 125 Hz is x3 at 100 Hz
    assert {"brier", "calibration_error"} <= set(card["params"]["validation"])
    assert {"brier", "calibration_error"} <= set(card["metrics"]["held_out"])
    assert card["training_data"]["sampling_rate_hz_assumed"] == 100.0
    checkpoint = load_checkpoint(path, band, 256)
    assert checkpoint.estimator.threshold_ == card["params"]["threshold"]
