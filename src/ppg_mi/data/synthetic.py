"""A seeded synthetic PPG generator whose two classes differ in physiologically motivated ways.

Each beat is the sum of two Gaussian waves: the systolic wave (the ejection) and a
smaller, later diastolic wave (the reflected wave), which leaves a dicrotic notch
between them.  After a myocardial infarction the left ventricle ejects less forcefully
and the arterial tree reflects differently, which in finger PPG shows as:

- a slower systolic upstroke (wider systolic wave, later peak),
- a weaker diastolic wave and a shallower dicrotic notch,
- a higher resting heart rate (sympathetic activation),
- a less regular rhythm (ectopic beats, higher beat-to-beat variability).

``difficulty`` in [0, 1] moves the two classes' parameters toward each other and adds
noise and baseline wander: 0 is trivially separable, 1 makes the classes identical.

Recording conditions, for selection over several kinds of data (``training/compare.py``);
their defaults leave the output exactly as without them:

- ``noise_scale`` and ``wander_scale`` multiply the sensor noise and the baseline wander;
- ``motion_artefacts_per_min``: sudden sensor movements, each a step in level plus a
  decaying oscillation a few pulses tall (Poisson count);
- ``level_changes``: that many moments where the sensor's gain and offset jump (contact
  pressure or ambient light changes), so amplitude and level differ within one recording.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .kaggle import Dataset


@dataclass(frozen=True)
class SyntheticConfig:
    records: int = 200
    samples: int = 2000
    sampling_rate_hz: float = 125.0
    mi_fraction: float = 0.5
    difficulty: float = 0.3
    seed: int = 0
    id_prefix: str = "synth"
    noise_scale: float = 1.0
    wander_scale: float = 1.0
    motion_artefacts_per_min: float = 0.0
    level_changes: int = 0


# per-class means of the beat parameters: (Normal, MI)
_HEART_RATE_BPM = (72.0, 92.0)
_RR_JITTER = (0.03, 0.09)  # coefficient of variation of beat intervals
_ECTOPIC_P = (0.0, 0.08)  # chance that a beat comes early
_SYSTOLIC_WIDTH = (0.09, 0.13)  # fraction of a beat
_DIASTOLIC_AMPLITUDE = (0.55, 0.28)  # relative to the systolic wave
_DIASTOLIC_DELAY = (0.33, 0.28)  # fraction of a beat after the systolic peak


def _mix(pair: tuple[float, float], is_mi: bool, difficulty: float) -> float:
    normal, mi = pair
    centre = (normal + mi) / 2
    own = mi if is_mi else normal
    return own + (centre - own) * difficulty


def _recording(rng: np.random.Generator, cfg: SyntheticConfig, is_mi: bool) -> np.ndarray:
    d = float(np.clip(cfg.difficulty, 0.0, 1.0))
    fs = cfg.sampling_rate_hz
    t = np.arange(cfg.samples) / fs
    hr = rng.normal(_mix(_HEART_RATE_BPM, is_mi, d), 8.0)
    hr = float(np.clip(hr, 40.0, 160.0))
    period = 60.0 / hr
    jitter = _mix(_RR_JITTER, is_mi, d)
    ectopic = _mix(_ECTOPIC_P, is_mi, d)
    sys_width = rng.normal(_mix(_SYSTOLIC_WIDTH, is_mi, d), 0.012)
    dia_amp = rng.normal(_mix(_DIASTOLIC_AMPLITUDE, is_mi, d), 0.06)
    dia_delay = rng.normal(_mix(_DIASTOLIC_DELAY, is_mi, d), 0.02)
    signal = np.zeros_like(t)
    beat = rng.uniform(0, period)
    while beat < t[-1] + period:
        interval = period * max(0.4, rng.normal(1.0, jitter))
        if rng.random() < ectopic:
            interval *= 0.65
        amplitude = rng.normal(1.0, 0.05)
        sw = max(sys_width * interval, 1.5 / fs)
        signal += amplitude * np.exp(-0.5 * ((t - beat) / sw) ** 2)
        dd = beat + dia_delay * interval
        signal += amplitude * max(dia_amp, 0.0) * np.exp(-0.5 * ((t - dd) / (1.4 * sw)) ** 2)
        beat += interval
    noise = (0.02 + 0.15 * d) * cfg.noise_scale
    wander = (0.1 + 0.4 * d) * cfg.wander_scale * np.sin(
        2 * np.pi * rng.uniform(0.1, 0.3) * t + rng.uniform(0, 2 * np.pi))
    gain = rng.uniform(50, 150)
    offset = rng.uniform(200, 800)
    # conditions draw from the generator only when enabled, so default configs give the old data
    if cfg.motion_artefacts_per_min > 0:
        signal = signal + _motion_artefacts(rng, t, cfg.motion_artefacts_per_min)
    gains, offsets = (gain, offset) if cfg.level_changes <= 0 else _level_steps(rng, t, gain, offset,
                                                                                cfg.level_changes)
    return (offsets + gains * (signal + wander + rng.normal(0, noise, t.size))).astype(np.float32)


def _motion_artefacts(rng: np.random.Generator, t: np.ndarray, per_min: float) -> np.ndarray:
    """A level step plus a decaying 1-4 Hz oscillation at each of a Poisson number of moments."""
    out = np.zeros_like(t)
    for start in rng.uniform(0, t[-1], rng.poisson(per_min * t[-1] / 60.0)):
        after = t >= start
        dt = t[after] - start
        size = rng.uniform(1.0, 4.0) * rng.choice((-1.0, 1.0))
        decay = rng.uniform(0.2, 1.0)
        out[after] += size * np.exp(-dt / decay) * np.cos(2 * np.pi * rng.uniform(1.0, 4.0) * dt)
        out[after] += rng.normal(0, 0.5) * np.exp(-dt / 5.0)  # the sensor settles slowly at its new level
    return out


def _level_steps(rng: np.random.Generator, t: np.ndarray, gain: float, offset: float,
                 changes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample gain and offset that jump at ``changes`` random moments."""
    gains = np.full_like(t, gain)
    offsets = np.full_like(t, offset)
    for start in np.sort(rng.uniform(0, t[-1], changes)):
        after = t >= start
        gains[after] *= rng.uniform(0.4, 2.5)
        offsets[after] += rng.uniform(-300, 300)
    return gains, offsets


def generate(cfg: SyntheticConfig) -> Dataset:
    """Generate ``cfg.records`` labelled recordings; the same config gives the same data."""
    if cfg.records < 0 or cfg.samples < 64:
        raise ValueError("need records >= 0 and samples >= 64")
    rng = np.random.default_rng(cfg.seed)
    n_mi = int(round(cfg.records * cfg.mi_fraction))
    is_mi = np.array([True] * n_mi + [False] * (cfg.records - n_mi))
    rng.shuffle(is_mi)
    rows = [_recording(rng, cfg, bool(m)) for m in is_mi]
    samples = np.vstack(rows) if rows else np.empty((0, cfg.samples), np.float32)
    labels: list[str | None] = ["MI" if m else "Normal" for m in is_mi]
    ids = [f"{cfg.id_prefix}-{i}" for i in range(cfg.records)]
    return Dataset(ids, samples, labels, [], f"synthetic(seed={cfg.seed}, difficulty={cfg.difficulty})")
