"""The classifier service: ``ppg.filtered`` → aeon model → ``ppg.predictions``.

Each micro-batch is predicted in one call.  Between batches (no transaction open) the
service looks at the model store's ``current`` pointer and, when it names a new
version, loads, checks and warms it up before switching: every batch is predicted by
exactly one model version, which every prediction names.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Sequence

import numpy as np

from ..config import Settings
from ..model import Checkpoint, ModelError, ModelStore, load_checkpoint
from ..model.numba_cache import use_numba_cache
from ..observability import metrics as m
from ..observability.metrics import StageMetrics
from ..signal import BandPass, InvalidSignal, validate_samples
from ..streaming.codec import Prediction, Recording, decode_keyed_recording, now_us
from ..streaming.exceptions import DecodeError
from ..streaming.loop import DeadLetter, InputRecord, Outcome, Output, StageLoop
from .runtime import broker_check, on_termination, service

ROLE = "classifier"
log = logging.getLogger(__name__)


class ModelServer:
    """The served checkpoint, switched to a new ``current`` version only between batches.

    ``served`` is the store entry ``current`` named when the checkpoint was loaded; a
    change of ``current`` is noticed by comparing names, so a checkpoint whose directory
    is named differently from its card's version is not reloaded again and again.
    """

    def __init__(self, store: ModelStore, band: BandPass, samples_per_record: int, reload_interval_s: float) -> None:
        self.store = store
        self.band = band
        self.samples_per_record = samples_per_record
        self.reload_interval_s = reload_interval_s
        self._rejected: str | None = None
        path = store.current_path()
        self.checkpoint: Checkpoint = self._load(path)
        self.served = path.name
        self._checked_at = time.monotonic()

    def _load(self, path) -> Checkpoint:  # noqa: ANN001
        checkpoint = load_checkpoint(path, self.band, self.samples_per_record)
        # numba compiles on the first call: pay it here, before readiness or the switch
        seconds = checkpoint.warm_up(self.samples_per_record)
        log.info("model loaded", extra={"model_version": checkpoint.version, "warm_up_seconds": round(seconds, 2)})
        m.MODEL_INFO.info({"version": checkpoint.version, "kind": str(checkpoint.card.get("kind", ""))})
        # series exist at 0 before the first prediction, so rate() sees that first increment
        for label in checkpoint.classes:
            m.PREDICTIONS.labels(label, checkpoint.version)
        return checkpoint

    def maybe_reload(self) -> bool:
        """Switch to the store's current version if it changed; True when a switch happened.

        Called only between batches (no transaction open), so each batch is predicted by
        exactly one version.  A version that fails to load or mismatches is rejected once
        and the served model stays.
        """
        now = time.monotonic()
        if now - self._checked_at < self.reload_interval_s:
            return False
        self._checked_at = now
        try:
            name = self.store.current_version()
        except OSError as exc:
            log.warning("cannot read the model store's current pointer", extra={"error": str(exc)})
            return False
        if name is None or name == self.served or name == self._rejected:
            return False
        try:
            self.checkpoint = self._load(self.store.root / name)
        except ModelError as exc:
            self._rejected = name
            m.MODEL_RELOADS.labels("rejected").inc()
            log.error("new model rejected; keeping the current one",
                      extra={"model_version": name, "error": str(exc)})
            return False
        self.served = name
        self._rejected = None
        m.MODEL_RELOADS.labels("loaded").inc()
        return True


class ClassifierProcessor:
    def __init__(self, models: ModelServer) -> None:
        self.models = models

    def between_batches(self) -> None:
        self.models.maybe_reload()

    def process(self, batch: Sequence[InputRecord]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(batch)
        valid: list[tuple[int, Recording]] = []
        for i, record in enumerate(batch):
            try:
                rec = decode_keyed_recording(record.key, record.value)
                validate_samples(rec.samples, self.models.samples_per_record)
                if rec.filtered_us == 0:
                    raise DecodeError("not_filtered", "recording has no filtered timestamp: it skipped the filter")
                valid.append((i, rec))
            except (DecodeError, InvalidSignal) as exc:
                outcomes[i] = DeadLetter(exc.reason, exc.detail)
        if valid:
            checkpoint = self.models.checkpoint
            proba = checkpoint.predict_proba(np.vstack([rec.samples for _, rec in valid]))
            classes = checkpoint.classes
            stamp = now_us()
            for (i, rec), row in zip(valid, proba):
                predicted = classes[int(row.argmax())]
                prediction = Prediction(
                    record_id=rec.record_id,
                    predicted_label=predicted,
                    scores={c: float(p) for c, p in zip(classes, row)},
                    model_version=checkpoint.version,
                    true_label=rec.label,
                    shard=rec.shard,
                    produced_us=rec.produced_us,
                    filtered_us=rec.filtered_us,
                    predicted_us=stamp,
                )
                latency = max(prediction.latency_s, 0.0) if rec.produced_us else None
                # counted once its transaction commits: an aborted and redone batch counts once
                outcomes[i] = Output(rec.record_id.encode(), prediction.encode(),
                                     on_commit=partial(_count_prediction, predicted, checkpoint.version, latency))
        return outcomes  # type: ignore[return-value]


def _count_prediction(predicted: str, version: str, latency_s: float | None) -> None:
    m.PREDICTIONS.labels(predicted, version).inc()
    if latency_s is not None:
        m.E2E_LATENCY.observe(latency_s)


def limit_blas_threads(threads: int) -> None:
    """Cap the BLAS pool (0: leave it).  The ridge head's product of a batch's ~10 000 MiniRocket
    features is a tiny call; a pool of one thread per CPU spins after each one and burns a core
    (measured in docs/performance.md)."""
    if threads > 0:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads, user_api="blas")


def run(settings: Settings) -> int:
    use_numba_cache(settings.numba_cache_dir)
    termination = on_termination()  # before the model loads, which takes seconds
    with service(settings, ROLE) as health:
        metrics = StageMetrics(ROLE, health)
        health.add_check("broker", broker_check(settings))
        health.add_check("model", lambda: (False, "loading and warming up the model"))
        models = ModelServer(ModelStore(settings.models_dir), BandPass.from_settings(settings),
                             settings.samples_per_record, settings.model_reload_interval_s)
        limit_blas_threads(settings.classifier_blas_threads)  # now that the model's libraries are loaded
        health.add_check("model", lambda: (True, f"{models.checkpoint.version} loaded and warm"))
        health.add_check("partitions", lambda: (True, f"{metrics.partitions_assigned} assigned (or awaited)"))
        loop = StageLoop(settings, ROLE, settings.topic_filtered, settings.topic_predictions,
                         settings.group_classifier, ClassifierProcessor(models), metrics)
        termination.attach(loop.stop)
        loop.run()
    return 0
