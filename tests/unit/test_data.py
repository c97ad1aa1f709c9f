from pathlib import Path

import numpy as np
import pytest

from ppg_mi.data import DatasetError, SyntheticConfig, generate, read_csv, write_csv
from ppg_mi.signal import BandPass, preprocess_batch


def test_synthetic_is_seeded_and_balanced() -> None:
    a = generate(SyntheticConfig(records=20, seed=3))
    b = generate(SyntheticConfig(records=20, seed=3))
    c = generate(SyntheticConfig(records=20, seed=4))
    np.testing.assert_array_equal(a.samples, b.samples)
    assert not np.array_equal(a.samples, c.samples)
    assert a.labels.count("MI") == 10 and a.labels.count("Normal") == 10
    assert a.samples.shape == (20, 2000) and a.samples.dtype == np.float32


def _dominant_rate_bpm(x: np.ndarray, fs: float) -> float:
    spectrum = np.abs(np.fft.rfft(x))
    freqs = np.fft.rfftfreq(x.size, 1 / fs)
    band = (freqs > 0.6) & (freqs < 3.5)
    return float(freqs[band][spectrum[band].argmax()] * 60)


def test_synthetic_classes_differ_in_heart_rate_at_low_difficulty() -> None:
    ds = generate(SyntheticConfig(records=80, difficulty=0.0, seed=1))
    x = preprocess_batch(ds.samples, BandPass())
    rates = np.array([_dominant_rate_bpm(r, 125.0) for r in x])
    labels = np.array(ds.labels)
    assert rates[labels == "MI"].mean() > rates[labels == "Normal"].mean() + 8


def test_csv_round_trip_in_kaggle_layout(tmp_path: Path) -> None:
    ds = generate(SyntheticConfig(records=6, samples=300, seed=2))
    path = tmp_path / "ppg.csv"
    write_csv(ds, path)
    header = path.read_text().splitlines()[0].split(",")
    assert header[0] == "" and header[-1] == "Label" and len(header) == 302
    back = read_csv(path)
    assert back.labels == ds.labels
    assert back.record_ids == [f"ppg-{i}" for i in range(6)]
    np.testing.assert_allclose(back.samples, ds.samples, rtol=1e-5)


def test_invalid_rows_are_reported_with_line_numbers(tmp_path: Path) -> None:
    rows = [
        "Unnamed: 0,0,1,2,3,Label",
        "0,1,2,3,4,Normal",
        "1,1,2,3,MI",  # too few fields
        "2,1,x,3,4,MI",  # non-numeric
        "3,1,nan,3,4,MI",  # NaN
        "4,1,2,3,inf,Normal",  # inf
        "5,1,2,3,4,Maybe",  # unknown label
        "",  # empty line: csv skips nothing silently
        "6,4,3,2,1,MI",
    ]
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(rows) + "\n")
    ds = read_csv(path)
    assert ds.record_ids == ["bad-0", "bad-6"]
    reasons = {(e.line, e.reason) for e in ds.errors}
    assert reasons == {(3, "wrong_length"), (4, "non_numeric"), (5, "non_finite"), (6, "non_finite"),
                       (7, "unknown_label"), (8, "empty_row")}
    assert len(ds) + len(ds.errors) == len(rows) - 1  # nothing dropped silently


def test_unlabelled_csv_is_read_without_labels(tmp_path: Path) -> None:
    path = tmp_path / "u.csv"
    path.write_text("0,1,2\n1,2,3\n4,5,6\n")
    ds = read_csv(path)
    assert len(ds) == 2 and ds.labels == [None, None] and not ds.labelled


def test_expected_sample_count_is_enforced(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    path.write_text("0,1,2,Label\n1,2,3,MI\n")
    ds = read_csv(path, expected_samples=2000)
    assert len(ds) == 0 and ds.errors[0].reason == "wrong_length"


def test_missing_or_empty_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file"):
        read_csv(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DatasetError, match="empty"):
        read_csv(tmp_path / "empty.csv")


def test_shards_split_a_dataset_exactly() -> None:
    ds = generate(SyntheticConfig(records=10, samples=100, seed=0))
    parts = [ds.shard(i, 3) for i in range(3)]
    ids = [rid for p in parts for rid in p.record_ids]
    assert sorted(ids) == sorted(ds.record_ids) and len(ids) == len(set(ids))
