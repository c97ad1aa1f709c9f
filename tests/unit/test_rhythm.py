"""Beat-to-beat rhythm features (pure functions) and the ``-rhy`` model kinds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ppg_mi.data import SyntheticConfig, generate
from ppg_mi.model import load_checkpoint
from ppg_mi.model.estimators import build_estimator, resolve_kind
from ppg_mi.model.rhythm import FEATURES, RocketWithRhythm, rhythm_feature_matrix, rhythm_features
from ppg_mi.signal import BandPass, preprocess_batch
from training.train import TrainConfig, train

FS = 31.25  # the classifier's rate after x4 at 125 Hz


def _pulses(beat_times: np.ndarray, fs: float = FS, seconds: float = 64.0, amplitudes: np.ndarray | None = None,
            diastolic: float = 0.4) -> np.ndarray:
    """A PPG-like train: a systolic wave at each beat and a smaller diastolic wave 0.3 s later."""
    t = np.arange(int(seconds * fs)) / fs
    amplitudes = np.ones(beat_times.size) if amplitudes is None else amplitudes
    x = np.zeros_like(t)
    for b, a in zip(beat_times, amplitudes):
        x += a * np.exp(-0.5 * ((t - b) / 0.08) ** 2) + diastolic * a * np.exp(-0.5 * ((t - b - 0.3) / 0.1) ** 2)
    return (x - x.mean()) / x.std()


def _feature(values: np.ndarray, name: str) -> float:
    return float(values[FEATURES.index(name)])


def test_a_regular_pulse_gives_its_heart_rate_and_no_variability() -> None:
    f = rhythm_features(_pulses(np.arange(0.5, 63.5, 0.8)), FS)  # 75 beats a minute
    assert _feature(f, "beat_found") == 1.0
    # the diastolic wave is not counted as a beat, and the sub-sample peak keeps the rate exact
    assert _feature(f, "beats_per_minute") == pytest.approx(75.0, abs=0.5)
    assert _feature(f, "interval_cv") < 0.01
    assert _feature(f, "irregular_fraction") == 0.0
    assert _feature(f, "regularity") > 0.9


def test_variable_intervals_and_ectopic_beats_and_breathing_show_in_their_features() -> None:
    rng = np.random.default_rng(0)
    steady = rhythm_features(_pulses(np.arange(0.5, 63.5, 0.8)), FS)
    jittered_times = np.cumsum(rng.normal(0.8, 0.06, 78)) + 0.5
    jittered = rhythm_features(_pulses(jittered_times[jittered_times < 63.5]), FS)
    assert _feature(jittered, "interval_cv") > 0.04 > _feature(steady, "interval_cv")
    assert _feature(jittered, "successive_difference_rms") > 5 * _feature(steady, "successive_difference_rms")

    times = list(np.arange(0.5, 63.5, 0.8))
    for i in (20, 40, 60):  # three premature beats, 0.45 s after the previous one
        times[i] = times[i - 1] + 0.45
    ectopic = rhythm_features(_pulses(np.array(times)), FS)
    assert _feature(ectopic, "irregular_fraction") > 0.05

    beats = np.arange(0.5, 63.5, 0.8)
    breathing = 1 + 0.3 * np.sin(2 * np.pi * beats / 4.0)  # 15 breaths a minute modulating the pulse
    modulated = rhythm_features(_pulses(beats, amplitudes=breathing), FS)
    assert _feature(modulated, "amplitude_cv") > 0.15 > _feature(steady, "amplitude_cv")


def test_a_batch_gives_each_recording_its_own_features() -> None:
    rng = np.random.default_rng(2)
    rows = np.stack([_pulses(np.arange(0.5, 63.5, 0.8)), np.zeros(2000), _pulses(np.arange(0.3, 63.5, 0.6)),
                     rng.normal(size=2000)])
    batch = rhythm_feature_matrix(rows, FS)
    assert batch.shape == (4, len(FEATURES))
    for row, features in zip(rows, batch):
        np.testing.assert_allclose(features, rhythm_features(row, FS))
    assert _feature(batch[2], "beats_per_minute") == pytest.approx(100.0, abs=0.7)


def test_no_beats_gives_zeros_not_an_error() -> None:
    assert not rhythm_features(np.zeros(600), FS).any()
    assert not rhythm_features(np.ones(5), FS).any()
    noise = np.random.default_rng(1).normal(size=40)  # a recording shorter than two plausible beats
    assert _feature(rhythm_features(noise, FS), "beat_found") == 0.0


def test_a_rhythm_kind_by_name_sees_its_reduced_rate_and_round_trips(tmp_path: Path) -> None:
    assert "rhythm" in resolve_kind("minirocket-168-ds4-rhy").description
    with pytest.raises(ValueError, match="separate candidates"):
        resolve_kind("minirocket-168-ds4-d2-rhy")
    for rate, expected in ((125.0, 31.25), (100.0, 100.0 / 3), (250.0, 250.0 / 8)):
        est = build_estimator("minirocket-168-ds4-rhy", sampling_rate_hz=rate)
        step = est.named_steps["classifier"].steps[0][1]
        assert isinstance(step, RocketWithRhythm) and step.sampling_rate_hz == pytest.approx(expected)

    data = generate(SyntheticConfig(records=40, samples=1000, difficulty=0.2, seed=5, id_prefix="rhy"))
    path, card = train(data, BandPass(), TrainConfig(kind="minirocket-168-ds4-rhy", folds=0), tmp_path)
    loaded = load_checkpoint(path)
    x = preprocess_batch(data.samples, BandPass())
    mi = loaded.predict_proba(x)[:, loaded.classes.index("MI")]
    assert ((mi >= 0.5) == (np.asarray(data.labels) == "MI")).mean() > 0.8  # easy data: it learned something
    features = loaded.estimator.named_steps["classifier"].steps[0][1].transform(
        loaded.estimator.named_steps["downsample"].transform(x[:, np.newaxis, :]))
    assert features.shape[1] == 168 + len(FEATURES)
    assert features[:, -1].mean() > 0.9  # beats were found in nearly every synthetic recording


def test_beat_peaks_finds_what_scipys_find_peaks_finds() -> None:
    from scipy.signal import find_peaks

    from ppg_mi.model.rhythm import beat_peaks

    rng = np.random.default_rng(4)
    for trial in range(40):
        # smooth random signals with plateaus (rounded) and pulse trains with noise
        row = np.convolve(rng.normal(size=620), np.hanning(9), mode="valid")
        distance, prominence = int(rng.integers(1, 20)), float(rng.uniform(0.0, 1.0))
        if trial % 2:  # plateaus; without distance, which breaks ties between equal heights its own way
            row, distance = np.round(row, 1), 1
        expected, props = find_peaks(row, distance=distance, prominence=prominence)
        peaks, prominences = beat_peaks(row, distance, prominence)
        np.testing.assert_array_equal(peaks, expected)
        np.testing.assert_allclose(prominences, props["prominences"])


def _fft_dominant_lag(row: np.ndarray, fs: float) -> tuple[int, float]:
    """Reference: the lag of the highest autocorrelation among plausible beat periods, by FFT."""
    from ppg_mi.model.rhythm import LONGEST_PERIOD_S, SHORTEST_PERIOD_S

    n = row.size
    lo, hi = max(1, int(SHORTEST_PERIOD_S * fs)), min(n - 1, int(np.ceil(LONGEST_PERIOD_S * fs)))
    centred = row - row.mean()
    spectrum = np.fft.rfft(centred, 2 * n)
    acf = np.fft.irfft(spectrum * np.conj(spectrum))[:hi + 1]
    lag = lo + int(np.argmax(acf[lo:hi + 1]))
    return lag, float(acf[lag] / acf[0])


def test_the_direct_autocorrelation_agrees_with_an_fft_and_threads_do_not_change_features() -> None:
    from numba import get_num_threads

    rng = np.random.default_rng(9)
    for fs in (FS, 125.0, 25.0):
        seconds = 16.0
        rows = np.stack([_pulses(np.cumsum(rng.normal(period, 0.03, 40)), fs, seconds)
                         + rng.normal(0, 0.2, int(seconds * fs)) for period in rng.uniform(0.35, 1.4, 24)])
        features = rhythm_feature_matrix(rows, fs)
        for row, f in zip(rows, features):
            _, regularity = _fft_dominant_lag(row, fs)
            if _feature(f, "beat_found"):
                # the regularity is the autocorrelation at the lag chosen: the FFT's maximum
                assert _feature(f, "regularity") == pytest.approx(regularity, abs=1e-9)
        assert features[:, -1].mean() > 0.5  # most trains were found, so the check above ran
        if get_num_threads() >= 2:
            np.testing.assert_array_equal(rhythm_feature_matrix(rows, fs, threads=2), features)
