"""The band-pass filter and normalisation shared by the filter service and training.

Why this filter: a PPG pulse repeats at the heart rate (0.7–3 Hz, 40–180 bpm) and its
shape, the systolic peak and dicrotic notch that differ after an infarction, lives in the
first few harmonics, up to about 8 Hz.  Below 0.5 Hz sit baseline wander, respiration
and vasomotion; above 8 Hz sit sensor and mains-related noise.  A 4th-order Butterworth
band-pass (maximally flat, so it does not ripple the pulse amplitude) in second-order
sections (numerically stable at low cut-offs relative to the sampling rate, where the
transfer-function form loses precision) applied forward and backward (``sosfiltfilt``:
zero phase, so the notch does not shift against the peak) suits whole recordings.
Each recording is then z-scored so that the classifier sees shape, not sensor gain.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
from scipy import signal as sps

#: a recording whose standard deviation is below this carries no pulse
FLAT_STD = 1e-6


class InvalidSignal(ValueError):
    """A recording that cannot be filtered; ``reason`` is a stable token."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class BandPass:
    """Parameters of the preprocessing; part of every model card."""

    sampling_rate_hz: float = 125.0
    low_hz: float = 0.5
    high_hz: float = 8.0
    order: int = 4

    def sos(self) -> np.ndarray:
        # a copy: scipy's sosfilt needs a writable array and the cached design must not change
        return _design(self.sampling_rate_hz, self.low_hz, self.high_hz, self.order).copy()

    def as_dict(self) -> dict[str, float | int | str]:
        return {"kind": "butterworth-bandpass-sosfiltfilt+zscore", **asdict(self)}

    @classmethod
    def from_settings(cls, settings: object) -> "BandPass":
        return cls(
            sampling_rate_hz=float(getattr(settings, "sampling_rate_hz")),
            low_hz=float(getattr(settings, "filter_low_hz")),
            high_hz=float(getattr(settings, "filter_high_hz")),
            order=int(getattr(settings, "filter_order")),
        )


@lru_cache(maxsize=32)
def _design(fs: float, low: float, high: float, order: int) -> np.ndarray:
    sos = sps.butter(order, [low, high], btype="bandpass", fs=fs, output="sos")
    return sos


def validate_samples(samples: np.ndarray, expected_length: int | None = None) -> None:
    """Raise :class:`InvalidSignal` for a recording no stage should process."""
    if samples.ndim != 1:
        raise InvalidSignal("bad_shape", f"expected one channel, got shape {samples.shape}")
    if expected_length is not None and samples.size != expected_length:
        raise InvalidSignal("wrong_length", f"{samples.size} samples, expected {expected_length}")
    if samples.size < 64:
        raise InvalidSignal("too_short", f"{samples.size} samples is too short to filter")
    # Two cheap reductions instead of isfinite() and std() over every record (a third of
    # the filter stage's time): min/max propagate NaN and show infinities, and any n values
    # spanning a range r have a standard deviation of at least r / sqrt(2n), so only a
    # recording whose range is tiny needs its standard deviation computed.
    lo, hi = float(samples.min()), float(samples.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InvalidSignal("non_finite", "NaN or infinite samples")
    if (hi - lo) / math.sqrt(2 * samples.size) < FLAT_STD and float(np.std(samples)) < FLAT_STD:
        raise InvalidSignal("constant_signal", "the recording is flat: no pulse to analyse")


#: rows band-passed in one vectorised call: the filter's float64 temporaries (several copies of the
#: rows, padded) are bounded by this many rows, not by the batch; a chunk's per-call overhead is
#: spread over enough rows to be lost in the work
PREPROCESS_CHUNK_ROWS = 128


def preprocess_batch(batch: np.ndarray, band: BandPass) -> np.ndarray:
    """Band-pass and z-score each row of ``batch`` (n_records × n_samples), as float32.

    Rows are filtered together, :data:`PREPROCESS_CHUNK_ROWS` per vectorised call (each row's result
    does not depend on the others); callers validate rows first.
    """
    x = np.asarray(batch)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D batch, got shape {x.shape}")
    out = np.empty(x.shape, dtype=np.float32)
    sos = band.sos()
    for start in range(0, x.shape[0], PREPROCESS_CHUNK_ROWS):
        rows = slice(start, start + PREPROCESS_CHUNK_ROWS)
        filtered = sps.sosfiltfilt(sos, np.asarray(x[rows], dtype=np.float64), axis=1)
        mean = filtered.mean(axis=1, keepdims=True)
        std = filtered.std(axis=1, keepdims=True)
        std[std < FLAT_STD] = 1.0
        filtered -= mean
        filtered /= std
        out[rows] = filtered
    return out


def preprocess(samples: np.ndarray, band: BandPass) -> np.ndarray:
    """Validate, band-pass and z-score one recording."""
    x = np.asarray(samples)
    validate_samples(x)
    return preprocess_batch(x[np.newaxis, :], band)[0]
