"""Bad model versions written into a real model store, for the reload-failure tests.

Each is built from a good version of the same store, so only the named fault differs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import joblib
import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from ppg_mi.model import ModelStore, save_checkpoint
from ppg_mi.model.checkpoint import CARD_FILE, DIGEST_FIELD, ESTIMATOR_FILE, sha256_hex


def _card(store: ModelStore, version: str) -> dict:
    return json.loads((store.root / version / CARD_FILE).read_text())


def add_warm_up_failing_version(store: ModelStore, good: str, name: str) -> str:
    """A checkpoint that passes every load check (digest included) but whose warm-up raises
    ``numpy.linalg.LinAlgError``, not a ``ModelError``: the good estimator behind a step that
    inverts its (non-square) input."""
    estimator = joblib.load(store.root / good / ESTIMATOR_FILE)
    failing = Pipeline([("fail", FunctionTransformer(np.linalg.inv)), ("model", estimator)])
    card = {**_card(store, good), "version": name}
    card.pop(DIGEST_FIELD, None)
    save_checkpoint(failing, card, store.root / name)
    return name


def add_corrupted_version(store: ModelStore, good: str, name: str) -> str:
    """The good checkpoint with bytes of its estimator file changed after its card was written."""
    target = Path(shutil.copytree(store.root / good, store.root / name))
    data = bytearray((target / ESTIMATOR_FILE).read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
    (target / ESTIMATOR_FILE).write_bytes(bytes(data))
    return name


def add_unpicklable_version(store: ModelStore, good: str, name: str) -> str:
    """A checkpoint whose card's digest matches an estimator file that is not a pickle at all."""
    target = Path(shutil.copytree(store.root / good, store.root / name))
    garbage = b"not a joblib pickle\n" * 100
    (target / ESTIMATOR_FILE).write_bytes(garbage)
    card = {**_card(store, good), DIGEST_FIELD: sha256_hex(garbage)}
    (target / CARD_FILE).write_text(json.dumps(card))
    return name


def add_unreadable_card_version(store: ModelStore, good: str, name: str) -> str:
    """The good estimator under a card that is not JSON."""
    target = Path(shutil.copytree(store.root / good, store.root / name))
    (target / CARD_FILE).write_text("{ not json")
    return name
