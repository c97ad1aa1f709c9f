"""Classification metrics of MI detection (MI is the positive class)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score

POSITIVE = "MI"
NEGATIVE = "Normal"


def classification_metrics(
    y_true: Sequence[str], y_pred: Sequence[str], mi_score: Sequence[float] | None = None
) -> dict[str, float | int | None]:
    """accuracy, macro_f1, sensitivity_mi, specificity, roc_auc (None without scores or one class), n."""
    yt = np.asarray(y_true, dtype=object)
    yp = np.asarray(y_pred, dtype=object)
    n = int(yt.size)
    if n == 0:
        return {"accuracy": None, "macro_f1": None, "sensitivity_mi": None, "specificity": None,
                "roc_auc": None, "n": 0}
    tn, fp, fn, tp = confusion_matrix(yt, yp, labels=[NEGATIVE, POSITIVE]).ravel()
    auc = None
    if mi_score is not None and len(set(yt.tolist())) == 2:
        auc = float(roc_auc_score(yt == POSITIVE, np.asarray(mi_score, dtype=float)))
    return {
        "accuracy": float(accuracy_score(yt, yp)),
        "macro_f1": float(f1_score(yt, yp, labels=[NEGATIVE, POSITIVE], average="macro", zero_division=0)),
        "sensitivity_mi": float(tp / (tp + fn)) if tp + fn else None,
        "specificity": float(tn / (tn + fp)) if tn + fp else None,
        "roc_auc": auc,
        "n": n,
    }


def calibration_metrics(is_mi: Sequence[bool], mi_probability: Sequence[float], bins: int = 10) -> dict[str, float]:
    """Brier score and expected calibration error (equal-width bins, weighted by their counts) of an MI probability.

    The calibration error is the count-weighted mean over bins of |mean probability - fraction MI|:
    0 for a perfectly calibrated score; a score that is right but overconfident or timid shows here,
    not in ROC AUC.
    """
    truth = np.asarray(is_mi, dtype=float)
    p = np.clip(np.asarray(mi_probability, dtype=float), 0.0, 1.0)
    if truth.size == 0:
        return {"brier": float("nan"), "calibration_error": float("nan")}
    which = np.minimum((p * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.sum() / truth.size * abs(float(p[members].mean()) - float(truth[members].mean()))
    return {"brier": float(np.mean((p - truth) ** 2)), "calibration_error": float(error)}
