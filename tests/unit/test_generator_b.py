"""The second, independent generator (tests/data_generator_b.py): its layout and its independence."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from ppg_mi.data import read_csv
from ppg_mi.signal import BandPass, preprocess_batch
from tests.data_generator_b import RATES_HZ, GeneratorB, generate_b, main, write_kaggle_csv

ROOT = Path(__file__).resolve().parents[2]


def test_it_is_seeded_and_balanced() -> None:
    a, la = generate_b(GeneratorB(records=10, samples=500, seed=1))
    b, lb = generate_b(GeneratorB(records=10, samples=500, seed=1))
    c, _ = generate_b(GeneratorB(records=10, samples=500, seed=2))
    np.testing.assert_array_equal(a, b)
    assert la == lb and la.count("MI") == 5
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("rate", RATES_HZ)
def test_the_project_reads_its_csv_and_its_filter_accepts_every_rate(tmp_path: Path, rate: float) -> None:
    x, labels = generate_b(GeneratorB(records=6, samples=400, rate_hz=rate, seed=3))
    write_kaggle_csv(x, labels, tmp_path / "b.csv")
    ds = read_csv(tmp_path / "b.csv", expected_samples=400)
    assert ds.errors == [] and ds.labels == labels and ds.labelled
    np.testing.assert_allclose(ds.samples, x, atol=0.05)
    assert np.isfinite(preprocess_batch(ds.samples, BandPass(sampling_rate_hz=rate))).all()


def test_the_pulse_rate_follows_the_stated_sampling_rate() -> None:
    # the same heart rate shows at the same frequency in Hz whatever the sampling rate
    for rate in RATES_HZ:
        x, _ = generate_b(GeneratorB(records=20, samples=int(rate * 20), rate_hz=rate, seed=4))
        f = preprocess_batch(x, BandPass(sampling_rate_hz=rate))
        spectrum = np.abs(np.fft.rfft(f, axis=1)).mean(axis=0)
        freqs = np.fft.rfftfreq(f.shape[1], 1 / rate)
        band = (freqs > 0.6) & (freqs < 3.5)
        assert 0.9 < freqs[band][spectrum[band].argmax()] < 1.7, rate  # 55-100 bpm


def test_it_shares_no_code_with_the_project_and_selection_never_uses_it() -> None:
    tree = ast.parse((ROOT / "tests" / "data_generator_b.py").read_text())
    imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m.startswith("ppg_mi") for m in imported), imported
    for path in [*(ROOT / "training").rglob("*.py"), *(ROOT / "src").rglob("*.py")]:
        assert "data_generator_b" not in path.read_text(), path


def test_command_line_writes_the_kaggle_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", str(tmp_path / "b.csv"), "--records", "4", "--samples", "300", "--rate", "250"]) == 0
    header = (tmp_path / "b.csv").read_text().splitlines()[0].split(",")
    assert header[0] == "Unnamed: 0" and header[1] == "0" and header[-1] == "Label" and len(header) == 302
    assert "at 250 Hz" in capsys.readouterr().out
