"""A checkpoint is a directory: the fitted estimator (joblib) and its model card (JSON).

The card records what the estimator expects (classes, preprocessing, sampling rate) and
what it was built with (library versions, training-data fingerprint).  Loading compares
the card with the running code and refuses, with the reason, any mismatch that would
make predictions silently wrong.

The card also records the SHA-256 of the estimator file (``estimator_sha256``): loading
reads the file once, checks those bytes against the card and only then unpickles them,
so a checkpoint whose estimator was replaced, truncated or corrupted after its card was
written is refused before any of its bytes are unpickled.  A card written before digests
existed has none: it is loaded, with a warning that the bytes could not be checked.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from ..signal import BandPass
from .metrics import POSITIVE

ESTIMATOR_FILE = "estimator.joblib"
CARD_FILE = "model-card.json"
CARD_SCHEMA = 1
#: card field holding the SHA-256 (hex) of the estimator file the card was written for
DIGEST_FIELD = "estimator_sha256"
#: card fields a served checkpoint needs (besides what :func:`check_card` compares)
REQUIRED_FIELDS = ("version", "classes")

log = logging.getLogger(__name__)


class ModelError(RuntimeError):
    """A checkpoint cannot be read."""


class ModelCardMismatch(ModelError):
    """The checkpoint's card does not match the running code or configuration."""


