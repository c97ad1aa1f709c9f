"""Hydra (Dempster, Schmidt and Webb 2023, "HYDRA: competing convolutional kernels for fast and
accurate time series classification"), written with numba for the ``hydra-*`` model kinds.

aeon's Hydra is written in torch, which ppg-mi does not install (its wheel pulls gigabytes of
CUDA libraries into the image).  This module computes the same transform with numba, as
:mod:`ppg_mi.model.rhythm` does for its beat search.

Hydra draws random kernels of 9 weights from N(0, 1), each shifted to zero mean and scaled to
unit L1 norm, in ``n_groups`` groups of ``n_kernels`` per dilation (dilations 2**0 ..
2**floor(log2((L - 1) / 8)) for recordings of L samples).  Half the groups see the recording,
half its first difference.  At every time point the kernels of a group compete: the one with
the largest response adds that response to its count ("soft" max count) and the one with the
smallest adds 1 ("hard" min count).  The counts of all kernels are the features; like the
authors' reference, every convolution is zero-padded by (9 - 1) * d // 2 on each side, so the
output has the input's length.  :class:`SparseScaler` then prepares the counts for the ridge
as the reference does (square root of the non-negative counts, standardised on the training
set, zero counts kept at zero).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from numba import njit, prange
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.preprocessing import StandardScaler

from .nogil import minirocket_features
from .threads import numba_threads

#: the kernels' length (weights), as in the paper
KERNEL_LENGTH = 9


def hydra_dilations(input_length: int) -> np.ndarray:
    """Dilations 2**0 .. 2**floor(log2((input_length - 1) / 8)): the widest kernel spans the recording."""
    if input_length < 2:
        raise ValueError(f"Hydra needs recordings of at least 2 samples, got {input_length}")
    exponent = max(0, int(np.floor(np.log2((input_length - 1) / (KERNEL_LENGTH - 1)))))
    return (2 ** np.arange(exponent + 1)).astype(np.int64)


def representations(n_groups: int) -> int:
    """How many series the groups are split over: the recording and its first difference, or only
    the recording when there is a single group."""
    return min(2, int(n_groups))


def hydra_feature_count(n_kernels: int, n_groups: int, input_length: int) -> int:
    """Features of :class:`HydraTransform`: a max and a min count per kernel, per group, per dilation."""
    per_representation = int(n_groups) // representations(n_groups)
    return hydra_dilations(input_length).size * representations(n_groups) * per_representation * int(n_kernels) * 2


def hydra_kernels(n_kernels: int, n_groups: int, n_dilations: int, seed: int) -> np.ndarray:
    """Random kernels, shape (dilations, representations, groups per representation * n_kernels, 9):
    drawn from N(0, 1), zero mean, unit L1 norm; the same ``seed`` gives the same kernels."""
    divisor = representations(n_groups)
    weights = np.random.default_rng(seed).standard_normal(
        (n_dilations, divisor, (int(n_groups) // divisor) * int(n_kernels), KERNEL_LENGTH))
    weights -= weights.mean(axis=-1, keepdims=True)
    weights /= np.abs(weights).sum(axis=-1, keepdims=True)
    return weights


@njit(cache=True)
def _compete(padded: np.ndarray, w: np.ndarray, dilation: int, m: int, first: bool, index: float,
             best_value: np.ndarray, best: np.ndarray, worst_value: np.ndarray, worst: np.ndarray) -> None:
    """One kernel's response ``sum_i w[i] * padded[t + i * dilation]`` for ``t < m``, entered into the
    group's competition: where it beats the best (worst) so far, it and ``index`` replace them; the
    ``first`` kernel of a group starts both.

    The nine taps are nine slices of the padded series indexed by the loop variable alone, so
    LLVM vectorises the loop (the convolution alone 2-3x faster here than accumulating tap by
    tap, 5x faster than a sum with the taps' offsets in the index).
    """
    d = dilation
    s0, s1, s2 = padded[0:m], padded[d:d + m], padded[2 * d:2 * d + m]
    s3, s4, s5 = padded[3 * d:3 * d + m], padded[4 * d:4 * d + m], padded[5 * d:5 * d + m]
    s6, s7, s8 = padded[6 * d:6 * d + m], padded[7 * d:7 * d + m], padded[8 * d:8 * d + m]
    w0, w1, w2, w3, w4, w5, w6, w7, w8 = w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8]
    if first:
        for t in range(m):
            value = (w0 * s0[t] + w1 * s1[t] + w2 * s2[t] + w3 * s3[t] + w4 * s4[t] + w5 * s5[t] + w6 * s6[t]
                     + w7 * s7[t] + w8 * s8[t])
            best_value[t] = value
            worst_value[t] = value
            best[t] = index
            worst[t] = index
        return
    for t in range(m):
        value = (w0 * s0[t] + w1 * s1[t] + w2 * s2[t] + w3 * s3[t] + w4 * s4[t] + w5 * s5[t] + w6 * s6[t]
                 + w7 * s7[t] + w8 * s8[t])
        # max/min of loaded values and strict comparisons (the first of equal kernels wins, as
        # argmax): written so, the loop vectorises (twice as fast as selecting on array elements)
        old_best = best_value[t]
        old_worst = worst_value[t]
        best_value[t] = max(value, old_best)
        best[t] = index if value > old_best else best[t]
        worst_value[t] = min(value, old_worst)
        worst[t] = index if value < old_worst else worst[t]


@njit(cache=True)
def _record_counts(row: np.ndarray, weights: np.ndarray, dilations: np.ndarray, n_kernels: int,
                   out: np.ndarray) -> None:
    """Hydra's counts of one recording into ``out`` (zeros, one per feature): over dilations,
    representations (the recording, then its first difference) and groups."""
    length = row.size
    n_dilations, divisor, per_representation, taps = weights.shape
    groups = per_representation // n_kernels
    widest = (taps - 1) * dilations[-1]
    # the series' precision throughout the competition (counts are summed in ``out``'s): float32
    # vectorises twice as wide; kernel indices as floats, one element width in the loop
    padded = np.zeros(length + widest, dtype=row.dtype)
    best_value = np.empty(length, dtype=row.dtype)
    worst_value = np.empty(length, dtype=row.dtype)
    best = np.empty(length, dtype=row.dtype)
    worst = np.empty(length, dtype=row.dtype)
    column = 0
    for di in range(n_dilations):
        dilation = dilations[di]
        padding = (taps - 1) * dilation // 2
        for rep in range(divisor):
            # the series zero-padded on both sides, shared by the dilation's kernels
            m = length if rep == 0 else length - 1
            padded[:] = 0.0
            for t in range(m):
                padded[padding + t] = row[t] if rep == 0 else row[t + 1] - row[t]
            for g in range(groups):
                for j in range(n_kernels):
                    _compete(padded, weights[di, rep, g * n_kernels + j], dilation, m, j == 0, float(j),
                             best_value, best, worst_value, worst)
                max_base = column + g * n_kernels
                min_base = column + groups * n_kernels + g * n_kernels
                for t in range(m):
                    out[max_base + int(best[t])] += best_value[t]
                    out[min_base + int(worst[t])] += 1.0
            column += 2 * groups * n_kernels


@njit(cache=True, parallel=True, nogil=True)
def hydra_counts(x: np.ndarray, weights: np.ndarray, dilations: np.ndarray, n_kernels: int,
                 out: np.ndarray) -> None:
    """Hydra's counts of every recording (rows of ``x``) into ``out`` (zeros, rows x features), the
    recordings spread over numba's threads (``numba.set_num_threads``; one in training and selection).

    Feature order, per dilation and representation (the recording, then its first difference): the
    max counts of every group's kernels, then their min counts.  Written for kernels of
    :data:`KERNEL_LENGTH` (9) weights; computes in ``x``'s precision.
    """
    for r in prange(x.shape[0]):
        _record_counts(x[r], weights, dilations, n_kernels, out[r])


class HydraTransform(TransformerMixin, BaseEstimator):
    """Hydra's kernel counts of univariate recordings (3-D input: recordings, 1 channel, samples).

    The responses are computed in float32, as aeon's MiniRocket computes its own (1.6x as fast as
    float64 here; the filter's output is float32 already); the counts are summed in float64.
    :func:`hydra_counts` computes in the precision of the arrays it is given.

    Parameters
    ----------
    n_kernels : int, default=8
        Kernels per group (the paper's ``k``).
    n_groups : int, default=64
        Groups per dilation (the paper's ``g``); half see the recording, half its first difference.
    random_state : int, default=0
        Seed of the kernels' weights; the same seed gives the same features.
    n_jobs : int, default=1
        Threads of the transform (the recordings of a batch spread over them); below 1, one per CPU.
        Like aeon's transforms, it is resolved into ``_n_jobs`` when fitted, which the transform reads
        (so ``ppg_mi.model.threads.set_transform_threads`` can change it on a loaded model).

    Attributes
    ----------
    dilations_ : ndarray of int64
        The dilations, from the training recordings' length.
    weights_ : ndarray of float64
        The kernels, shape (dilations, representations, groups per representation * n_kernels, 9).
    """

    def __init__(self, n_kernels: int = 8, n_groups: int = 64, random_state: int = 0, n_jobs: int = 1) -> None:
        self.n_kernels = n_kernels
        self.n_groups = n_groups
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X: np.ndarray, y: Any = None) -> "HydraTransform":  # noqa: N803
        """Draw the kernels for the training recordings' length.

        Parameters
        ----------
        X : ndarray of shape (n_records, 1, n_samples)
        y : ignored

        Returns
        -------
        HydraTransform
        """
        if int(self.n_kernels) < 2 or int(self.n_groups) < 1:
            raise ValueError(f"Hydra needs >= 2 kernels a group and >= 1 group, got {self.n_kernels}x{self.n_groups}")
        x = _univariate(X)
        self.dilations_ = hydra_dilations(x.shape[-1])
        self.weights_ = hydra_kernels(self.n_kernels, self.n_groups, self.dilations_.size, int(self.random_state))
        self._n_jobs = int(self.n_jobs) if int(self.n_jobs) >= 1 else (os.cpu_count() or 1)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        """The counts.

        Parameters
        ----------
        X : ndarray of shape (n_records, 1, n_samples)

        Returns
        -------
        ndarray of shape (n_records, n_features), float64
            ``n_features`` is :func:`hydra_feature_count` of the parameters and the fitted length.
        """
        x = _univariate(X, np.float32)
        d, divisor, per_representation, _ = self.weights_.shape
        out = np.zeros((x.shape[0], d * divisor * per_representation * 2))
        with numba_threads(getattr(self, "_n_jobs", 1)):
            hydra_counts(x, self.weights_.astype(np.float32), self.dilations_, int(self.n_kernels), out)
        return out


def _univariate(X: np.ndarray, dtype: type = np.float64) -> np.ndarray:  # noqa: N803
    x = np.asarray(X, dtype=dtype)
    if x.ndim == 3:
        if x.shape[1] != 1:
            raise ValueError(f"Hydra here is univariate: got {x.shape[1]} channels")
        x = x[:, 0, :]
    if x.ndim != 2:
        raise ValueError(f"expected (records, 1, samples) or (records, samples), got shape {x.shape}")
    return np.ascontiguousarray(x)


class SparseScaler(TransformerMixin, BaseEstimator):
    """Hydra's counts made ready for a ridge, as the authors' reference does.

    Square root of the counts clipped at 0, then per feature the training mean subtracted and
    divided by the training standard deviation plus ``p0 ** exponent`` (``p0`` the feature's
    share of zero counts), which damps features that are almost always zero; with ``mask``
    a zero count stays exactly 0.

    Parameters
    ----------
    mask : bool, default=True
        Keep zero counts at zero after scaling.
    exponent : float, default=4
        Exponent of the zero share added to the standard deviation.
    """

    def __init__(self, mask: bool = True, exponent: float = 4) -> None:
        self.mask = mask
        self.exponent = exponent

    def fit(self, X: np.ndarray, y: Any = None) -> "SparseScaler":  # noqa: N803
        """Training mean and scale of the square-rooted counts.

        Parameters
        ----------
        X : ndarray of shape (n_records, n_features)
        y : ignored

        Returns
        -------
        SparseScaler
        """
        root = np.sqrt(np.clip(np.asarray(X, dtype=np.float64), 0.0, None))
        zero_share = (root == 0).mean(axis=0)
        self.mean_ = root.mean(axis=0)
        # the unbiased standard deviation, as torch's std the reference uses
        self.scale_ = root.std(axis=0, ddof=1 if root.shape[0] > 1 else 0) + zero_share ** self.exponent + 1e-8
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        """Scaled square-rooted counts.

        Parameters
        ----------
        X : ndarray of shape (n_records, n_features)

        Returns
        -------
        ndarray of shape (n_records, n_features)
        """
        root = np.sqrt(np.clip(np.asarray(X, dtype=np.float64), 0.0, None))
        centred = root - self.mean_
        if self.mask:
            centred = centred * (root != 0)
        return centred / self.scale_


class HydraWithRocket(TransformerMixin, BaseEstimator):
    """Hydra's scaled counts beside MiniRocket/MultiRocket features and/or beat-to-beat rhythm features.

    MultiRocket + Hydra is the paper's strongest combination: each transform's features are
    scaled on the training set as its own reference does (rocket features and rhythm features
    standardised, Hydra's counts by :class:`SparseScaler`) and concatenated for one ridge.

    Parameters
    ----------
    family : str, default="minirocket"
        ``"minirocket"`` or ``"multirocket"`` (aeon's transformers).
    n_kernels : int, default=1000
        The rocket transform's kernels; 0 leaves it out (Hydra and rhythm features only).
    hydra_kernels : int, default=8
        Hydra's kernels per group.
    hydra_groups : int, default=32
        Hydra's groups per dilation.
    rhythm : bool, default=True
        Append :data:`ppg_mi.model.rhythm.FEATURES`.
    sampling_rate_hz : float, default=31.25
        Rate of the input this step sees (after the kind's down-sampling), for the rhythm features.
    random_state : int, default=0
        Seed of both transforms' kernels.
    n_jobs : int, default=1
        Threads of the rocket and the Hydra transforms.
    """

    def __init__(self, family: str = "minirocket", n_kernels: int = 1000, hydra_kernels: int = 8,
                 hydra_groups: int = 32, rhythm: bool = True, sampling_rate_hz: float = 31.25,
                 random_state: int = 0, n_jobs: int = 1) -> None:
        self.family = family
        self.n_kernels = n_kernels
        self.hydra_kernels = hydra_kernels
        self.hydra_groups = hydra_groups
        self.rhythm = rhythm
        self.sampling_rate_hz = sampling_rate_hz
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X: np.ndarray, y: Any = None) -> "HydraWithRocket":  # noqa: N803
        """Fit the transforms and each block's scaler on the training recordings.

        Parameters
        ----------
        X : ndarray of shape (n_records, 1, n_samples)
        y : ignored

        Returns
        -------
        HydraWithRocket
        """
        from .estimators import rocket_transformer

        x = np.asarray(X, dtype=np.float32)
        self.rocket_ = None
        if int(self.n_kernels) > 0:
            self.rocket_ = rocket_transformer(self.family)(n_kernels=int(self.n_kernels), n_jobs=self.n_jobs,
                                                          random_state=self.random_state).fit(x)
        self.hydra_ = HydraTransform(self.hydra_kernels, self.hydra_groups, self.random_state, self.n_jobs).fit(x)
        rocket, hydra, rhythm = self._blocks(x)
        self.rocket_scaler_ = StandardScaler().fit(rocket) if rocket is not None else None
        self.hydra_scaler_ = SparseScaler().fit(hydra)
        self.rhythm_scaler_ = StandardScaler().fit(rhythm) if rhythm is not None else None
        return self

    def _blocks(self, x: np.ndarray) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
        from .rhythm import rhythm_feature_matrix

        rocket = np.asarray(minirocket_features(self.rocket_, x), dtype=np.float64) if self.rocket_ is not None else None
        hydra = self.hydra_.transform(x)
        rhythm = (rhythm_feature_matrix(x[:, 0, :], float(self.sampling_rate_hz), getattr(self.hydra_, "_n_jobs", 1))
                  if self.rhythm else None)
        return rocket, hydra, rhythm

    def transform(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        """The scaled blocks side by side: rocket features, Hydra's counts, rhythm features.

        Parameters
        ----------
        X : ndarray of shape (n_records, 1, n_samples)

        Returns
        -------
        ndarray of shape (n_records, n_features), float32
        """
        rocket, hydra, rhythm = self._blocks(np.asarray(X, dtype=np.float32))
        blocks = [self.hydra_scaler_.transform(hydra)]
        if rocket is not None:
            blocks.insert(0, self.rocket_scaler_.transform(rocket))
        if rhythm is not None:
            blocks.append(self.rhythm_scaler_.transform(rhythm))
        return np.hstack(blocks).astype(np.float32)
