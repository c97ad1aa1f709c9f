"""Datasets: the Kaggle CSV layout and the synthetic PPG generator."""

from .kaggle import Dataset, DatasetError, RowError, read_csv, write_csv
from .synthetic import SyntheticConfig, generate

__all__ = ["Dataset", "DatasetError", "RowError", "SyntheticConfig", "generate", "read_csv", "write_csv"]
