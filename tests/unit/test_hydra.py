"""Hydra in numba (ppg_mi.model.hydra) against a plain numpy reference, and the hydra kinds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import RidgeClassifierCV
from sklearn.pipeline import make_pipeline

from ppg_mi.model.estimators import build_estimator, convolution_kind_name, resolve_kind
from ppg_mi.model.hydra import (HydraTransform, HydraWithRocket, SparseScaler, hydra_counts, hydra_dilations,
                                hydra_feature_count)
from ppg_mi.model.rhythm import FEATURES


def _reference_counts(x: np.ndarray, weights: np.ndarray, dilations: np.ndarray, k: int) -> np.ndarray:
    """Hydra's counts written from the paper with loops: zero-padded dilated correlation, then per
    time point the group's arg-max kernel adds its response and the arg-min kernel adds 1."""
    n_dilations, divisor, per_representation, taps = weights.shape
    groups = per_representation // k
    rows = []
    for row in x:
        features = []
        for di, d in enumerate(dilations):
            pad = (taps - 1) * d // 2
            for rep in range(divisor):
                series = row if rep == 0 else np.diff(row)
                padded = np.concatenate([np.zeros(pad), series, np.zeros(pad)])
                m = series.size
                response = np.zeros((groups, k, m))
                for g in range(groups):
                    for j in range(k):
                        w = weights[di, rep, g * k + j]
                        for t in range(m):
                            response[g, j, t] = sum(w[i] * padded[t + i * d] for i in range(taps))
                max_counts = np.zeros((groups, k))
                min_counts = np.zeros((groups, k))
                for g in range(groups):
                    for t in range(m):
                        max_counts[g, np.argmax(response[g, :, t])] += response[g, :, t].max()
                        min_counts[g, np.argmin(response[g, :, t])] += 1.0
                features += [max_counts.ravel(), min_counts.ravel()]
        rows.append(np.concatenate(features))
    return np.array(rows)


def _recordings(n: int = 3, length: int = 60, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 1, length))


def test_the_numba_counts_equal_the_numpy_reference() -> None:
    x = _recordings()
    hydra = HydraTransform(n_kernels=4, n_groups=2, random_state=7).fit(x)
    np.testing.assert_array_equal(hydra.dilations_, [1, 2, 4])  # floor(log2(59 / 8)) = 2
    expected = _reference_counts(x[:, 0, :], hydra.weights_, hydra.dilations_, 4)
    exact = np.zeros_like(expected)  # the numba function computes in its input's precision: float64 here
    hydra_counts(np.ascontiguousarray(x[:, 0, :]), hydra.weights_, hydra.dilations_, 4, exact)
    np.testing.assert_allclose(exact, expected, rtol=0, atol=1e-9)
    # the transform computes in float32 (as fast MiniRocket does): the same counts to float32's precision
    np.testing.assert_allclose(hydra.transform(x), expected, rtol=1e-5, atol=1e-5)
    # every time point gives exactly one min count per group: 60 (recording) or 59 (difference)
    mins = hydra.transform(x).reshape(3, 3, 2, 2, 1, 4)[:, :, :, 1]  # records, dilations, reps, max|min, groups, k
    np.testing.assert_array_equal(mins.sum(axis=-1)[:, :, 0], 60)
    np.testing.assert_array_equal(mins.sum(axis=-1)[:, :, 1], 59)


def test_kernels_have_zero_mean_and_unit_l1_norm_and_a_seed_fixes_them() -> None:
    x = _recordings()
    a = HydraTransform(4, 2, random_state=3).fit(x)
    np.testing.assert_allclose(a.weights_.mean(axis=-1), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.abs(a.weights_).sum(axis=-1), 1.0)
    again = HydraTransform(4, 2, random_state=3).fit(x)
    np.testing.assert_array_equal(a.transform(x), again.transform(x))
    other = HydraTransform(4, 2, random_state=4).fit(x)
    assert not np.allclose(a.transform(x), other.transform(x))


