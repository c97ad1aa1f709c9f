"""Digital signal processing of PPG recordings: no Kafka here."""

from .filters import BandPass, InvalidSignal, preprocess, preprocess_batch, validate_samples
from .resample import conform, fit_to_length, resample, resampling_factors

__all__ = ["BandPass", "InvalidSignal", "conform", "fit_to_length", "preprocess", "preprocess_batch", "resample",
           "resampling_factors", "validate_samples"]
