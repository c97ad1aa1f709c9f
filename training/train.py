"""Fit, evaluate and checkpoint an aeon classifier on preprocessed PPG recordings.

The preprocessing is :func:`ppg_mi.signal.preprocess_batch`, the very function the filter
service applies, so training and serving cannot drift apart.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

from ppg_mi.data import Dataset
from ppg_mi.model import ModelStore, build_estimator, save_checkpoint
from ppg_mi.model.estimators import OperatingPoint, describe_estimator
from ppg_mi.model.checkpoint import fingerprint, make_card
from ppg_mi.model.metrics import POSITIVE, calibration_metrics, classification_metrics
from ppg_mi.signal import BandPass, preprocess_batch, validate_samples
from ppg_mi.signal.filters import InvalidSignal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    kind: str = "rdst"
    seed: int = 0
    test_size: float = 0.2
    folds: int = 5
    n_jobs: int = 1
    #: wrap the kind in :class:`OperatingPoint`: calibrated MI probability and a threshold chosen on
    #: held-out folds for this MI sensitivity (None: the kind's own scores, argmax decision)
    target_sensitivity: float | None = None
    #: folds of the out-of-fold scores the calibration and the threshold are fitted on (each costs a fit)
    calibration_folds: int = 5


def accepted(dataset: Dataset) -> tuple[np.ndarray, np.ndarray, int]:
    """Raw samples and labels of the recordings the filter would accept, and how many it would refuse."""
    keep = []
    for i, row in enumerate(dataset.samples):
        try:
            validate_samples(row)
            keep.append(i)
        except InvalidSignal:
            pass
    y = np.asarray([dataset.labels[i] for i in keep], dtype=object)
    return dataset.samples[keep], y, len(dataset) - len(keep)


def preprocessable(dataset: Dataset, band: BandPass) -> tuple[np.ndarray, np.ndarray, int]:
    """Preprocessed samples and labels of the recordings the filter would accept; count refused."""
    raw, y, refused = accepted(dataset)
    return preprocess_batch(raw, band), y, refused


def fit_and_score(kind: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                  y_test: np.ndarray, seed: int, n_jobs: int, sampling_rate_hz: float | None = None,
                  target_sensitivity: float | None = None, calibration_folds: int = 5) -> tuple[Any, dict[str, Any]]:
    estimator: Any = build_estimator(kind, seed, n_jobs, sampling_rate_hz)
    if target_sensitivity is not None:
        estimator = OperatingPoint(estimator, target_sensitivity=target_sensitivity, folds=calibration_folds,
                                   random_state=seed)
    started = time.perf_counter()
    estimator.fit(x_train[:, np.newaxis, :], y_train)
    fit_s = time.perf_counter() - started
    proba = np.asarray(estimator.predict_proba(x_test[:, np.newaxis, :]))
    classes = [str(c) for c in estimator.classes_]
    if isinstance(estimator, OperatingPoint):  # its decision is the fitted threshold, not the argmax
        pred = np.asarray(estimator.predict(x_test[:, np.newaxis, :]), dtype=object)
    else:
        pred = np.array(classes, dtype=object)[proba.argmax(axis=1)]
    mi_score = proba[:, classes.index(POSITIVE)]
    metrics: dict[str, Any] = classification_metrics(y_test, pred, mi_score)
    # how far the MI score is from a probability (for kinds without OperatingPoint it is only a score)
    metrics.update(calibration_metrics(np.asarray(y_test, dtype=object) == POSITIVE, mi_score))
    # timings vary run to run: kept apart from the metrics so that equal data + seed give an equal card
    metrics["timing"] = {"fit_seconds": round(fit_s, 3)}
    return estimator, metrics


def cross_validate(kind: str, x: np.ndarray, y: np.ndarray, folds: int, seed: int, n_jobs: int,
                   sampling_rate_hz: float | None = None, target_sensitivity: float | None = None,
                   calibration_folds: int = 5) -> dict[str, Any]:
    """Mean and standard deviation of each metric over stratified k folds."""
    per_fold = []
    for train_idx, test_idx in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        _, m = fit_and_score(kind, x[train_idx], y[train_idx], x[test_idx], y[test_idx], seed, n_jobs,
                             sampling_rate_hz, target_sensitivity, calibration_folds)
        per_fold.append(m)
    summary: dict[str, Any] = {"folds": folds}
    for key in ("accuracy", "macro_f1", "sensitivity_mi", "specificity", "roc_auc", "brier", "calibration_error"):
        values = [m[key] for m in per_fold if m[key] is not None]
        summary[key] = {"mean": float(np.mean(values)), "std": float(np.std(values))} if values else None
    return summary


def train(dataset: Dataset, band: BandPass, cfg: TrainConfig, models_dir: str | Path,
          make_current: bool = True) -> tuple[Path, dict[str, Any]]:
    """Fit on a stratified split, evaluate held-out and by k-fold, save into the model store."""
    if not dataset.labelled:
        raise ValueError("training needs a labelled dataset (a Label column of Normal/MI)")
    x, y, refused = preprocessable(dataset, band)
    if len(set(y.tolist())) < 2:
        raise ValueError("training needs recordings of both classes")
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=cfg.test_size, stratify=y, random_state=cfg.seed
    )
    rate = band.sampling_rate_hz
    # a CSV carries no sampling rate: the configured one is assumed, said here and written into the card
    log.info("training assumes every recording was sampled at %g Hz (PPG_MI_SAMPLING_RATE_HZ)", rate,
             extra={"sampling_rate_hz": rate, "source": dataset.source})
    log.info("fitting", extra={"kind": cfg.kind, "train": len(y_train), "test": len(y_test)})
    estimator, held_out = fit_and_score(cfg.kind, x_train, y_train, x_test, y_test, cfg.seed, cfg.n_jobs, rate,
                                        cfg.target_sensitivity, cfg.calibration_folds)
    timing = {"held_out_fit_seconds": held_out.pop("timing")["fit_seconds"]}
    metrics: dict[str, Any] = {"held_out": held_out, "refused_recordings": refused}
    if cfg.folds >= 2:
        log.info("cross-validating", extra={"folds": cfg.folds})
        started = time.perf_counter()
        metrics["cross_validation"] = cross_validate(cfg.kind, x, y, cfg.folds, cfg.seed, cfg.n_jobs, rate,
                                                       cfg.target_sensitivity, cfg.calibration_folds)
        timing["cross_validation_seconds"] = round(time.perf_counter() - started, 3)
    card = make_card(
        kind=cfg.kind,
        params=describe_estimator(estimator),
        classes=["Normal", "MI"],
        band=band,
        samples_per_record=int(x.shape[1]),
        data_fingerprint=fingerprint(dataset.samples, dataset.labels),
        metrics=metrics,
        seed=cfg.seed,
        extra={"training_data": {"source": dataset.source, "n": len(dataset), "n_used": int(len(y)),
                                 "test_size": cfg.test_size, "folds": cfg.folds,
                                 "sampling_rate_hz_assumed": rate,
                                 "sampling_rate_source": "PPG_MI_SAMPLING_RATE_HZ: the data carries no rate"},
               "timing": timing},
    )
    store = ModelStore(models_dir)
    path = save_checkpoint(estimator, card, store.root / card["version"])
    if make_current:
        store.set_current(card["version"])
    return path, card

