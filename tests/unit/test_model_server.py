"""The classifier's ModelServer against a real model store: a bad `current` never ends the service.

Issue 18 item 10: errors of a reload that are not ``ModelError`` (warm-up raising, an
unpicklable estimator) ended the process, and the restart loaded the same `current`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from ppg_mi.data import SyntheticConfig, generate
from ppg_mi.model import ModelError, ModelStore
from ppg_mi.model.checkpoint import ESTIMATOR_FILE
from ppg_mi.services.classifier import ModelServer
from ppg_mi.signal import BandPass
from training.train import TrainConfig, train

from ..bad_models import (
    add_corrupted_version,
    add_unpicklable_version,
    add_unreadable_card_version,
    add_warm_up_failing_version,
)

SAMPLES = 256
BAND = BandPass()


@pytest.fixture(scope="module")
def good_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("served")
    data = generate(SyntheticConfig(records=30, samples=SAMPLES, difficulty=0.2, seed=3, id_prefix="ms"))
    _, card = train(data, BAND, TrainConfig(kind="minirocket", folds=0, seed=0), root)
    return root, card["version"]


@pytest.fixture
def store(good_store: tuple[Path, str], tmp_path: Path) -> ModelStore:
    root, _ = good_store
    return ModelStore(shutil.copytree(root, tmp_path / "models"))


def _server(store: ModelStore) -> ModelServer:
    return ModelServer(store, BAND, SAMPLES, reload_interval_s=0.0)   # every call looks at `current`


def _reloads(outcome: str) -> float:
    return REGISTRY.get_sample_value("ppg_mi_model_reloads_total", {"outcome": outcome}) or 0.0


def _current_rejected() -> float:
    return REGISTRY.get_sample_value("ppg_mi_model_current_rejected") or 0.0


BAD_VERSIONS = {
    "warm-up raises LinAlgError": (add_warm_up_failing_version, "LinAlgError"),
    "estimator bytes changed": (add_corrupted_version, "not the one trained"),
    "estimator not a pickle": (add_unpicklable_version, "cannot load the estimator"),
    "card not JSON": (add_unreadable_card_version, "unreadable model card"),
}


@pytest.mark.parametrize("fault", list(BAD_VERSIONS))
def test_a_reload_that_fails_for_any_reason_keeps_the_served_model(store: ModelStore, fault: str) -> None:
    make_bad, reason = BAD_VERSIONS[fault]
    good = store.current_version()
    server = _server(store)
    assert server.served == good
    served = server.checkpoint
    rejected_before = _reloads("rejected")
    store.set_current(make_bad(store, good, "bad"))
    assert server.maybe_reload() is False                          # does not raise
    assert server.checkpoint is served and server.served == good
    assert _reloads("rejected") == rejected_before + 1 and _current_rejected() == 1
    ok, detail = server.check()
    assert ok and reason in detail and "bad" in detail
    # rejected once: not loaded again while `current` and its files stay the same
    for _ in range(3):
        assert server.maybe_reload() is False
    assert _reloads("rejected") == rejected_before + 1
    # `current` back on the good version: nothing to load, nothing rejected any more
    store.set_current(good)
    assert server.maybe_reload() is False and server.checkpoint is served
    assert _current_rejected() == 0 and server.check() == (True, f"{served.version} loaded and warm")


def test_a_rejected_version_is_tried_again_once_its_files_are_replaced(store: ModelStore,
                                                                       good_store: tuple[Path, str]) -> None:
    root, good = good_store
    server = _server(store)
    assert server.checkpoint is not None
    store.set_current(add_corrupted_version(store, good, "fixed-later"))
    assert server.maybe_reload() is False and server.rejection is not None
    # the operator copies the right bytes in: the same name is now loadable and is loaded
    shutil.copyfile(root / good / ESTIMATOR_FILE, store.root / "fixed-later" / ESTIMATOR_FILE)
    loaded_before = _reloads("loaded")
    assert server.maybe_reload() is True and server.served == "fixed-later"
    assert _reloads("loaded") == loaded_before + 1 and server.rejection is None and _current_rejected() == 0


def test_a_bad_current_at_start_falls_back_to_the_previous_version(store: ModelStore) -> None:
    good = store.current_version()
    store.set_current(add_warm_up_failing_version(store, good, "bad-at-start"))
    assert store.previous_version() == good
    server = _server(store)
    assert server.checkpoint is not None and server.served == good
    ok, detail = server.check()
    assert ok and "bad-at-start" in detail and "LinAlgError" in detail and _current_rejected() == 1
    # and it keeps to it: the bad `current` is not retried between batches
    assert server.maybe_reload() is False and server.served == good


def test_no_loadable_model_at_start_means_not_ready_until_current_loads(store: ModelStore) -> None:
    good = store.current_version()
    store.set_current(add_corrupted_version(store, good, "bad-one"))
    store.set_current(add_unpicklable_version(store, good, "bad-two"))   # previous = bad-one: both bad
    server = _server(store)
    assert server.checkpoint is None
    ok, detail = server.check()
    assert not ok and "bad-two" in detail and "waiting for a `current` that loads" in detail
    assert server.maybe_reload() is False
    # a good `current` ends the wait
    store.set_current(good)
    server.wait_until_loaded()
    assert server.served == good and server.check()[0] and _current_rejected() == 0


def test_no_current_at_all_still_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no model in"):
        _server(ModelStore(tmp_path))


def test_the_served_models_transform_runs_on_the_servers_threads(store: ModelStore) -> None:
    from ppg_mi.model.threads import _estimators

    server = ModelServer(store, BAND, SAMPLES, reload_interval_s=0.0, threads=2)
    assert server.checkpoint is not None
    transforms = [e for e in _estimators(server.checkpoint.estimator, set()) if hasattr(e, "_n_jobs")]
    assert transforms and all(e._n_jobs == 2 for e in transforms)
