"""Bring a filtered recording to the sampling rate and length a model was trained for.

A model sees time only as sample index: a recording at 250 Hz given to a model trained at
125 Hz looks like a pulse twice as slow.  The classifier therefore resamples every recording
whose rate (carried in its message) differs from its model's, then fits it to the model's
input length, which is fixed (aeon's classifiers refuse another length than they were fitted on).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import scipy.signal as sps

from .filters import FLAT_STD, InvalidSignal

#: largest numerator or denominator of the up/down factor: resample_poly's filter grows with it, and a
#: rate that needs more is not one of a real sensor's (125.5 -> 125 Hz is 250/251, fine)
MAX_RESAMPLING_TERM = 1000
#: the ratio of small integers must equal the rates' ratio within this relative error (a rate travels as
#: float32, whose rounding is up to 6e-8 relative)
RATE_RATIO_TOLERANCE = 1e-7
#: a resampled recording shorter than this share of the model's window is refused, not repeated
MIN_WINDOW_COVERAGE = 0.5


def resampling_factors(from_hz: float, to_hz: float) -> tuple[int, int]:
    """``(up, down)`` with ``up / down == to_hz / from_hz`` in lowest terms, each at most
    :data:`MAX_RESAMPLING_TERM`; :class:`InvalidSignal` (``bad_sampling_rate``) when there is none."""
    if not (math.isfinite(from_hz) and math.isfinite(to_hz) and from_hz > 0 and to_hz > 0):
        raise InvalidSignal("bad_sampling_rate", f"cannot resample {from_hz} Hz to {to_hz} Hz")
    ratio = to_hz / from_hz
    fraction = Fraction(ratio).limit_denominator(MAX_RESAMPLING_TERM)
    if fraction.numerator > MAX_RESAMPLING_TERM or abs(float(fraction) - ratio) > RATE_RATIO_TOLERANCE * ratio:
        raise InvalidSignal("bad_sampling_rate",
                            f"cannot resample {from_hz:g} Hz to the model's {to_hz:g} Hz: their ratio is no fraction "
                            f"of integers up to {MAX_RESAMPLING_TERM}")
    return fraction.numerator, fraction.denominator


def resample(samples: np.ndarray, from_hz: float, to_hz: float) -> np.ndarray:
    """``samples`` taken at ``from_hz`` resampled to ``to_hz`` (polyphase, scipy's ``resample_poly``
    with its Kaiser-windowed anti-alias filter), as float32; about ``len * to_hz / from_hz`` samples."""
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 1:
        raise InvalidSignal("bad_shape", f"expected one channel, got shape {x.shape}")
    up, down = resampling_factors(from_hz, to_hz)
    if up == down:
        return x.astype(np.float32)
    return sps.resample_poly(x, up, down).astype(np.float32)


def fit_to_length(samples: np.ndarray, length: int) -> np.ndarray:
    """``samples`` cut or repeated to exactly ``length`` samples, z-scored again.

    Longer: the middle ``length`` samples (a recording at a lower rate covers more time than the
    model's window).  Shorter, down to :data:`MIN_WINDOW_COVERAGE` of it: repeated end to end (a
    recording at a higher rate covers less time; the model's features are statistics over time, which
    repeating a stretch of pulses keeps, unlike zero padding).  Shorter still: :class:`InvalidSignal`
    (``bad_sampling_rate``), since most of what the model would see would be copies.
    """
    x = np.asarray(samples, dtype=np.float64)
    n = x.size
    if n < MIN_WINDOW_COVERAGE * length:
        raise InvalidSignal("bad_sampling_rate",
                            f"{n} samples at the model's rate, less than {MIN_WINDOW_COVERAGE:.0%} of its "
                            f"{length}-sample window")
    if n >= length:
        start = (n - length) // 2
        x = x[start:start + length]
    else:
        x = np.resize(x, length)               # repeats x end to end
    std = x.std()
    return ((x - x.mean()) / (std if std >= FLAT_STD else 1.0)).astype(np.float32)


def conform(samples: np.ndarray, from_hz: float, to_hz: float, length: int) -> np.ndarray:
    """A filtered recording at ``from_hz`` as the model trained at ``to_hz`` on ``length`` samples expects it."""
    return fit_to_length(resample(samples, from_hz, to_hz), length)


__all__ = ["MAX_RESAMPLING_TERM", "MIN_WINDOW_COVERAGE", "conform", "fit_to_length", "resample",
           "resampling_factors"]
