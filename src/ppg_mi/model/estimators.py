"""The aeon estimators ppg-mi can train, by name (``PPG_MI_MODEL_KIND``).

Every estimator receives preprocessed recordings (band-passed, z-scored) as a 3-D array
(n_records, 1 channel, n_samples) and string labels; see docs/model.md for the comparison.
"""

from __future__ import annotations

from typing import Any, Callable

from sklearn.base import BaseEstimator, ClassifierMixin


def _rdst(seed: int, n_jobs: int) -> Any:
    from aeon.classification.shapelet_based import RDSTClassifier

    return RDSTClassifier(max_shapelets=1000, random_state=seed, n_jobs=n_jobs)


def _shapelet_seed(seed: int, n_jobs: int) -> Any:
    # The seed project's configuration: 32 sampled shapelets up to 128 samples, over a Ridge classifier.
    from aeon.classification.shapelet_based import ShapeletTransformClassifier
    from sklearn.linear_model import RidgeClassifierCV

    return ShapeletTransformClassifier(
        n_shapelet_samples=32, max_shapelets=32, max_shapelet_length=128,
        estimator=RidgeClassifierCV(), random_state=seed, n_jobs=n_jobs,
    )


def _minirocket(seed: int, n_jobs: int) -> Any:
    from aeon.classification.convolution_based import MiniRocketClassifier

    return MiniRocketClassifier(n_kernels=10000, random_state=seed, n_jobs=n_jobs)


MODEL_KINDS: dict[str, Callable[[int, int], Any]] = {
    "rdst": _rdst,
    "shapelet-seed": _shapelet_seed,
    "minirocket": _minirocket,
}


def build_estimator(kind: str, seed: int = 0, n_jobs: int = 1) -> BaseEstimator | ClassifierMixin:
    """A fresh, unfitted estimator of ``kind``."""
    try:
        factory = MODEL_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {', '.join(sorted(MODEL_KINDS))}") from None
    return factory(seed, n_jobs)
