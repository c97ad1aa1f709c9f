"""The aeon estimators ppg-mi can train, by name (``PPG_MI_MODEL_KIND``).

Every estimator receives the filter's output (band-passed, z-scored recordings) as a 3-D
array (n_records, 1 channel, n_samples) and string labels.  An estimator may reduce its
input internally (:class:`Downsample`): that step is part of the fitted estimator and of
its card's ``params``, never of the filter's contract.  A kind's down-sampling factor is
stated for recordings at :data:`REFERENCE_RATE_HZ` and scaled to the rate the estimator is
built for, so every rate reaches the classifier at about the same rate (x4 is ~31 Hz, x8
~16 Hz, both above twice the filter's 8 Hz edge).  See docs/model.md for the
comparison that chose the default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.linear_model import LogisticRegression, RidgeClassifierCV
from sklearn.model_selection import StratifiedKFold
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


class Derivatives(TransformerMixin, BaseEstimator):
    """Append the first ``order`` derivatives of each recording as extra channels.

    A PPG's first and second derivatives (velocity "VPG" and acceleration "APG"
    plethysmograms) are what clinicians read for the upstroke and the reflected wave, the
    cues of arterial stiffness; a convolution kernel on the recording alone sees them only
    through its fixed weights.  Each derivative (``np.gradient``, central differences, same
    length) is z-scored per recording so the channels carry comparable weight in the
    multivariate kernels, which sum over the channels they draw.  Applied after
    :class:`Downsample`, so the differences are over the reduced rate, where the band-pass
    has already removed the noise differentiation would amplify.
    """

    def __init__(self, order: int = 2) -> None:
        self.order = order

    def fit(self, X: np.ndarray, y: Any = None) -> "Derivatives":  # noqa: N803
        if int(self.order) not in (0, 1, 2):
            raise ValueError(f"derivative order must be 0, 1 or 2, got {self.order}")
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        x = np.asarray(X, dtype=np.float32)
        channels = [x]
        d = x
        for _ in range(int(self.order)):
            d = np.gradient(d, axis=-1)
            channels.append(_zscore(d))
        return np.concatenate(channels, axis=1) if len(channels) > 1 else x


def rocket_transformer(family: str) -> type:
    """aeon's MiniRocket or MultiRocket transformer class, by convolution family name."""
    from aeon.transformations.collection.convolution_based import MiniRocket, MultiRocket

    return MiniRocket if family == "minirocket" else MultiRocket