class ModelDigestMismatch(ModelError):
    """The estimator file's bytes are not the ones the card was written for."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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

    @property
    def sampling_rate_hz(self) -> float | None:
        """The rate the model was trained at (card ``training_data.sampling_rate_hz_assumed``, else the
        preprocessing's); None when the card says neither."""
        for section, key in (("training_data", "sampling_rate_hz_assumed"), ("preprocessing", "sampling_rate_hz")):
            value = self.card.get(section, {}).get(key) if isinstance(self.card.get(section), dict) else None
            if isinstance(value, (int, float)) and value > 0:
                return float(value)
        return None

    @property
    def threshold(self) -> float | None:
        """The MI probability at or above which a recording is MI (the operating point); None: argmax."""
        value = getattr(self.estimator, "threshold_", None)
        return None if value is None else float(value)

    def decide(self, preprocessed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities and the decided label of each recording, from one ``predict_proba``.

        A model with an operating point decides ``MI`` when its (calibrated) MI probability
        reaches :attr:`threshold`, as its ``predict`` does; any other model by the argmax.
        """
        proba = self.predict_proba(preprocessed)
        classes = np.array(self.classes, dtype=object)
        threshold = self.threshold
        if threshold is None or POSITIVE not in self.classes or len(self.classes) != 2:
            return proba, classes[proba.argmax(axis=1)]
        is_mi = proba[:, self.classes.index(POSITIVE)] >= threshold
        negative = next(c for c in self.classes if c != POSITIVE)
        return proba, np.where(is_mi, POSITIVE, negative).astype(object)

    def predict(self, preprocessed: np.ndarray) -> np.ndarray:
        return self.decide(preprocessed)[1]

    @property
    def operating_point(self) -> dict[str, Any] | None:
        return operating_point(self.card)

    def warm_up(self, n_samples: int) -> float:
        """Run one prediction so numba compiles before the service reports ready; returns seconds."""
        started = time.perf_counter()
        rng = np.random.default_rng(0)
        self.predict_proba(rng.standard_normal((2, n_samples)).astype(np.float32))
        return time.perf_counter() - started


def operating_point(card: dict[str, Any]) -> dict[str, Any] | None:
    """The card's operating point: threshold, target sensitivity and held-out validation; None without one.

    ``ppg_mi.model.estimators.describe_estimator`` writes them into ``params`` for a model wrapped in
    ``OperatingPoint``.
    """
    params = card.get("params")
    if not isinstance(params, dict) or params.get("threshold") is None:
        return None
    validation = params.get("validation") if isinstance(params.get("validation"), dict) else {}
    return {
        "threshold": _number(params.get("threshold")),
        "target_sensitivity": _number(params.get("target_sensitivity")),
        "validation_sensitivity": _number(validation.get("sensitivity_mi")),
        "validation_specificity": _number(validation.get("specificity")),
        "validation_brier": _number(validation.get("brier")),
        "validation_calibration_error": _number(validation.get("calibration_error")),
    }


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


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
    """Write the checkpoint into ``directory`` (created; must not hold another checkpoint).

    ``card`` gains ``estimator_sha256``, the digest of the estimator file as written.
    """
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    if (path / CARD_FILE).exists():
        raise ModelError(f"{path} already holds a checkpoint; refusing to overwrite it")
    joblib.dump(estimator, path / ESTIMATOR_FILE, compress=3)
    # the digest of the bytes on disk, read back: what a loader will read
    card[DIGEST_FIELD] = sha256_hex((path / ESTIMATOR_FILE).read_bytes())
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


def read_card(card_path: Path) -> dict[str, Any]:
    """The card as a dict holding at least :data:`REQUIRED_FIELDS`, or :class:`ModelError`."""
    try:
        card = json.loads(card_path.read_bytes())
    except (OSError, ValueError) as exc:   # UnicodeDecodeError is a ValueError
        raise ModelError(f"{card_path}: unreadable model card: {exc}") from None
    if not isinstance(card, dict):
        raise ModelError(f"{card_path}: unreadable model card: a JSON {type(card).__name__}, not an object")
    missing = [name for name in REQUIRED_FIELDS if name not in card]
    if missing:
        raise ModelError(f"{card_path}: unreadable model card: no {', '.join(missing)}")
    if not isinstance(card["classes"], list) or not all(isinstance(c, str) for c in card["classes"]):
        raise ModelError(f"{card_path}: unreadable model card: classes {card['classes']!r} is not a list of names")
    return card


def read_verified_estimator(path: Path, card: dict[str, Any]) -> bytes:
    """The estimator file's bytes, refused unless their SHA-256 is the card's.

    Read once and unpickled from memory, so the bytes checked are the bytes loaded.  A
    card without a digest (written before digests were recorded) is accepted with a warning.
    """
    estimator_path = path / ESTIMATOR_FILE
    try:
        data = estimator_path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{estimator_path}: cannot read the estimator: {exc}") from None
    expected = card.get(DIGEST_FIELD)
    actual = sha256_hex(data)
    if expected is None:
        log.warning("model card records no estimator digest (written before digests); loading it unverified",
                    extra={"checkpoint": str(path), "estimator_sha256": actual})
    elif str(expected).lower() != actual:
        raise ModelDigestMismatch(f"{estimator_path}: sha256 {actual}, but the model card was written for "
                                  f"sha256 {expected}: the estimator file is not the one trained; refusing it")
    return data


def load_checkpoint(
    directory: str | Path, band: BandPass | None = None, samples_per_record: int | None = None
) -> Checkpoint:
    """Load a checkpoint, refusing one whose card disagrees with ``band`` or the libraries."""
    path = Path(directory)
    card_path = path / CARD_FILE
    if not card_path.is_file():
        raise ModelError(f"{path} is not a checkpoint: {CARD_FILE} is missing")
    card = read_card(card_path)
    check_card(card, band, samples_per_record)
    estimator_bytes = read_verified_estimator(path, card)
    try:
        estimator = joblib.load(io.BytesIO(estimator_bytes))
    except Exception as exc:
        raise ModelError(f"{path / ESTIMATOR_FILE}: cannot load the estimator: {exc}") from exc
    fitted = sorted(str(c) for c in getattr(estimator, "classes_", []))
    if fitted != sorted(str(c) for c in card.get("classes", [])):
        raise ModelCardMismatch(f"{path}: the estimator predicts classes {fitted}, the card names "
                                f"{card.get('classes')}")
    return Checkpoint(estimator, card, path)


__all__ = [
    "DIGEST_FIELD", "Checkpoint", "ModelCardMismatch", "ModelDigestMismatch", "ModelError", "check_card",
    "fingerprint", "library_versions", "load_checkpoint", "make_card", "operating_point", "read_card",
    "read_verified_estimator",
    "save_checkpoint", "sha256_hex",
]