@pytest.mark.parametrize(("k", "g", "length", "dilations"), [
    (8, 64, 500, 6), (8, 32, 250, 5), (4, 2, 60, 3), (4, 1, 60, 3), (2, 3, 9, 1), (8, 16, 5, 1),
])
def test_feature_count_formula(k: int, g: int, length: int, dilations: int) -> None:
    assert hydra_dilations(length).size == dilations
    x = _recordings(2, length)
    features = HydraTransform(k, g).fit(x).transform(x)
    # a max and a min count per kernel, per group (split over the recording and its difference), per dilation
    assert features.shape == (2, hydra_feature_count(k, g, length))
    representations = min(2, g)
    assert hydra_feature_count(k, g, length) == dilations * representations * (g // representations) * k * 2


def test_fit_transform_shape_contract() -> None:
    x = _recordings(5, 80)
    hydra = HydraTransform(4, 4)
    out = hydra.fit_transform(x)
    assert out.shape == (5, hydra_feature_count(4, 4, 80)) and out.dtype == np.float64  # counts summed in float64
    assert hydra.transform(x[:2, 0, :]).shape == (2, out.shape[1])  # 2-D input is one channel too
    assert hydra.get_params() == {"n_kernels": 4, "n_groups": 4, "random_state": 0, "n_jobs": 1}
    with pytest.raises(ValueError, match="univariate"):
        hydra.transform(np.zeros((2, 2, 80)))
    with pytest.raises(ValueError, match=">= 2 kernels"):
        HydraTransform(1, 4).fit(x)


def test_threads_give_the_same_counts_and_the_classifier_can_set_them() -> None:
    from ppg_mi.model.threads import set_transform_threads

    x = _recordings(9, 200)
    one = HydraTransform(8, 8, random_state=1).fit(x)
    two = HydraTransform(8, 8, random_state=1, n_jobs=2).fit(x)
    np.testing.assert_array_equal(one.transform(x), two.transform(x))
    # a loaded model's transform threads are set on the fitted attribute, as for aeon's transforms
    model = build_estimator("minirocket-168-ds4-hydra-4x8-rhy").fit(
        np.random.default_rng(0).standard_normal((20, 1, 1000)), np.array(["MI", "Normal"] * 10))
    assert set_transform_threads(model, 2) == 2  # MiniRocket and Hydra
    hydra = model.named_steps["classifier"].steps[0][1].hydra_
    assert hydra._n_jobs == 2 and hydra.n_jobs == 2


def test_sparse_scaler_square_roots_standardises_and_keeps_zeros() -> None:
    counts = np.array([[0.0, 4.0, -1.0], [9.0, 16.0, 4.0], [0.0, 1.0, 9.0], [1.0, 0.0, 0.0]])
    scaler = SparseScaler().fit(counts)
    root = np.sqrt(np.clip(counts, 0, None))
    zero_share = (root == 0).mean(axis=0)
    np.testing.assert_allclose(scaler.mean_, root.mean(axis=0))
    np.testing.assert_allclose(scaler.scale_, root.std(axis=0, ddof=1) + zero_share ** 4 + 1e-8)
    out = scaler.transform(counts)
    assert (out[root == 0] == 0).all()
    np.testing.assert_allclose(out[root != 0], ((root - scaler.mean_) / scaler.scale_)[root != 0])


def _sine_or_square(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(128)
    y = np.where(np.arange(n) % 2 == 0, "sine", "square").astype(object)
    rows = []
    for label in y:
        phase, period = rng.uniform(0, 2 * np.pi), rng.uniform(14, 22)
        wave = np.sin(2 * np.pi * t / period + phase)
        rows.append((wave if label == "sine" else np.sign(wave)) + rng.normal(0, 0.1, t.size))
    return np.array(rows)[:, np.newaxis, :], y


def test_hydra_and_a_ridge_separate_sines_from_squares() -> None:
    x, y = _sine_or_square(40, 0)
    xt, yt = _sine_or_square(40, 1)
    model = make_pipeline(HydraTransform(8, 8, random_state=0), SparseScaler(),
                          RidgeClassifierCV(alphas=np.logspace(-3, 3, 10))).fit(x, y)
    assert (model.predict(xt) == yt).mean() == 1.0


@pytest.mark.parametrize("name", ["hydra-8x64-ds4", "hydra-8x16-ds8-rhy", "hydra-4x8-ds4-sel200",
                                  "minirocket-1000-ds4-hydra-8x32-rhy", "multirocket-200-ds8-hydra-8x8",
                                  "minirocket-1000-ds4-hydra-8x16-rhy-sel500"])
def test_hydra_kind_names_round_trip(name: str) -> None:
    kind = resolve_kind(name)
    assert kind.hydra is not None and "Hydra" in kind.description
    family, n_kernels = name.split("-")[0], (0 if name.startswith("hydra") else int(name.split("-")[1]))
    select = int(name.rsplit("-sel", 1)[1]) if "-sel" in name else None
    assert convolution_kind_name(family, n_kernels, kind.downsample, select, kind.derivatives, kind.rhythm,
                                 kind.hydra) == name


def test_bad_hydra_kind_names_are_refused() -> None:
    for bad in ("hydra-8-ds4", "hydra-8x64", "hydra-8x64-ds0", "hydra-8x64-ds4-d2", "minirocket-1000-hydra-8x8"):
        with pytest.raises(ValueError, match="unknown model kind"):
            resolve_kind(bad)
    with pytest.raises(ValueError, match="separate candidates"):
        resolve_kind("minirocket-1000-ds4-d2-hydra-8x8")
    with pytest.raises(ValueError, match=">= 2 kernels"):
        resolve_kind("hydra-1x8-ds4")


def test_hydra_kinds_build_their_pipelines_and_learn(tmp_path: Path) -> None:
    from ppg_mi.data import SyntheticConfig, generate
    from ppg_mi.model import load_checkpoint
    from ppg_mi.signal import BandPass, preprocess_batch
    from training.train import TrainConfig, train

    alone = build_estimator("hydra-8x16-ds4", seed=2).named_steps["classifier"]
    assert [type(s).__name__ for s in alone] == ["HydraTransform", "SparseScaler", "Pipeline"]
    assert alone.steps[0][1].random_state == 2
    combo = build_estimator("minirocket-168-ds4-hydra-4x8-rhy", sampling_rate_hz=250.0).named_steps["classifier"]
    step = combo.steps[0][1]
    assert isinstance(step, HydraWithRocket) and step.sampling_rate_hz == pytest.approx(250.0 / 8)

    data = generate(SyntheticConfig(records=40, samples=1000, difficulty=0.2, seed=5, id_prefix="hydra"))
    path, _ = train(data, BandPass(), TrainConfig(kind="minirocket-168-ds4-hydra-4x8-rhy", folds=0), tmp_path)
    loaded = load_checkpoint(path)
    x = preprocess_batch(data.samples, BandPass())
    mi = loaded.predict_proba(x)[:, loaded.classes.index("MI")]
    assert ((mi >= 0.5) == (np.asarray(data.labels) == "MI")).mean() > 0.8  # easy data: it learned something
    features = loaded.estimator.named_steps["classifier"].steps[0][1].transform(
        loaded.estimator.named_steps["downsample"].transform(x[:, np.newaxis, :]))
    assert features.shape[1] == 168 + hydra_feature_count(4, 8, 250) + len(FEATURES)
