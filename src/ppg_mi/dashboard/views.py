"""What the page shows, computed from a state snapshot: pure functions of a DataFrame.

The snapshot has the columns of :data:`ppg_mi.dashboard.state.COLUMNS`, one row per
recording, oldest first.  Every function here is vectorised (numpy/pandas over whole
columns, no Python loop over rows), so a page refresh stays cheap at the 50,000 rows
the state holds by default.  Label-based results are ``None`` when no row has a true
label: unlabelled data hides them instead of showing zeros.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..model.metrics import classification_metrics
from ..streaming.codec import LABELS
from .state import OTHER

_LABELS = np.array(LABELS, dtype=object)
MI = LABELS.index("MI")
NORMAL = LABELS.index("Normal")
METRIC_NAMES = ("accuracy", "macro_f1", "sensitivity_mi", "specificity")

#: the time-range filter's choices: label → seconds (None: everything in memory)
TIME_RANGES: dict[str, float | None] = {
    "all in memory": None, "last 1 min": 60, "last 5 min": 300, "last 15 min": 900,
    "last 1 h": 3600, "last 6 h": 21600, "last 24 h": 86400,
}


@dataclass(frozen=True)
class Filters:
    """Time range (last ``window_s`` seconds of predicted time), shards, model versions; empty = all."""

    window_s: float | None = None
    shards: tuple[int, ...] = ()
    versions: tuple[str, ...] = ()


def apply_filters(df: pd.DataFrame, f: Filters, now_s: float | None = None) -> pd.DataFrame:
    mask = np.ones(len(df), dtype=bool)
    if f.window_s is not None:
        now_us = (time.time() if now_s is None else now_s) * 1e6
        mask &= df["predicted_us"].to_numpy() >= now_us - f.window_s * 1e6
    if f.shards:
        mask &= np.isin(df["shard"].to_numpy(), np.asarray(f.shards))
    if f.versions:
        mask &= df["model_version"].isin(f.versions).to_numpy()
    return df if mask.all() else df[mask].reset_index(drop=True)


def labelled(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["true_code"].to_numpy() >= 0]


def label_names(codes: np.ndarray) -> np.ndarray:
    """Codes → "Normal"/"MI"; -1 (no true label) → None."""
    codes = np.asarray(codes)
    out = np.full(codes.shape, None, dtype=object)
    known = codes >= 0
    out[known] = _LABELS[codes[known]]
    return out


# --- headline ------------------------------------------------------------------
def headline(df: pd.DataFrame, dlq_total: int) -> dict[str, int]:
    pred = df["pred_code"].to_numpy()
    return {"recordings": len(df), "mi_predicted": int((pred == MI).sum()),
            "labelled": int((df["true_code"].to_numpy() >= 0).sum()), "dlq": int(dlq_total)}


def label_metrics(df: pd.DataFrame) -> dict[str, float | int | None] | None:
    """:func:`ppg_mi.model.metrics.classification_metrics` over the labelled rows; None if none.

    Meant for windows of a few thousand rows (the "last N"): sklearn sorts the label strings,
    which costs about half a second at 50,000 rows.  :func:`running_metrics` gives the same
    four numbers over everything in memory from the confusion counts.
    """
    lab = labelled(df)
    if lab.empty:
        return None
    return classification_metrics(_LABELS[lab["true_code"].to_numpy()], _LABELS[lab["pred_code"].to_numpy()],
                                  lab["score_mi"].to_numpy())


def last_n_metrics(df: pd.DataFrame, n: int) -> dict[str, float | int | None] | None:
    """:func:`label_metrics` over the ``n`` most recent labelled predictions."""
    lab = labelled(df)
    return label_metrics(lab.iloc[-n:]) if not lab.empty else None


def running_metrics(df: pd.DataFrame) -> dict[str, float | int | None] | None:
    """Accuracy, macro-F1, MI sensitivity, specificity over every labelled row, from the counts.

    Equal to :func:`classification_metrics` on the same rows (the unit tests check it), in
    milliseconds instead of half a second at 50,000 rows.
    """
    cm = confusion(df)
    if cm is None:
        return None
    counts = cm[0].to_numpy()
    tn, fp, fn, tp = counts[NORMAL, NORMAL], counts[NORMAL, MI], counts[MI, NORMAL], counts[MI, MI]
    rates = rates_from_counts(tp, fp, fn, tn)
    out: dict[str, float | int | None] = {k: (None if np.isnan(x) else float(x)) for k, x in rates.items()}
    out["n"] = int(counts.sum())
    return out


# --- confusion matrix and counts-based metrics ------------------------------------------
def confusion(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(counts, row-normalised) 2×2 matrices, rows = true label, columns = predicted label."""
    lab = labelled(df)
    if lab.empty:
        return None
    k = len(LABELS)
    flat = lab["true_code"].to_numpy().astype(np.int64) * k + lab["pred_code"].to_numpy()
    counts = np.bincount(flat, minlength=k * k).reshape(k, k)
    index = [f"true {name}" for name in LABELS]
    columns = [f"predicted {name}" for name in LABELS]
    rows = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.where(rows > 0, counts / np.maximum(rows, 1), np.nan)
    return pd.DataFrame(counts, index=index, columns=columns), pd.DataFrame(norm, index=index, columns=columns)


