"""Beat-to-beat rhythm features of a PPG recording, for the ``-rhy`` model kinds.

A convolution kernel sees the shape of a few pulses; what happens from beat to beat over the
whole recording (heart rate, its variability, ectopic beats, the pulse amplitude's breathing
modulation) reaches MiniRocket's features only indirectly.  Reduced heart-rate variability
and a higher resting heart rate are long-known markers after a myocardial infarction, so
these are measured directly and given to the ridge beside the kernels' features.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange
from sklearn.base import BaseEstimator, TransformerMixin

from .estimators import rocket_transformer
from .nogil import minirocket_features
from .threads import numba_threads

#: plausible beat periods (s): 200 to 40 beats a minute
SHORTEST_PERIOD_S = 0.3
LONGEST_PERIOD_S = 1.5

FEATURES = (
    "beats_per_minute",  # 60 / median inter-beat interval
    "interval_cv",  # standard deviation / mean of the intervals (SDNN, relative)
    "successive_difference_rms",  # RMSSD / mean interval
    "irregular_fraction",  # intervals more than 20 % away from the median (ectopic beats, missed beats)
    "amplitude_cv",  # standard deviation / mean of the beats' peak-to-trough heights (breathing modulation)
    "regularity",  # autocorrelation at the dominant period (1: perfectly periodic)
    "beat_found",  # 1 when at least three beats were found, else every other feature is 0
)


def rhythm_features(x: np.ndarray, fs: float) -> np.ndarray:
    """:data:`FEATURES` of one recording ``x`` sampled at ``fs`` Hz (zeros when under three beats)."""
    return rhythm_feature_matrix(np.asarray(x, dtype=np.float64)[np.newaxis, :], fs)[0]


def rhythm_feature_matrix(x: np.ndarray, fs: float, threads: int = 1) -> np.ndarray:
    """:data:`FEATURES` of each row of ``x`` (recordings sampled at ``fs`` Hz), the rows spread
    over ``threads`` of numba's threads (the classifier's, :func:`~ppg_mi.model.threads.set_transform_threads`)."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    out = np.zeros((x.shape[0], len(FEATURES)))
    n = x.shape[-1]
    lo, hi = max(1, int(SHORTEST_PERIOD_S * fs)), min(n - 1, int(np.ceil(LONGEST_PERIOD_S * fs)))
    if hi > lo:
        with numba_threads(threads):
            _rhythm_rows(x, lo, hi, float(fs), SHORTEST_PERIOD_S, LONGEST_PERIOD_S, out)
    return out


@njit(cache=True, parallel=True, nogil=True)
def _rhythm_rows(x: np.ndarray, lo: int, hi: int, fs: float, shortest_s: float, longest_s: float,
                 out: np.ndarray) -> None:
    """Each row's dominant beat period (the lag in ``lo..hi`` samples of its highest
    autocorrelation) and then its beat features, into ``out``; rows in a ``prange``.

    The autocorrelation is summed directly over the plausible lags only (about 40 at the
    classifier's 31 Hz): cheaper than a whole FFT of twice the recording, and free of numpy's
    serial calls between the parallel parts (docs/model.md)."""
    n = x.shape[1]
    for r in prange(x.shape[0]):
        row = x[r]
        centred = row - row.mean()
        energy = (centred * centred).sum()
        if energy <= 0:  # flat: no period, every feature 0
            continue
        # lags innermost: independent sums the compiler vectorises, in the order a lag-by-lag sum adds
        acf = np.zeros(hi - lo + 1)
        for i in range(n - lo):
            ci = centred[i]
            for k in range(min(hi, n - 1 - i) - lo + 1):
                acf[k] += ci * centred[i + lo + k]
        k = np.argmax(acf)
        period, regularity = lo + k, acf[k] / energy
        _beat_features(row, float(period), regularity, np.sqrt(energy / n), fs, shortest_s, longest_s, out[r])


