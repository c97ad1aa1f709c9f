"""Digital signal processing of PPG recordings: no Kafka here."""

from .filters import BandPass, InvalidSignal, preprocess, preprocess_batch, validate_samples

__all__ = ["BandPass", "InvalidSignal", "preprocess", "preprocess_batch", "validate_samples"]
