"""The aeon estimators ppg-mi can train, by name (``PPG_MI_MODEL_KIND``).

Every estimator receives the filter's output (band-passed, z-scored recordings) as a 3-D
array (n_records, 1 channel, n_samples) and string labels.  An estimator may reduce its
input internally (:class:`Downsample`): that step is part of the fitted estimator and of
its card's ``params``, never of the filter's contract.  See docs/model.md for the
comparison that chose the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import RidgeClassifierCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler


class Downsample(TransformerMixin, BaseEstimator):
    """Average non-overlapping blocks of ``factor`` samples of a 3-D batch.

    The filter keeps only 0.5-8 Hz, so at 125 Hz a factor of 4 (31.25 Hz, Nyquist 15.6 Hz)
    keeps the whole pass band; the block mean is the anti-alias filter (first null at the
    new sampling rate, about -0.9 dB at 8 Hz for a factor of 4).  Trailing samples that do
    not fill a block are dropped.
    """

    def __init__(self, factor: int = 4) -> None:
        self.factor = factor

    def fit(self, X: np.ndarray, y: Any = None) -> "Downsample":  # noqa: N803
        if int(self.factor) < 1:
            raise ValueError(f"downsampling factor must be >= 1, got {self.factor}")
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        x = np.asarray(X, dtype=np.float32)
        k = int(self.factor)
        if k == 1:
            return x
        usable = (x.shape[-1] // k) * k
        return x[..., :usable].reshape(*x.shape[:-1], usable // k, k).mean(axis=-1)


class ScoredRidgeClassifierCV(RidgeClassifierCV):
    """RidgeClassifierCV with ``predict_proba``: a logistic squash of the decision function.

    aeon's classifiers fall back to one-hot "probabilities" for an estimator without
    ``predict_proba``, which makes ROC AUC meaningless and every prediction's score 0 or 1.
    The squash is monotone in the ridge decision value, so rankings (AUC) and the argmax
    are the ridge's own; the values are scores, not calibrated probabilities.
    """

    def predict_proba(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        d = np.asarray(self.decision_function(X), dtype=np.float64)
        if d.ndim == 1:  # binary: the decision value is the positive class's (classes_[1]) margin
            p1 = 1.0 / (1.0 + np.exp(-2.0 * d))
            return np.column_stack([1.0 - p1, p1])
        e = np.exp(d - d.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


def _ridge() -> Pipeline:
    return make_pipeline(StandardScaler(), ScoredRidgeClassifierCV(alphas=np.logspace(-3, 3, 10)))


@dataclass(frozen=True)
class Kind:
    """One trainable configuration: its family, a factory and a one-line description."""

    family: str
    downsample: int
    build: Callable[[int, int], Any]
    description: str


def _shapelet_seed(seed: int, n_jobs: int) -> Any:
    from aeon.classification.shapelet_based import ShapeletTransformClassifier

    return ShapeletTransformClassifier(
        n_shapelet_samples=32, max_shapelets=32, max_shapelet_length=128,
        estimator=_ridge(), random_state=seed, n_jobs=n_jobs,
    )


def _rdst(seed: int, n_jobs: int) -> Any:
    from aeon.classification.shapelet_based import RDSTClassifier

    return RDSTClassifier(max_shapelets=1000, estimator=_ridge(), random_state=seed, n_jobs=n_jobs)


def _minirocket(seed: int, n_jobs: int) -> Any:
    from aeon.classification.convolution_based import MiniRocketClassifier

    return MiniRocketClassifier(n_kernels=10000, estimator=_ridge(), random_state=seed, n_jobs=n_jobs)


def _multirocket(seed: int, n_jobs: int) -> Any:
    from aeon.classification.convolution_based import MultiRocketClassifier

    return MultiRocketClassifier(n_kernels=10000, estimator=_ridge(), random_state=seed, n_jobs=n_jobs)


def _tsf(seed: int, n_jobs: int) -> Any:
    from aeon.classification.interval_based import TimeSeriesForestClassifier

    # mean, standard deviation and slope of random intervals, 200 trees (needs no soft dependency,
    # unlike QUANT (torch) or RSTSF (statsmodels))
    return TimeSeriesForestClassifier(n_estimators=200, random_state=seed, n_jobs=n_jobs)


def _weasel2(seed: int, n_jobs: int) -> Any:
    from aeon.classification.dictionary_based import WEASEL_V2

    return WEASEL_V2(random_state=seed, n_jobs=n_jobs)


MODEL_KINDS: dict[str, Kind] = {
    "shapelet-seed": Kind("shapelet", 1, _shapelet_seed,
                          "the seed's ShapeletTransformClassifier: 32 sampled shapelets up to 128 samples, ridge"),
    "rdst": Kind("shapelet", 4, _rdst, "RDST: 1,000 random dilated shapelets, ridge (input downsampled x4)"),
    "minirocket": Kind("convolution", 4, _minirocket,
                       "MiniRocket: 10,000 kernels, ridge (input downsampled x4)"),
    "multirocket": Kind("convolution", 4, _multirocket,
                        "MultiRocket: 10,000 kernels, 4 pooling operators, ridge (input downsampled x4)"),
    "tsf": Kind("interval", 4, _tsf,
                "Time Series Forest: mean/std/slope of random intervals, 200 trees (input downsampled x4)"),
    "weasel2": Kind("dictionary", 4, _weasel2,
                    "WEASEL 2.0: dilated SFA words, ridge; hard votes (input downsampled x4)"),
}


def build_estimator(kind: str, seed: int = 0, n_jobs: int = 1) -> Pipeline:
    """A fresh, unfitted estimator of ``kind``: ``[Downsample] -> aeon classifier``.

    The result is an sklearn Pipeline, so ``classes_``, ``predict_proba`` and joblib
    persistence behave the same for every kind.
    """
    try:
        spec = MODEL_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {', '.join(sorted(MODEL_KINDS))}") from None
    return Pipeline([("downsample", Downsample(spec.downsample)), ("classifier", spec.build(seed, n_jobs))])


def describe_estimator(estimator: Any) -> dict[str, Any]:
    """Plain-JSON description of a (fitted or not) estimator for the model card."""
    if isinstance(estimator, Pipeline):
        return {name: describe_estimator(step) for name, step in estimator.steps}
    params = estimator.get_params(deep=False) if hasattr(estimator, "get_params") else {}
    return {"class": f"{type(estimator).__module__}.{type(estimator).__qualname__}",
            **{k: _plain(v) for k, v in params.items()}}


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return repr(value)