@njit(cache=True)
def beat_peaks(row: np.ndarray, distance: int, min_prominence: float) -> tuple[np.ndarray, np.ndarray]:
    """Peaks of ``row`` and their prominences as ``scipy.signal.find_peaks(row, distance=...,
    prominence=...)`` finds them (local maxima, a plateau's middle; the higher of two closer than
    ``distance`` wins; then those standing ``min_prominence`` above the higher of their two bases).
    In numba: scipy's, called once per recording, cost more than the kernels' transform."""
    n = row.size
    maxima = np.empty(n, np.int64)
    k = 0
    j = 1
    while j < n - 1:
        if row[j] > row[j - 1]:
            ahead = j + 1
            while ahead < n - 1 and row[ahead] == row[j]:
                ahead += 1
            if row[ahead] < row[j]:
                maxima[k] = (j + ahead - 1) // 2
                k += 1
                j = ahead
        j += 1
    maxima = maxima[:k]
    keep = np.ones(k, np.bool_)
    if distance > 1:
        order = np.argsort(row[maxima], kind="mergesort")[::-1]
        for o in order:
            if not keep[o]:
                continue
            left = o - 1
            while left >= 0 and maxima[o] - maxima[left] < distance:
                keep[left] = False
                left -= 1
            right = o + 1
            while right < k and maxima[right] - maxima[o] < distance:
                keep[right] = False
                right += 1
    peaks = maxima[keep]
    prominences = np.empty(peaks.size)
    for c in range(peaks.size):
        p = peaks[c]
        height = row[p]
        left_min = height
        i = p - 1
        while i >= 0 and row[i] <= height:
            left_min = min(left_min, row[i])
            i -= 1
        right_min = height
        i = p + 1
        while i < n and row[i] <= height:
            right_min = min(right_min, row[i])
            i += 1
        prominences[c] = height - max(left_min, right_min)
    chosen = prominences >= min_prominence
    return peaks[chosen], prominences[chosen]


@njit(cache=True)
def _beat_features(row: np.ndarray, period: float, regularity: float, scale: float, fs: float,
                   shortest_s: float, longest_s: float, out: np.ndarray) -> None:
    """:data:`FEATURES` of ``row`` into ``out`` (left at 0 when fewer than three beats are found)."""
    # a beat's diastolic wave comes within about half a period of its peak: closer peaks are not beats
    peaks, heights = beat_peaks(row, max(1, int(0.6 * period)), 0.3 * scale)
    if peaks.size < 3:
        return
    # peak positions to a fraction of a sample (a parabola through each peak and its neighbours):
    # at the classifier's reduced rate (about 31 Hz) a whole sample is 32 ms, coarser than the
    # variability measured
    times = np.empty(peaks.size)
    for c in range(peaks.size):
        p = peaks[c]
        shift = 0.0
        if 0 < p < row.size - 1:
            curvature = row[p - 1] - 2 * row[p] + row[p + 1]
            if curvature < 0:
                shift = min(0.5, max(-0.5, 0.5 * (row[p - 1] - row[p + 1]) / curvature))
        times[c] = (p + shift) / fs
    intervals = np.diff(times)
    mean = intervals.mean()
    median = np.median(intervals)
    if not shortest_s <= median <= longest_s:  # noise, not a pulse
        return
    out[0] = 60.0 / median
    out[1] = intervals.std() / mean
    out[2] = np.sqrt(np.mean(np.diff(intervals) ** 2)) / mean
    out[3] = np.mean(np.abs(intervals - median) > 0.2 * median)
    out[4] = heights.std() / heights.mean()
    out[5] = regularity
    out[6] = 1.0


class RocketWithRhythm(TransformerMixin, BaseEstimator):
    """A univariate MiniRocket/MultiRocket transform with :data:`FEATURES` appended.

    ``sampling_rate_hz`` is the rate of the input this step sees (after the kind's
    down-sampling); it converts intervals to seconds, so the features mean the same at every
    recording rate the kind's factor is scaled for.
    """

    def __init__(self, family: str = "minirocket", n_kernels: int = 1000, sampling_rate_hz: float = 31.25,
                 random_state: int = 0, n_jobs: int = 1) -> None:
        self.family = family
        self.n_kernels = n_kernels
        self.sampling_rate_hz = sampling_rate_hz
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X: np.ndarray, y: Any = None) -> "RocketWithRhythm":  # noqa: N803
        self.rocket_ = rocket_transformer(self.family)(n_kernels=self.n_kernels, n_jobs=self.n_jobs, random_state=self.random_state)
        self.rocket_.fit(np.asarray(X, dtype=np.float32))
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        x = np.asarray(X, dtype=np.float32)
        kernels = minirocket_features(self.rocket_, x)
        rhythm = rhythm_feature_matrix(x[:, 0, :], float(self.sampling_rate_hz), getattr(self.rocket_, "_n_jobs", 1))
        rhythm = rhythm.astype(np.float32)
        return np.hstack([kernels, rhythm])
