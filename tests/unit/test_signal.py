import numpy as np
import pytest

from ppg_mi.signal import BandPass, InvalidSignal, preprocess, preprocess_batch, validate_samples


def _tone(freq_hz: float, fs: float = 125.0, n: int = 2000) -> np.ndarray:
    t = np.arange(n) / fs
    return np.sin(2 * np.pi * freq_hz * t)


def test_band_pass_keeps_the_pulse_and_removes_wander_and_noise() -> None:
    band = BandPass()
    pulse, wander, noise = _tone(1.2), _tone(0.05), _tone(30.0)
    out = preprocess_batch(np.vstack([pulse + 5 * wander + noise]), band)[0]
    # correlation with the pulse alone is near one once wander and noise are gone
    assert np.corrcoef(out, pulse)[0, 1] > 0.98


def test_output_is_z_scored_float32() -> None:
    out = preprocess(_tone(1.0) * 300 + 500, BandPass())
    assert out.dtype == np.float32
    assert abs(float(out.mean())) < 1e-3
    assert float(out.std()) == pytest.approx(1.0, abs=1e-3)


def test_batch_equals_row_by_row() -> None:
    rng = np.random.default_rng(0)
    batch = rng.standard_normal((5, 2000)).astype(np.float32)
    rows = np.vstack([preprocess(r, BandPass()) for r in batch])
    np.testing.assert_allclose(preprocess_batch(batch, BandPass()), rows, rtol=1e-5, atol=1e-5)


def test_a_batch_longer_than_a_chunk_equals_row_by_row() -> None:
    """Rows are filtered PREPROCESS_CHUNK_ROWS per call: every chunk, the last partial one too, row for row."""
    from ppg_mi.signal.filters import PREPROCESS_CHUNK_ROWS

    rng = np.random.default_rng(1)
    batch = rng.standard_normal((2 * PREPROCESS_CHUNK_ROWS + 3, 2000)).astype(np.float32)
    rows = np.vstack([preprocess(r, BandPass()) for r in batch])
    np.testing.assert_array_equal(preprocess_batch(batch, BandPass()), rows)


@pytest.mark.parametrize(
    "samples, reason",
    [
        (np.full(2000, 3.0), "constant_signal"),
        (np.r_[np.ones(1999), np.nan], "non_finite"),
        (np.r_[np.ones(1999), np.inf], "non_finite"),
        (np.ones(10), "too_short"),
        (np.ones((2, 1000)), "bad_shape"),
    ],
)
def test_invalid_signals_are_refused_with_a_reason(samples, reason) -> None:
    with pytest.raises(InvalidSignal) as err:
        validate_samples(np.asarray(samples))
    assert err.value.reason == reason


def test_wrong_length_is_refused() -> None:
    with pytest.raises(InvalidSignal) as err:
        validate_samples(_tone(1.0), expected_length=1000)
    assert err.value.reason == "wrong_length"