class ChannelwiseRocket(TransformerMixin, BaseEstimator):
    """One univariate MiniRocket/MultiRocket transform per channel, features concatenated.

    aeon's multivariate MiniRocket draws channel combinations per kernel and runs about 4x
    slower per record than the univariate path for the same kernel count on this machine;
    transforming each channel on its own keeps the univariate speed: ``n_kernels`` is split
    evenly over the channels, so the cost stays that of ``n_kernels`` univariate kernels.
    Each channel's biases are fitted on that channel's training data.
    """

    def __init__(self, family: str = "minirocket", n_kernels: int = 1000, random_state: int = 0,
                 n_jobs: int = 1) -> None:
        self.family = family
        self.n_kernels = n_kernels
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X: np.ndarray, y: Any = None) -> "ChannelwiseRocket":  # noqa: N803
        cls = rocket_transformer(self.family)
        x = np.asarray(X, dtype=np.float32)
        per_channel = max(84, int(self.n_kernels) // x.shape[1])  # MiniRocket's kernels come in 84s
        self.transformers_ = [cls(n_kernels=per_channel, n_jobs=self.n_jobs, random_state=self.random_state + c)
                              .fit(x[:, c:c + 1, :]) for c in range(x.shape[1])]
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        x = np.asarray(X, dtype=np.float32)
        from .nogil import minirocket_features

        return np.hstack([minirocket_features(t, x[:, c:c + 1, :]) for c, t in enumerate(self.transformers_)])


def _zscore(x: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    std = x.std(axis=-1, keepdims=True)
    return ((x - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)


def _ridge(select: int | None = None, scale: bool = True) -> Pipeline:
    """Standardise (unless the features come scaled), optionally keep the ``select`` features of
    highest ANOVA F, then the ridge.

    Selecting features fitted on the training split only (inside the pipeline) shrinks the
    ridge and its cross-validation; the kernels' transform, the bulk of inference, is unchanged.
    """
    steps: list[Any] = [StandardScaler()] if scale else []
    if select:
        steps.append(SelectKBest(f_classif, k=select))
    steps.append(ScoredRidgeClassifierCV(alphas=np.logspace(-3, 3, 10)))
    return make_pipeline(*steps)


#: the sampling rate a kind's down-sampling factor is stated for
REFERENCE_RATE_HZ = 125.0


def downsample_factor(factor_at_reference: int, sampling_rate_hz: float | None) -> int:
    """The factor that brings ``sampling_rate_hz`` to the rate ``factor_at_reference`` gives at 125 Hz.

    A factor of 1 means "no down-sampling" at every rate; ``None`` (rate unknown) keeps the factor.
    """
    if factor_at_reference <= 1 or sampling_rate_hz is None:
        return int(factor_at_reference)
    return max(1, int(round(factor_at_reference * sampling_rate_hz / REFERENCE_RATE_HZ)))


@dataclass(frozen=True)
class Kind:
    """One trainable configuration: its family, a factory and a one-line description.

    ``downsample`` is the factor at :data:`REFERENCE_RATE_HZ` (see :func:`downsample_factor`).
    """

    family: str
    downsample: int
    build: Callable[[int, int], Any]
    description: str
    #: derivatives appended as channels (:class:`Derivatives`): 0 none, 1 VPG, 2 VPG and APG
    derivatives: int = 0
    #: beat-to-beat rhythm features beside the kernels' (:class:`ppg_mi.model.rhythm.RocketWithRhythm`)
    rhythm: bool = False
    #: Hydra's (kernels per group, groups per dilation) (:mod:`ppg_mi.model.hydra`), alone or beside the others
    hydra: tuple[int, int] | None = None


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


#: aeon's rocket transforms (:func:`rocket_transformer`)
ROCKET_FAMILIES = ("minirocket", "multirocket")
#: the convolution families searched by training/compare.py; Hydra is ppg-mi's numba version
#: (:mod:`ppg_mi.model.hydra`): aeon's needs torch, which is not installed
CONVOLUTION_FAMILIES = (*ROCKET_FAMILIES, "hydra")


def convolution_kind(family: str, n_kernels: int, downsample: int, select: int | None = None,
                     derivatives: int = 0, rhythm: bool = False, hydra: tuple[int, int] | None = None) -> Kind:
    """A MiniRocket, MultiRocket or Hydra configuration: kernel count, down-sampling, optional feature
    selection, optionally the recording's first (and second) derivative as extra channels, or
    beat-to-beat rhythm features beside the kernels' features.

    ``hydra`` is Hydra's (kernels per group, groups per dilation): with family ``"hydra"`` (and
    ``n_kernels`` 0) Hydra alone, with a rocket family Hydra's features beside the rocket's (the
    paper's MultiRocket + Hydra combination), one ridge over both.
    """
    if family not in CONVOLUTION_FAMILIES:
        raise ValueError(f"unknown convolution family {family!r}; choose one of {CONVOLUTION_FAMILIES}")
    if family == "hydra" and (hydra is None or n_kernels):
        raise ValueError("a hydra kind takes hydra=(kernels per group, groups) and no rocket kernels")
    if hydra is not None and (int(hydra[0]) < 2 or int(hydra[1]) < 1):
        raise ValueError(f"Hydra needs >= 2 kernels a group and >= 1 group, got {hydra[0]}x{hydra[1]}")
    if rhythm and derivatives:
        raise ValueError("rhythm features and derivative channels are separate candidates: choose one")
    if hydra and derivatives:
        raise ValueError("Hydra features and derivative channels are separate candidates: choose one")

    def build(seed: int, n_jobs: int) -> Any:
        from aeon.classification.convolution_based import MiniRocketClassifier, MultiRocketClassifier

        from .hydra import HydraTransform, HydraWithRocket, SparseScaler
        from .rhythm import RocketWithRhythm

        if hydra is not None:  # each block comes scaled as its own reference scales it: no StandardScaler
            if family == "hydra" and not rhythm:
                return make_pipeline(HydraTransform(hydra[0], hydra[1], seed, n_jobs), SparseScaler(),
                                     _ridge(select, scale=False))
            rocket = "minirocket" if family == "hydra" else family
            return make_pipeline(HydraWithRocket(rocket, n_kernels, hydra[0], hydra[1], rhythm, random_state=seed,
                                                 n_jobs=n_jobs), _ridge(select, scale=False))
        if rhythm:  # build_estimator sets the rate this step sees
            return make_pipeline(RocketWithRhythm(family, n_kernels, random_state=seed, n_jobs=n_jobs), _ridge(select))
        if derivatives:  # the Derivatives step before it makes the input multi-channel
            return make_pipeline(ChannelwiseRocket(family, n_kernels, seed, n_jobs), _ridge(select))
        cls = MiniRocketClassifier if family == "minirocket" else MultiRocketClassifier
        return cls(n_kernels=n_kernels, estimator=_ridge(select), random_state=seed, n_jobs=n_jobs)

    label = {"minirocket": "MiniRocket", "multirocket": "MultiRocket", "hydra": "Hydra"}[family]
    selected = f", best {select:,} features by ANOVA F" if select else ""
    if derivatives not in (0, 1, 2):
        raise ValueError(f"derivatives must be 0, 1 or 2, got {derivatives}")
    # what ChannelwiseRocket keeps: MiniRocket rounds each channel's share down to a multiple of 84
    share = max(84, n_kernels // (1 + derivatives)) // 84 * 84
    channels = {0: "",
                1: f" split over the recording and its first derivative (VPG), one transform per channel "
                   f"(2 x {share} after MiniRocket's rounding to 84s)",
                2: f" split over the recording and its first and second derivatives (VPG, APG), one transform "
                   f"per channel (3 x {share} after MiniRocket's rounding to 84s)"}
    beats = (" and beat-to-beat rhythm features (heart rate, interval variability, irregular beats, "
             "amplitude modulation)") if rhythm else ""
    if hydra is None:
        what = f"{label}: {n_kernels:,} kernels{channels[derivatives]}{beats}{selected}, ridge"
    else:
        counts = (f"Hydra: {hydra[1]} groups of {hydra[0]} competing kernels per dilation (half on the recording, "
                  f"half on its first difference; max and min counts, square-rooted and sparse-scaled)")
        if family == "hydra":
            what = f"{counts}{beats}{selected}, ridge"
        else:
            what = (f"{label}: {n_kernels:,} kernels, beside {counts}{beats}, each block scaled on the training "
                    f"set{selected}, one ridge")
    return Kind("convolution", downsample, build, f"{what} (input downsampled x{downsample})", derivatives, rhythm,
                None if hydra is None else (int(hydra[0]), int(hydra[1])))


def hydra_kind(n_kernels: int, n_groups: int, downsample: int, select: int | None = None,
               rhythm: bool = False) -> Kind:
    """Hydra alone: ``n_groups`` groups of ``n_kernels`` kernels per dilation (:func:`convolution_kind`)."""
    return convolution_kind("hydra", 0, downsample, select, rhythm=rhythm, hydra=(n_kernels, n_groups))


def convolution_kind_name(family: str, n_kernels: int, downsample: int, select: int | None = None,
                          derivatives: int = 0, rhythm: bool = False, hydra: tuple[int, int] | None = None) -> str:
    """The name :func:`convolution_kind`'s configuration goes by, e.g. ``minirocket-1000-ds4-d2-sel500``,
    ``hydra-8x64-ds4`` (8 kernels a group, 64 groups) or ``minirocket-1000-ds4-hydra-8x32-rhy``."""
    hydra_part = f"hydra-{hydra[0]}x{hydra[1]}" if hydra is not None else ""
    head = f"{hydra_part}-ds{downsample}" if family == "hydra" else f"{family}-{n_kernels}-ds{downsample}"
    return (head + (f"-d{derivatives}" if derivatives else "")
            + (f"-{hydra_part}" if hydra_part and family != "hydra" else "")
            + ("-rhy" if rhythm else "") + (f"-sel{select}" if select else ""))


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
    # the search's winners (docs/model.md): chosen by training/compare.py's rule over all its conditions
    "minirocket-1000-ds4": convolution_kind("minirocket", 1000, 4),
    "minirocket-1000-ds8": convolution_kind("minirocket", 1000, 8),
    "minirocket-1000-ds4-d2": convolution_kind("minirocket", 1000, 4, derivatives=2),
    "minirocket-1000-ds4-rhy": convolution_kind("minirocket", 1000, 4, rhythm=True),
    "minirocket-1000-ds8-hydra-8x16-rhy": convolution_kind("minirocket", 1000, 8, rhythm=True, hydra=(8, 16)),
    "hydra-8x16-ds4": hydra_kind(8, 16, 4),
}


_CONVOLUTION_NAME = re.compile(
    r"^(minirocket|multirocket)-(\d+)-ds(\d+)(?:-d([12]))?(?:-hydra-(\d+)x(\d+))?(-rhy)?(?:-sel(\d+))?$")
_HYDRA_NAME = re.compile(r"^hydra-(\d+)x(\d+)-ds(\d+)(-rhy)?(?:-sel(\d+))?$")


def resolve_kind(kind: str) -> Kind:
    """A named kind of :data:`MODEL_KINDS`, or a searched convolution configuration by its
    :func:`convolution_kind_name` (so any row of the comparison can be trained by name)."""
    if kind in MODEL_KINDS:
        return MODEL_KINDS[kind]
    m = _CONVOLUTION_NAME.match(kind)
    if m and int(m.group(2)) > 0 and int(m.group(3)) > 0:
        hydra = (int(m.group(5)), int(m.group(6))) if m.group(5) else None
        return convolution_kind(m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(8)) if m.group(8) else None,
                                int(m.group(4)) if m.group(4) else 0, bool(m.group(7)), hydra)
    m = _HYDRA_NAME.match(kind)
    if m and int(m.group(3)) > 0:
        return hydra_kind(int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(5)) if m.group(5) else None,
                          bool(m.group(4)))
    raise ValueError(f"unknown model kind {kind!r}; choose one of {', '.join(sorted(MODEL_KINDS))} "
                     "or FAMILY-KERNELS-dsFACTOR[-dN|-hydra-KxG][-rhy][-selK] with FAMILY minirocket or multirocket, "
                     "N 1 or 2, or hydra-KxG-dsFACTOR[-rhy][-selK] (K kernels a group, G groups a dilation)")


def build_estimator(kind: str, seed: int = 0, n_jobs: int = 1, sampling_rate_hz: float | None = None) -> Pipeline:
    """A fresh, unfitted estimator of ``kind``: ``Downsample -> [Derivatives] -> aeon classifier``.

    ``sampling_rate_hz`` is the rate of the recordings it will see (the card's); the kind's
    down-sampling factor is scaled to it.  The result is an sklearn Pipeline, so ``classes_``,
    ``predict_proba`` and joblib persistence behave the same for every kind.
    """
    spec = resolve_kind(kind)
    factor = downsample_factor(spec.downsample, sampling_rate_hz)
    steps: list[tuple[str, Any]] = [("downsample", Downsample(factor))]
    if spec.derivatives:  # only kinds that use it get the step, so older checkpoints' pipelines stay as they were
        steps.append(("derivatives", Derivatives(spec.derivatives)))
    classifier = spec.build(seed, n_jobs)
    if spec.rhythm:  # intervals in seconds at the rate the down-sampled input has
        for _, step in classifier.steps:
            if "sampling_rate_hz" in step.get_params(deep=False):
                step.set_params(sampling_rate_hz=(sampling_rate_hz or REFERENCE_RATE_HZ) / factor)
    return Pipeline([*steps, ("classifier", classifier)])


def threshold_for_sensitivity(mi_probability: np.ndarray, is_mi: np.ndarray, target: float) -> float:
    """The highest threshold at which predicting MI for ``p >= threshold`` reaches ``target`` sensitivity."""
    positives = np.sort(np.asarray(mi_probability, dtype=float)[np.asarray(is_mi, dtype=bool)])
    if positives.size == 0:
        raise ValueError("choosing a threshold needs MI recordings")
    # at most floor((1 - target) * n) MI recordings may fall below the threshold
    missed = int(np.floor((1.0 - target) * positives.size + 1e-9))
    return float(positives[missed])


class OperatingPoint(ClassifierMixin, BaseEstimator):
    """A classifier whose MI score is a calibrated probability and whose decision is a threshold on it.

    ``fit`` scores every training recording with a copy of ``estimator`` fitted on the
    other ``folds - 1`` folds (out-of-fold, i.e. held-out scores), fits Platt scaling (a
    logistic regression on the score's log-odds) to those scores, chooses ``threshold_`` on
    the calibrated held-out probabilities as the highest one reaching ``target_sensitivity``,
    and finally fits ``estimator`` on all the data.  This is what sklearn's
    ``CalibratedClassifierCV(method="sigmoid", ensemble=False)`` does, with the held-out
    probabilities kept so that the threshold is chosen on validation data too.  Inference
    costs one estimator plus a scalar logistic function.

    ``predict_proba`` returns the calibrated probabilities (argmax = a 0.5 threshold);
    ``predict`` applies ``threshold_``.  ``validation_`` holds the held-out Brier score,
    calibration error, sensitivity and specificity at the threshold.
    """

    def __init__(self, estimator: Any = None, target_sensitivity: float = 0.95, folds: int = 5,
                 positive: str = "MI", random_state: int = 0) -> None:
        self.estimator = estimator
        self.target_sensitivity = target_sensitivity
        self.folds = folds
        self.positive = positive
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: Any) -> "OperatingPoint":  # noqa: N803
        from .metrics import calibration_metrics

        labels = np.asarray(y, dtype=object)
        is_mi = labels == self.positive
        folds = int(min(self.folds, is_mi.sum(), (~is_mi).sum()))
        if folds < 2 or not 0.0 < self.target_sensitivity <= 1.0:
            raise ValueError(f"need >= 2 recordings of each class and 0 < target_sensitivity <= 1 "
                             f"(folds {folds}, target {self.target_sensitivity})")
        held_out = np.empty(len(labels))
        for train_idx, test_idx in StratifiedKFold(folds, shuffle=True,
                                                   random_state=self.random_state).split(X, labels):
            fold_model = clone(self.estimator).fit(X[train_idx], labels[train_idx])
            held_out[test_idx] = self._score(fold_model, X[test_idx])
        self.calibrator_ = LogisticRegression(C=1e4).fit(_log_odds(held_out), is_mi)
        calibrated = self.calibrator_.predict_proba(_log_odds(held_out))[:, 1]
        self.threshold_ = threshold_for_sensitivity(calibrated, is_mi, self.target_sensitivity)
        predicted = calibrated >= self.threshold_
        self.validation_ = {
            "folds": folds,
            **calibration_metrics(is_mi, calibrated),
            "sensitivity_mi": float(predicted[is_mi].mean()),
            "specificity": float((~predicted[~is_mi]).mean()),
        }
        self.estimator_ = clone(self.estimator).fit(X, labels)
        self.classes_ = np.asarray(self.estimator_.classes_, dtype=object)
        return self

    def _score(self, model: Any, X: np.ndarray) -> np.ndarray:  # noqa: N803
        classes = [str(c) for c in model.classes_]
        return np.asarray(model.predict_proba(X))[:, classes.index(self.positive)]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        p = self.calibrator_.predict_proba(_log_odds(self._score(self.estimator_, X)))[:, 1]
        return np.column_stack([p if str(c) == self.positive else 1.0 - p for c in self.classes_])

    def predict(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        p = self.predict_proba(X)[:, [str(c) for c in self.classes_].index(self.positive)]
        negative = next(c for c in self.classes_ if str(c) != self.positive)
        return np.where(p >= self.threshold_, self.positive, negative).astype(object)


def _log_odds(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(q / (1 - q))[:, np.newaxis]


def describe_estimator(estimator: Any) -> dict[str, Any]:
    """Plain-JSON description of a (fitted or not) estimator for the model card."""
    if isinstance(estimator, Pipeline):
        return {name: describe_estimator(step) for name, step in estimator.steps}
    if isinstance(estimator, OperatingPoint):
        fitted = hasattr(estimator, "threshold_")
        return {
            "class": f"{type(estimator).__module__}.{type(estimator).__qualname__}",
            "calibration": "Platt scaling fitted on out-of-fold scores",
            "target_sensitivity": estimator.target_sensitivity,
            "folds": estimator.folds,
            "threshold": estimator.threshold_ if fitted else None,
            "validation": estimator.validation_ if fitted else None,
            "estimator": describe_estimator(estimator.estimator),
        }
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
