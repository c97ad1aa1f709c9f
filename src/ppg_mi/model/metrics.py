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
