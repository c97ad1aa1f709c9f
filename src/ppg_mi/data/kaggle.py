"""Reader and writer of the Kaggle "Photoplethysmography (PPG) Dataset" layout.

One recording per row, one column per sample, a ``Label`` column holding ``Normal`` or
``MI`` (absent for unlabelled data) and possibly a leading ``Unnamed: 0`` index column.
Rows that cannot be used are reported as :class:`RowError` with their line number; the
reader never invents or silently drops a row.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

LABEL_COLUMN = "Label"
INDEX_COLUMNS = ("Unnamed: 0", "")
VALID_LABELS = ("Normal", "MI")


class DatasetError(ValueError):
    """The file cannot be read as a dataset at all (missing, empty, no sample columns)."""


@dataclass(frozen=True)
class RowError:
    line: int
    reason: str
    detail: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}: {self.detail}"


@dataclass
class Dataset:
    """Valid recordings of one file, in file order, and the rows that were refused."""

    record_ids: list[str]
    samples: np.ndarray  # (n_records, n_samples) float32
    labels: list[str | None]
    errors: list[RowError] = field(default_factory=list)
    source: str = ""

    def __len__(self) -> int:
        return len(self.record_ids)

    @property
    def labelled(self) -> bool:
        return bool(self.labels) and all(label is not None for label in self.labels)

    def label_array(self) -> np.ndarray:
        return np.array(self.labels, dtype=object)

    def subset(self, index: Iterable[int]) -> "Dataset":
        idx = list(index)
        return Dataset(
            [self.record_ids[i] for i in idx],
            self.samples[idx],
            [self.labels[i] for i in idx],
            [],
            self.source,
        )

    def shard(self, index: int, count: int) -> "Dataset":
        """Records whose position modulo ``count`` is ``index``: N shards split the file exactly."""
        if not 0 <= index < count:
            raise ValueError(f"shard {index}/{count}: need 0 <= i < N")
        return self.subset(range(index, len(self), count))


def read_csv(path: str | Path, expected_samples: int | None = None, id_prefix: str | None = None) -> Dataset:
    """Read a CSV in the Kaggle layout.

    Parameters
    ----------
    path : file to read.
    expected_samples : the number of sample columns every row must have; ``None`` takes
        the header's count.
    id_prefix : prefix of record ids; defaults to the file's stem.  A record id is
        ``<prefix>-<index>`` where index is the ``Unnamed: 0`` value when present, else the
        data row's number: the same file always yields the same ids.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    prefix = id_prefix if id_prefix is not None else path.stem
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise DatasetError(f"{path}: the file is empty") from None
        index_col = 0 if header and header[0] in INDEX_COLUMNS else None
        label_col = header.index(LABEL_COLUMN) if LABEL_COLUMN in header else None
        sample_cols = [i for i in range(len(header)) if i not in (index_col, label_col)]
        if not sample_cols:
            raise DatasetError(f"{path}: the header has no sample columns")
        n = expected_samples if expected_samples is not None else len(sample_cols)
        ids: list[str] = []
        labels: list[str | None] = []
        rows: list[np.ndarray] = []
        errors: list[RowError] = []
        for line_no, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                errors.append(RowError(line_no, "empty_row", "no values"))
                continue
            if len(row) != len(header):
                errors.append(RowError(line_no, "wrong_length", f"{len(row)} fields, header has {len(header)}"))
                continue
            values = [row[i] for i in sample_cols]
            if len(values) != n:
                errors.append(RowError(line_no, "wrong_length", f"{len(values)} samples, expected {n}"))
                continue
            try:
                samples = np.array(values, dtype=np.float64)
            except ValueError:
                bad = next(v for v in values if not _is_float(v))
                errors.append(RowError(line_no, "non_numeric", f"value {bad[:40]!r}"))
                continue
            if not np.isfinite(samples).all():
                errors.append(RowError(line_no, "non_finite", "NaN or infinite sample"))
                continue
            label: str | None = None
            if label_col is not None:
                label = row[label_col].strip()
                if label not in VALID_LABELS:
                    errors.append(RowError(line_no, "unknown_label", f"{label[:40]!r} is not Normal or MI"))
                    continue
            index = row[index_col].strip() if index_col is not None else str(line_no - 2)
            ids.append(f"{prefix}-{index}")
            labels.append(label)
            rows.append(samples.astype(np.float32))
    matrix = np.vstack(rows) if rows else np.empty((0, n), dtype=np.float32)
    duplicates = len(ids) - len(set(ids))
    if duplicates:
        raise DatasetError(f"{path}: {duplicates} duplicate record ids in the index column")
    return Dataset(ids, matrix, labels, errors, str(path))


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def write_csv(dataset: Dataset, path: str | Path, index: bool = True) -> None:
    """Write ``dataset`` in the Kaggle layout (with an ``Unnamed: 0`` column when ``index``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = dataset.samples.shape[1]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        header = ([""] if index else []) + [str(i) for i in range(n)]
        if dataset.labelled:
            header.append(LABEL_COLUMN)
        writer.writerow(header)
        for i, (rid, label) in enumerate(zip(dataset.record_ids, dataset.labels)):
            row = [str(i)] if index else []
            row.extend(f"{v:.6g}" for v in dataset.samples[i])
            if dataset.labelled:
                row.append(label)
            writer.writerow(row)


def report_errors(errors: list[RowError], stream=sys.stderr, limit: int = 20) -> None:
    for err in errors[:limit]:
        print(f"  {err}", file=stream)
    if len(errors) > limit:
        print(f"  ... and {len(errors) - limit} more", file=stream)


__all__ = ["Dataset", "DatasetError", "RowError", "read_csv", "write_csv", "report_errors"]
