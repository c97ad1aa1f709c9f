"""A loaded model's transform threads and the CPUs a process may use (pure logic, no Kafka)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ppg_mi.data import SyntheticConfig, generate
from ppg_mi.model.estimators import build_estimator
from ppg_mi.model.threads import set_transform_threads, usable_cpus

SAMPLES = 500


@pytest.fixture(scope="module")
def fitted_and_batch() -> tuple[object, np.ndarray]:
    data = generate(SyntheticConfig(records=60, samples=SAMPLES, difficulty=0.3, seed=5, id_prefix="thr"))
    x = data.samples.astype(np.float32)[:, np.newaxis, :]
    estimator = build_estimator("minirocket-1000-ds4-rhy", seed=0, n_jobs=1, sampling_rate_hz=125.0)
    estimator.fit(x[:40], np.array(data.labels[:40]))
    return estimator, x[40:]


def _aeon_threads(estimator: object) -> list[int]:
    rocket = estimator.steps[-1][1].steps[0][1].rocket_  # Downsample -> (RocketWithRhythm -> ridge)
    return [rocket._n_jobs, rocket.n_jobs]


def test_the_rhythm_kinds_transform_runs_on_the_threads_set_and_predicts_the_same(fitted_and_batch) -> None:
    estimator, batch = fitted_and_batch
    one = estimator.predict_proba(batch)
    assert _aeon_threads(estimator) == [1, 1]
    assert set_transform_threads(estimator, 2) == 1   # the one MiniRocket inside the pipeline
    assert _aeon_threads(estimator) == [2, 2]
    two = estimator.predict_proba(batch)
    np.testing.assert_allclose(two, one, rtol=0, atol=1e-6)
    set_transform_threads(estimator, 1)
    assert _aeon_threads(estimator) == [1, 1]


def test_threads_below_one_are_refused(fitted_and_batch) -> None:
    with pytest.raises(ValueError, match="threads must be >= 1"):
        set_transform_threads(fitted_and_batch[0], 0)


def _cgroup(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


AFFINITY = len(os.sched_getaffinity(0))


@pytest.mark.parametrize(("files", "expected"), [
    ({}, AFFINITY),                                              # no cgroup files: the affinity
    ({"cpu.max": "max 100000\n"}, AFFINITY),                     # v2, unlimited
    ({"cpu.max": "100000 100000\n"}, 1),                         # v2, a limit of 1 CPU
    ({"cpu.max": "50000 100000\n"}, 1),                          # half a CPU still runs one thread
    ({"cpu.max": "150000 100000\n"}, min(AFFINITY, 2)),          # 1.5 CPUs round up
    ({"cpu.max": "800000 100000\n"}, AFFINITY),                  # more quota than CPUs: the CPUs
    ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),   # v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, AFFINITY),  # v1 unlimited
    ({"cpu.max": "garbage\n"}, AFFINITY),
])
def test_usable_cpus_is_the_affinity_capped_by_the_cgroup_quota(tmp_path: Path, files: dict[str, str],
                                                                  expected: int) -> None:
    assert usable_cpus(_cgroup(tmp_path, files)) == expected


@pytest.mark.parametrize("threads", [1, 2])
def test_the_nogil_minirocket_kernel_gives_aeons_features_bit_for_bit(fitted_and_batch, threads: int) -> None:
    from ppg_mi.model import nogil

    estimator, batch = fitted_and_batch
    rocket = estimator.steps[-1][1].steps[0][1].rocket_
    reduced = estimator.steps[0][1].transform(batch)  # what the rocket sees: the down-sampled batch
    set_transform_threads(estimator, threads)
    try:
        ours = nogil.minirocket_features(rocket, reduced)
        assert nogil.kernel.cache_info().currsize == 1, "the univariate MiniRocket went through the nogil kernel"
        assert nogil.kernel().targetoptions["nogil"] is True
        np.testing.assert_array_equal(ours, rocket.transform(reduced))
    finally:
        set_transform_threads(estimator, 1)


def test_other_transformers_and_multivariate_input_go_through_their_own_transform() -> None:
    from aeon.transformations.collection.convolution_based import MiniRocket

    from ppg_mi.model.nogil import minirocket_features

    features = np.arange(6, dtype=np.float32).reshape(2, 3)

    class Other:
        def transform(self, x: np.ndarray) -> np.ndarray:
            return features

    multivariate = MiniRocket(n_kernels=84)
    multivariate.transform = Other().transform  # type: ignore[method-assign]
    two_channels = np.zeros((2, 2, 50), dtype=np.float32)
    np.testing.assert_array_equal(minirocket_features(Other(), two_channels[:, :1]), features)
    np.testing.assert_array_equal(minirocket_features(multivariate, two_channels), features)
