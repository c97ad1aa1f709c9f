"""A checkpoint is a directory: the fitted estimator (joblib) and its model card (JSON).

The card records what the estimator expects (classes, preprocessing, sampling rate) and
what it was built with (library versions, training-data fingerprint).  Loading compares
the card with the running code and refuses, with the reason, any mismatch that would
make predictions silently wrong.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from ..signal import BandPass

ESTIMATOR_FILE = "estimator.joblib"
CARD_FILE = "model-card.json"
CARD_SCHEMA = 1


class ModelError(RuntimeError):
    """A checkpoint cannot be read."""


class ModelCardMismatch(ModelError):
    """The checkpoint's card does not match the running code or configuration."""


def library_versions() -> dict[str, str]:
    import aeon
    import scipy
    import sklearn

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "aeon": aeon.__version__,
    }


def fingerprint(samples: np.ndarray, labels: list[str] | np.ndarray) -> str:
    """SHA-256 of the training data (samples as float32 and labels)."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(samples, dtype=np.float32).tobytes())
    h.update("\x1f".join(str(x) for x in labels).encode())
    return h.hexdigest()


@dataclass
class Checkpoint:
    """A fitted estimator with its card; ``predict_proba`` takes preprocessed recordings."""

    estimator: Any
    card: dict[str, Any]
    path: Path | None = None

    @property
    def version(self) -> str:
        return str(self.card["version"])

    @property
    def classes(self) -> list[str]:
        return list(self.card["classes"])

    def predict_proba(self, preprocessed: np.ndarray) -> np.ndarray:
        """Class probabilities (n_records × n_classes, in ``classes`` order) of a 2-D batch."""
        x = np.asarray(preprocessed, dtype=np.float32)
        if x.ndim == 1:
            x = x[np.newaxis, :]
        proba = self.estimator.predict_proba(x[:, np.newaxis, :])
        est_classes = [str(c) for c in self.estimator.classes_]
        order = [est_classes.index(c) for c in self.classes]
        return np.asarray(proba)[:, order]

    def predict(self, preprocessed: np.ndarray) -> np.ndarray:
        proba = self.predict_proba(preprocessed)
        return np.array(self.classes, dtype=object)[proba.argmax(axis=1)]

    def warm_up(self, n_samples: int) -> float:
        """Run one prediction so numba compiles before the service reports ready; returns seconds."""
        started = time.perf_counter()
        rng = np.random.default_rng(0)
        self.predict_proba(rng.standard_normal((2, n_samples)).astype(np.float32))
        return time.perf_counter() - started


def make_card(
    *,
    kind: str,
    params: dict[str, Any],
    classes: list[str],
    band: BandPass,
    samples_per_record: int,
    data_fingerprint: str,
    metrics: dict[str, Any],
    seed: int,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    created = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return {
        "card_schema": CARD_SCHEMA,
        "version": f"{kind}-{created}-{data_fingerprint[:8]}",
        "kind": kind,
        "params": params,
        "classes": classes,
        "preprocessing": band.as_dict(),
        "samples_per_record": samples_per_record,
        "training_data_sha256": data_fingerprint,
        "seed": seed,
        "metrics": metrics,
        "libraries": library_versions(),
        "created_at": created,
        **(extra or {}),
    }


def save_checkpoint(estimator: Any, card: dict[str, Any], directory: str | Path) -> Path:
    """Write the checkpoint into ``directory`` (created; must not hold another checkpoint)."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    if (path / CARD_FILE).exists():
        raise ModelError(f"{path} already holds a checkpoint; refusing to overwrite it")
    joblib.dump(estimator, path / ESTIMATOR_FILE, compress=3)
    # the card is written last: a directory with a card is a complete checkpoint
    tmp = path / (CARD_FILE + ".tmp")
    tmp.write_text(json.dumps(card, indent=2, sort_keys=True, default=_json_default))
    tmp.replace(path / CARD_FILE)
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def check_card(card: dict[str, Any], band: BandPass | None, samples_per_record: int | None) -> None:
    """Raise :class:`ModelCardMismatch` naming every difference that matters."""
    problems = []
    if card.get("card_schema") != CARD_SCHEMA:
        problems.append(f"card schema {card.get('card_schema')} (this code reads {CARD_SCHEMA})")
    running = library_versions()
    # a pickled estimator is only trusted by the minor versions that wrote it
    for lib in ("aeon", "scikit-learn", "numpy"):
        saved = str(card.get("libraries", {}).get(lib, "?"))
        if _minor(saved) != _minor(running[lib]):
            problems.append(f"{lib} {saved} at training, {running[lib]} now")
    if band is not None and card.get("preprocessing") != band.as_dict():
        problems.append(f"preprocessing {card.get('preprocessing')} at training, {band.as_dict()} configured now")
    if samples_per_record is not None and card.get("samples_per_record") != samples_per_record:
        problems.append(f"{card.get('samples_per_record')} samples per record at training, "
                        f"{samples_per_record} configured now")
    if problems:
        raise ModelCardMismatch("model card does not match the running service: " + "; ".join(problems))


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def load_checkpoint(
    directory: str | Path, band: BandPass | None = None, samples_per_record: int | None = None
) -> Checkpoint:
    """Load a checkpoint, refusing one whose card disagrees with ``band`` or the libraries."""
    path = Path(directory)
    card_path = path / CARD_FILE
    if not card_path.is_file():
        raise ModelError(f"{path} is not a checkpoint: {CARD_FILE} is missing")
    try:
        card = json.loads(card_path.read_text())
    except ValueError as exc:
        raise ModelError(f"{card_path}: unreadable model card: {exc}") from None
    check_card(card, band, samples_per_record)
    try:
        estimator = joblib.load(path / ESTIMATOR_FILE)
    except Exception as exc:
        raise ModelError(f"{path / ESTIMATOR_FILE}: cannot load the estimator: {exc}") from exc
    fitted = sorted(str(c) for c in getattr(estimator, "classes_", []))
    if fitted != sorted(str(c) for c in card.get("classes", [])):
        raise ModelCardMismatch(f"{path}: the estimator predicts classes {fitted}, the card names "
                                f"{card.get('classes')}")
    return Checkpoint(estimator, card, path)


__all__ = [
    "Checkpoint", "ModelCardMismatch", "ModelError", "check_card", "fingerprint",
    "library_versions", "load_checkpoint", "make_card", "save_checkpoint",
]
