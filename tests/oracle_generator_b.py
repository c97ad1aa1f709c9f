"""How well could *any* model do on generator B?  An oracle that sees each recording's latent MI parameters.

Generator B (``tests/data_generator_b.py``) draws, per recording, the parameters its MI signature
lives in: mean heart rate, respiratory sinus arrhythmia amplitude, respiratory amplitude
modulation depth, percussion-wave centre and width, tidal and dicrotic ratios.  Everything else
it draws (wave offsets, breathing rate, noise, gain, clipping) is the same for both classes.  Given
the class, these parameters are independent, so the best possible classifier of a recording is a
function of them alone; an oracle that *knows* them (no waveform noise, no estimation error) is an
upper bound for every model that sees only the waveform.  The oracle here is a logistic
regression on those parameters (and the squares that the truncations ``max``/``abs`` make
informative), fitted on a large sample and scored on another: its ROC AUC, its MI sensitivity at
specificity 0.85 and its specificity at MI sensitivity 0.95.

Only for the held-out analysis in docs/model.md; selection never uses generator B.

    python -m tests.oracle_generator_b --separation 0.5 0.7
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from tests import data_generator_b as gb


def latent_parameters(rng: np.random.Generator, is_mi: np.ndarray, separation: float) -> np.ndarray:
    """The class-dependent draws of :func:`tests.data_generator_b.recording`, one row per recording.

    Same distributions as the generator (its means, spreads and truncations); the class-independent
    draws are left out because they carry no information about the class.
    """
    s = float(np.clip(separation, 0.0, 1.0))

    def mean(pair: tuple[float, float]) -> np.ndarray:
        return np.where(is_mi, gb._between(pair, True, s), gb._between(pair, False, s))

    n = len(is_mi)
    hr = rng.normal(mean(gb._HR_BPM), 9.0, n)
    rsa = rng.normal(mean(gb._RSA_BPM), 0.8, n)
    pc = rng.normal(mean(gb._PERCUSSION_CENTRE), 0.012, n)
    pw = np.abs(rng.normal(mean(gb._PERCUSSION_WIDTH), 0.008, n)) + 0.02
    tidal = np.maximum(rng.normal(mean(gb._TIDAL_RATIO), 0.10, n), 0.05)
    dicrotic = np.maximum(rng.normal(mean(gb._DICROTIC_RATIO), 0.06, n), 0.0)
    am = np.maximum(rng.normal(mean(gb._AM_DEPTH), 0.02, n), 0.0)
    return np.column_stack([hr, rsa, pc, pw, tidal, dicrotic, am])


#: column names of :func:`latent_parameters`, and the groups the oracle is also run on alone
LATENT = ("heart_rate", "rsa", "percussion_centre", "percussion_width", "tidal_ratio", "dicrotic_ratio", "am_depth")
GROUPS = {
    "all": LATENT,
    "pulse shape": ("percussion_centre", "percussion_width", "tidal_ratio", "dicrotic_ratio"),
    "rhythm and breathing": ("heart_rate", "rsa", "am_depth"),
}


def _sample(n: int, separation: float, seed: int, columns: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    is_mi = rng.permutation(np.arange(n) < n // 2)
    z = latent_parameters(rng, is_mi, separation)[:, [LATENT.index(c) for c in columns]]
    return np.hstack([z, z ** 2]), is_mi


def sensitivity_at_specificity(score: np.ndarray, is_mi: np.ndarray, specificity: float) -> float:
    """MI sensitivity at the lowest threshold that keeps ``specificity`` of the normal recordings below it."""
    threshold = np.quantile(score[~is_mi], specificity)
    return float((score[is_mi] > threshold).mean())


def specificity_at_sensitivity(score: np.ndarray, is_mi: np.ndarray, sensitivity: float) -> float:
    """Specificity at the highest threshold that still flags ``sensitivity`` of the MI recordings."""
    threshold = np.quantile(score[is_mi], 1.0 - sensitivity)
    return float((score[~is_mi] < threshold).mean())


def oracle(separation: float, n: int = 200_000, seed: int = 0, group: str = "all") -> dict[str, Any]:
    """Fit the oracle on ``n`` latent draws (the ``group``'s parameters) and score it on ``n`` others."""
    x_fit, y_fit = _sample(n, separation, seed, GROUPS[group])
    x_test, y_test = _sample(n, separation, seed + 1, GROUPS[group])
    scaler = StandardScaler().fit(x_fit)
    model = LogisticRegression(C=1e3, max_iter=2000).fit(scaler.transform(x_fit), y_fit)
    score = model.decision_function(scaler.transform(x_test))
    return {
        "separation": separation,
        "parameters": group,
        "roc_auc": round(float(roc_auc_score(y_test, score)), 4),
        "sensitivity_at_specificity_0.85": round(sensitivity_at_specificity(score, y_test, 0.85), 4),
        "specificity_at_sensitivity_0.95": round(specificity_at_sensitivity(score, y_test, 0.95), 4),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.oracle_generator_b", description=__doc__.splitlines()[0])
    p.add_argument("--separation", type=float, nargs="+", default=[0.5, 0.7])
    p.add_argument("--n", type=int, default=200_000, help="latent draws to fit on (and as many to score)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    for s in a.separation:
        for group in GROUPS:
            print(json.dumps(oracle(s, a.n, a.seed, group)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
