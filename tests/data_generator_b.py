"""A second, independent labelled-PPG generator, for tests and held-out checks ONLY.

Model selection (``training/compare.py``) must never use this module: it exists so that a
model chosen on the project's generator (``ppg_mi.data.synthetic``) can be measured on data
it was not tuned to.  It imports nothing from ``ppg_mi`` and writes the Kaggle CSV layout
itself, so a bug shared with the project's reader or writer cannot hide.

How it differs from the project's generator:

- **Waveform**: one pulse is a function of the cardiac *phase* (0..1 per beat) made of
  three Gaussians (percussion, tidal and dicrotic waves, the classic three-wave model of
  the radial/finger pulse), stretched with each beat's length; the project's generator
  places two Gaussians in *time* around each beat.
- **Heart rate**: varies continuously (respiratory sinus arrhythmia at the breathing rate
  plus a slow random walk) and the beat phase is its integral; no discrete jitter or
  ectopic beats.
- **MI signature**: a stiffer, weaker ventricle here shows as a larger tidal wave relative
  to the percussion wave (higher augmentation index), a later and broader percussion
  wave (slower upstroke), a smaller dicrotic wave, *less* heart-rate variability and a
  smaller respiratory amplitude modulation.  Heart rate hardly differs (+4 bpm), unlike
  the project's generator where it is the strongest cue.
- **Noise**: coloured (integrated and leaked white noise), a random-walk baseline,
  respiratory baseline and amplitude modulation, occasional clipping at the ADC's top.
- **Sampling rates**: 100, 125 or 250 Hz; the CSV does not record which.

    python -m tests.data_generator_b --out b.csv --records 1600 --rate 100 --seed 1
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

RATES_HZ = (100.0, 125.0, 250.0)


@dataclass(frozen=True)
class GeneratorB:
    records: int = 200
    samples: int = 2000
    rate_hz: float = 100.0
    mi_fraction: float = 0.5
    separation: float = 0.5  # 1: class means as below; 0: identical classes
    seed: int = 0


@dataclass(frozen=True)
class _Pulse:
    """Three-wave pulse in phase units: centres, widths and amplitudes of the waves."""

    centres: tuple[float, float, float]
    widths: tuple[float, float, float]
    amplitudes: tuple[float, float, float]


# (normal, MI) means; per-recording values scatter around them
_TIDAL_RATIO = (0.45, 0.70)      # tidal / percussion amplitude
_PERCUSSION_CENTRE = (0.14, 0.17)
_PERCUSSION_WIDTH = (0.045, 0.060)
_DICROTIC_RATIO = (0.30, 0.18)
_RSA_BPM = (5.0, 2.0)            # respiratory sinus arrhythmia amplitude
_AM_DEPTH = (0.10, 0.04)         # respiratory amplitude modulation depth
_HR_BPM = (74.0, 78.0)


def _between(pair: tuple[float, float], is_mi: bool, separation: float) -> float:
    normal, mi = pair
    centre = (normal + mi) / 2
    return centre + ((mi if is_mi else normal) - centre) * separation


def _pulse(rng: np.random.Generator, is_mi: bool, s: float) -> _Pulse:
    pc = rng.normal(_between(_PERCUSSION_CENTRE, is_mi, s), 0.012)
    pw = abs(rng.normal(_between(_PERCUSSION_WIDTH, is_mi, s), 0.008)) + 0.02
    tidal = max(rng.normal(_between(_TIDAL_RATIO, is_mi, s), 0.10), 0.05)
    dicrotic = max(rng.normal(_between(_DICROTIC_RATIO, is_mi, s), 0.06), 0.0)
    return _Pulse(centres=(pc, pc + rng.normal(0.17, 0.02), pc + rng.normal(0.36, 0.03)),
                  widths=(pw, pw * rng.uniform(1.3, 1.8), rng.uniform(0.05, 0.08)),
                  amplitudes=(1.0, tidal, dicrotic))


def _waveform(phase: np.ndarray, pulse: _Pulse) -> np.ndarray:
    """The pulse at each sample's phase within its beat (and the tail of the previous beat)."""
    frac = phase % 1.0
    out = np.zeros_like(frac)
    for c, w, a in zip(pulse.centres, pulse.widths, pulse.amplitudes):
        for shift in (0.0, 1.0):  # a late wave of the previous beat spills into this one
            out += a * np.exp(-0.5 * ((frac + shift - c) / w) ** 2)
    return out