def rates_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, macro-F1, MI sensitivity and specificity from (arrays of) confusion counts.

    Conventions match :func:`classification_metrics`: an undefined F1 counts as 0 (sklearn's
    ``zero_division=0``), an undefined sensitivity or specificity is NaN (shown as a gap).
    """
    tp, fp, fn, tn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn, tn))
    with np.errstate(invalid="ignore", divide="ignore"):
        n = tp + fp + fn + tn
        f1_mi = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
        f1_normal = np.where(2 * tn + fp + fn > 0, 2 * tn / (2 * tn + fp + fn), 0.0)
        return {
            "accuracy": np.where(n > 0, (tp + tn) / n, np.nan),
            "macro_f1": (f1_mi + f1_normal) / 2,
            "sensitivity_mi": np.where(tp + fn > 0, tp / (tp + fn), np.nan),
            "specificity": np.where(tn + fp > 0, tn / (tn + fp), np.nan),
        }


def _cumulative_counts(lab: pd.DataFrame) -> tuple[np.ndarray, ...]:
    t = lab["true_code"].to_numpy()
    p = lab["pred_code"].to_numpy()
    return tuple(np.cumsum((t == a) & (p == b)) for a, b in ((MI, MI), (NORMAL, MI), (MI, NORMAL), (NORMAL, NORMAL)))


def _sample_points(n: int, max_points: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, max_points)).astype(np.int64)) if n else np.zeros(0, np.int64)


def _times(us: np.ndarray) -> pd.DatetimeIndex:
    return pd.to_datetime(us, unit="us", utc=True)


def running_trend(df: pd.DataFrame, max_points: int = 300) -> pd.DataFrame | None:
    """Metrics over every labelled prediction up to each moment, indexed by predicted time."""
    lab = labelled(df)
    if lab.empty:
        return None
    tp, fp, fn, tn = _cumulative_counts(lab)
    idx = _sample_points(len(lab), max_points)
    rates = rates_from_counts(tp[idx], fp[idx], fn[idx], tn[idx])
    out = pd.DataFrame(rates, index=_times(lab["predicted_us"].to_numpy()[idx]))
    out.index.name = "predicted at"
    return out


def rolling_trend(df: pd.DataFrame, n: int, max_points: int = 300) -> pd.DataFrame | None:
    """Metrics over the ``n`` labelled predictions before each one, indexed by prediction number."""
    lab = labelled(df)
    if lab.empty:
        return None
    counts = []
    for c in _cumulative_counts(lab):
        lagged = np.concatenate([np.zeros(min(n, len(c)), dtype=c.dtype), c[:-n]]) if n < len(c) else np.zeros_like(c)
        counts.append(c - lagged)
    idx = _sample_points(len(lab), max_points)
    rates = rates_from_counts(*(c[idx] for c in counts))
    out = pd.DataFrame(rates, index=pd.Index(idx + 1, name="labelled prediction #"))
    return out


# --- distributions, throughput, latency -----------------------------------------------------
def class_distribution(df: pd.DataFrame) -> pd.DataFrame:
    """Recordings per class: predicted always, true when labelled (else the column is absent)."""
    k = len(LABELS)
    out = pd.DataFrame({"predicted": np.bincount(df["pred_code"].to_numpy(), minlength=k)[:k]},
                       index=pd.Index(list(LABELS), name="class"))
    true = df["true_code"].to_numpy()
    if (true >= 0).any():
        out.insert(0, "true", np.bincount(true[true >= 0], minlength=k)[:k])
    return out


def _bins(us: np.ndarray, max_bins: int) -> tuple[np.ndarray, float]:
    lo, hi = int(us.min()), int(us.max())
    width_s = max(1.0, (hi - lo) / 1e6 / max_bins)
    edges = np.arange(lo, hi + width_s * 1e6, width_s * 1e6)
    if len(edges) < 2:
        edges = np.array([lo, lo + width_s * 1e6])
    return edges, width_s


def throughput(df: pd.DataFrame, max_bins: int = 60) -> tuple[pd.DataFrame | None, float]:
    """(predictions per second over time, the mean rate over the shown span)."""
    if df.empty:
        return None, 0.0
    us = df["predicted_us"].to_numpy()
    edges, width_s = _bins(us, max_bins)
    counts, _ = np.histogram(us, bins=edges)
    series = pd.DataFrame({"predictions/s": counts / width_s}, index=_times(edges[:-1].astype(np.int64)))
    series.index.name = "predicted at"
    span_s = max((us.max() - us.min()) / 1e6, width_s)
    return series, len(us) / span_s


def latencies_s(df: pd.DataFrame) -> np.ndarray:
    """End-to-end latency (produced → predicted) of the rows that carry both timestamps."""
    produced = df["produced_us"].to_numpy()
    predicted = df["predicted_us"].to_numpy()
    ok = (produced > 0) & (predicted >= produced)
    return (predicted[ok] - produced[ok]) / 1e6


def latency_summary(df: pd.DataFrame) -> dict[str, float] | None:
    lat = latencies_s(df)
    if lat.size == 0:
        return None
    p50, p95 = np.percentile(lat, [50, 95])
    return {"p50_s": float(p50), "p95_s": float(p95), "n": int(lat.size)}


def latency_trend(df: pd.DataFrame, max_bins: int = 60) -> pd.DataFrame | None:
    """p50 and p95 latency per time bin."""
    produced = df["produced_us"].to_numpy()
    predicted = df["predicted_us"].to_numpy()
    ok = (produced > 0) & (predicted >= produced)
    if not ok.any():
        return None
    us = predicted[ok]
    lat = (us - produced[ok]) / 1e6
    edges, _ = _bins(us, max_bins)
    which = np.clip(np.searchsorted(edges, us, side="right") - 1, 0, len(edges) - 2)
    grouped = pd.Series(lat).groupby(which)
    out = pd.DataFrame({"p50 s": grouped.quantile(0.5), "p95 s": grouped.quantile(0.95)})
    out.index = _times(edges[out.index.to_numpy()].astype(np.int64))
    out.index.name = "predicted at"
    return out


# --- tables -------------------------------------------------------------------------
def folded_predictions(df: pd.DataFrame) -> int:
    """Predictions stored under ``OTHER`` because too many model versions were in memory."""
    return int((df["model_version"] == OTHER).sum()) if not df.empty else 0


#: the model-versions table's operating-point columns: state column → shown name
OPERATING_POINT_SHOWN = {
    "threshold": "MI threshold",
    "target_sensitivity": "target sensitivity",
    "validation_sensitivity": "validation sensitivity",
    "validation_specificity": "validation specificity",
    "validation_brier": "validation Brier",
}


def model_versions(df: pd.DataFrame) -> pd.DataFrame:
    """One row per model version seen: predictions, first and last prediction, accuracy if labelled,
    and its operating point (threshold, target sensitivity, held-out sensitivity, specificity and
    Brier score at training) when any version seen has one (empty cells: that version decides by argmax).

    The operating point comes from the prediction messages (the dashboard does not read the model
    store); a version's latest prediction says it."""
    if df.empty:
        return pd.DataFrame(columns=["model version", "predictions", "first seen", "last seen", "accuracy"])
    t = df["true_code"].to_numpy()
    work = pd.DataFrame({"model version": df["model_version"].to_numpy(),
                         "us": df["predicted_us"].to_numpy(),
                         "labelled": t >= 0,
                         "correct": (t >= 0) & (t == df["pred_code"].to_numpy())})
    g = work.groupby("model version", sort=False, observed=True)
    out = pd.DataFrame({"predictions": g.size(), "first seen": _times(g["us"].min().to_numpy()),
                        "last seen": _times(g["us"].max().to_numpy())})
    n_lab = g["labelled"].sum()
    acc = (g["correct"].sum() / n_lab.where(n_lab > 0)).astype(float)
    if n_lab.sum() > 0:
        out["accuracy"] = acc.to_numpy()
    present = [c for c in OPERATING_POINT_SHOWN if c in df.columns]
    if present and df[present[0]].notna().any():
        point = df[present].copy()
        point["model version"] = df["model_version"].to_numpy()
        # the frame is oldest first: a version's last row is its latest prediction
        last = point.groupby("model version", sort=False, observed=True).last()
        for column in present:
            out[OPERATING_POINT_SHOWN[column]] = last[column].reindex(out.index).astype(float).round(3).to_numpy()
    return out.sort_values("last seen", ascending=False).reset_index()


def _table(rows: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame({
        "record id": rows["record_id"].to_numpy(),
        "predicted at": _times(rows["predicted_us"].to_numpy()),
        "true": label_names(rows["true_code"].to_numpy()),
        "predicted": label_names(rows["pred_code"].to_numpy()),
        "MI score": rows["score_mi"].to_numpy().round(3),
        "model version": rows["model_version"].astype(str).to_numpy(),
        "shard": rows["shard"].to_numpy(),
    })
    if (rows["true_code"].to_numpy() < 0).all():
        out = out.drop(columns="true")
    return out


def latest(df: pd.DataFrame, n: int = 200) -> pd.DataFrame:
    """The ``n`` newest predictions, newest first."""
    return _table(df.iloc[::-1][:n])


def alerts(df: pd.DataFrame, n: int = 50) -> pd.DataFrame:
    """The ``n`` newest MI predictions, newest first."""
    mi = df[df["pred_code"].to_numpy() == MI]
    return _table(mi.iloc[::-1][:n])
