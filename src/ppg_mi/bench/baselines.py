"""Code as it was before a performance fix, kept to measure before and after in the same run.

Each function here is the replaced implementation, verbatim in behaviour; the benchmark
swaps it in for one measurement and restores the current one.  Nothing else uses them.
"""

from __future__ import annotations

import numpy as np

from ..signal.filters import FLAT_STD, InvalidSignal


def validate_samples_before(samples: np.ndarray, expected_length: int | None = None) -> None:
    """``ppg_mi.signal.validate_samples`` before the min/max fast path: isfinite() and std() of every record."""
    if samples.ndim != 1:
        raise InvalidSignal("bad_shape", f"expected one channel, got shape {samples.shape}")
    if expected_length is not None and samples.size != expected_length:
        raise InvalidSignal("wrong_length", f"{samples.size} samples, expected {expected_length}")
    if samples.size < 64:
        raise InvalidSignal("too_short", f"{samples.size} samples is too short to filter")
    if not np.isfinite(samples).all():
        raise InvalidSignal("non_finite", "NaN or infinite samples")
    if float(np.std(samples)) < FLAT_STD:
        raise InvalidSignal("constant_signal", "the recording is flat: no pulse to analyse")