def _coloured_noise(rng: np.random.Generator, n: int, leak: float, scale: float) -> np.ndarray:
    # a leaky integrator of white noise: low frequencies dominate, as in real sensor drift
    return lfilter([1.0], [1.0, -leak], rng.normal(0.0, scale, n))


def recording(rng: np.random.Generator, cfg: GeneratorB, is_mi: bool) -> np.ndarray:
    s = float(np.clip(cfg.separation, 0.0, 1.0))
    n, fs = cfg.samples, cfg.rate_hz
    t = np.arange(n) / fs
    breathing_hz = rng.uniform(0.15, 0.4)
    breath = np.sin(2 * np.pi * breathing_hz * t + rng.uniform(0, 2 * np.pi))
    hr = (rng.normal(_between(_HR_BPM, is_mi, s), 9.0)
          + rng.normal(_between(_RSA_BPM, is_mi, s), 0.8) * breath
          + np.cumsum(rng.normal(0.0, 0.15, n)) / np.sqrt(fs))
    hr = np.clip(hr, 45.0, 150.0)
    phase = np.cumsum(hr / 60.0 / fs) + rng.uniform(0, 1)
    pulse = _pulse(rng, is_mi, s)
    am = 1.0 + max(rng.normal(_between(_AM_DEPTH, is_mi, s), 0.02), 0.0) * breath
    x = am * _waveform(phase, pulse)
    x += 0.15 * breath + _coloured_noise(rng, n, 0.995, 0.004 * np.sqrt(125.0 / fs))
    x += rng.normal(0.0, rng.uniform(0.01, 0.06), n)
    counts = rng.uniform(1500, 2500) + rng.uniform(300, 900) * x
    return np.minimum(counts, rng.uniform(3000, 4200)).round(1)  # the ADC's ceiling clips some peaks


def generate_b(cfg: GeneratorB) -> tuple[np.ndarray, list[str]]:
    """(records × samples) array and labels; the same config gives the same data."""
    if cfg.rate_hz not in RATES_HZ:
        raise ValueError(f"rate {cfg.rate_hz} Hz: choose one of {RATES_HZ}")
    rng = np.random.default_rng([cfg.seed, int(cfg.rate_hz), 0xB])
    n_mi = int(round(cfg.records * cfg.mi_fraction))
    is_mi = rng.permutation(np.array([True] * n_mi + [False] * (cfg.records - n_mi)))
    rows = [recording(rng, cfg, bool(m)) for m in is_mi]
    x = np.vstack(rows) if rows else np.empty((0, cfg.samples))
    return x, ["MI" if m else "Normal" for m in is_mi]


def write_kaggle_csv(x: np.ndarray, labels: list[str], path: str | Path) -> None:
    """The Kaggle layout: an unnamed index column, one column per sample, then ``Label``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Unnamed: 0", *[str(i) for i in range(x.shape[1])], "Label"])
        for i, (row, label) in enumerate(zip(x, labels)):
            w.writerow([i, *[f"{v:.1f}" for v in row], label])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.data_generator_b", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--records", type=int, default=GeneratorB.records)
    p.add_argument("--samples", type=int, default=GeneratorB.samples)
    p.add_argument("--rate", type=float, default=GeneratorB.rate_hz, choices=RATES_HZ)
    p.add_argument("--mi-fraction", type=float, default=GeneratorB.mi_fraction)
    p.add_argument("--separation", type=float, default=GeneratorB.separation)
    p.add_argument("--seed", type=int, default=GeneratorB.seed)
    a = p.parse_args(argv)
    x, labels = generate_b(GeneratorB(a.records, a.samples, a.rate, a.mi_fraction, a.separation, a.seed))
    write_kaggle_csv(x, labels, a.out)
    print(f"wrote {len(labels)} recordings ({labels.count('MI')} MI) of {a.samples} samples at {a.rate:g} Hz "
          f"to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
