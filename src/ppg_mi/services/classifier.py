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
from ..model.checkpoint import CARD_FILE, ESTIMATOR_FILE
from ..model.numba_cache import use_numba_cache
from ..model.threads import set_transform_threads, usable_cpus
from ..observability import metrics as m
from ..observability.metrics import StageMetrics
from ..signal import BandPass, InvalidSignal, conform, validate_samples
from ..streaming.codec import Prediction, Recording, decode_keyed_recording, now_us
from ..streaming.exceptions import DecodeError
from ..streaming.loop import DeadLetter, InputRecord, Outcome, Output, StageLoop
from .runtime import broker_check, on_termination, service

ROLE = "classifier"
#: longest error text kept in a rejection (it is logged and shown on /readyz)
MAX_REASON_CHARS = 500
log = logging.getLogger(__name__)


class ModelServer:
    """The served checkpoint, switched to a new ``current`` version only between batches.

    ``served`` is the store entry whose checkpoint is served; a change of ``current`` is
    noticed by comparing names, so a checkpoint whose directory is named differently from
    its card's version is not reloaded again and again.

    A version that fails to load for *any* reason (unreadable card, card mismatch, digest
    mismatch, unpickling error, warm-up raising, ...) is rejected: logged once, counted in
    ``ppg_mi_model_reloads_total{outcome="rejected"}``, and not tried again until ``current``
    names another version or its files change; the model already served keeps serving.
    Constructing it loads ``current``; a rejected ``current`` falls back to the store's
    ``previous`` version; when neither loads, ``checkpoint`` stays None and the service waits
    (:meth:`wait_until_loaded`), live but not ready, for a ``current`` that loads, instead of
    exiting into a restart that loads the same one.  No ``current`` at all raises
    :class:`ModelError` (there is nothing to wait for that a restart would not also wait for:
    the message says how to train one).
    """

    def __init__(self, store: ModelStore, band: BandPass, samples_per_record: int, reload_interval_s: float,
                 threads: int = 1) -> None:
        self.store = store
        self.threads = threads
        self.band = band
        self.samples_per_record = samples_per_record
        self.reload_interval_s = reload_interval_s
        self.checkpoint: Checkpoint | None = None
        self.served: str | None = None
        self._rejected: tuple | None = None       # (name, file signature) of the last rejected version
        self.rejection: str | None = None         # why ``current`` is not served, while it is not
        self._checked_at = time.monotonic()
        for outcome in ("loaded", "rejected"):
            m.MODEL_RELOADS.labels(outcome)       # both series exist at 0 before the first switch
        m.MODEL_CURRENT_REJECTED.set(0)
        self._start()

    def _start(self) -> bool:
        """Load ``current`` (or, failing that, ``previous``); False when neither loads."""
        name = self.store.current_version()
        if name is None:
            self.store.current_path()             # raises the "no model in …" error
        assert name is not None
        signature = self._signature(name)
        failure = self._serve(name)
        if failure is None:
            return True
        self._reject(name, signature, failure)
        previous = self.store.previous_version()
        if previous is not None and previous != name:
            failure = self._serve(previous)
            if failure is None:
                log.error("serving the previous model version: current cannot be loaded",
                          extra={"model_version": previous, "rejected_version": name, "error": self.rejection})
                return True
            m.MODEL_RELOADS.labels("rejected").inc()
            log.error("the previous model version cannot be loaded either",
                      extra={"model_version": previous, "error": failure})
        return False

    def wait_until_loaded(self) -> None:
        """Poll ``current`` every reload interval until a version loads (SIGTERM ends the process)."""
        while self.checkpoint is None:
            time.sleep(self.reload_interval_s)
            self.maybe_reload()

    def check(self) -> tuple[bool, str]:
        """The readiness check: a model is loaded (and why ``current`` is not it, if it is not)."""
        if self.checkpoint is None:
            return False, f"no model loaded: {self.rejection}; waiting for a `current` that loads"
        detail = f"{self.checkpoint.version} loaded and warm"
        if self.rejection is not None:
            detail += f"; `current` not served: {self.rejection}"
        return True, detail

    def maybe_reload(self) -> bool:
        """Switch to the store's current version if it changed; True when a switch happened.

        Called only between batches (no transaction open), so each batch is predicted by
        exactly one version.  Never raises: a version that fails is rejected and the served
        model stays.
        """
        now = time.monotonic()
        if now - self._checked_at < self.reload_interval_s:
            return False
        self._checked_at = now
        try:
            name = self.store.current_version()
        except Exception as exc:  # noqa: BLE001 - an unreadable pointer must not end the service
            log.warning("cannot read the model store's current pointer", extra={"error": str(exc)})
            return False
        if name is None or name == self.served:
            if name == self.served and self.rejection is not None:
                self._clear_rejection()           # `current` moved back to the version served
            return False
        signature = self._signature(name)
        if self._rejected == (name, signature):
            return False
        failure = self._serve(name)
        if failure is not None:
            self._reject(name, signature, failure)
            return False
        self._clear_rejection()
        m.MODEL_RELOADS.labels("loaded").inc()
        return True

    def _serve(self, name: str) -> str | None:
        """Load, warm up and serve version ``name``; None when served, else why it failed."""
        try:
            checkpoint = self._load(self.store.root / name)
        except Exception as exc:  # noqa: BLE001 - any failure of a new model must leave the served one serving
            if not isinstance(exc, ModelError):   # unexpected: the traceback says where
                log.error("loading or warming up a model version raised", exc_info=True,
                          extra={"model_version": name})
            return f"{name}: {_describe(exc)}"
        self.checkpoint = checkpoint
        self.served = name
        return None

    def _reject(self, name: str, signature: tuple, reason: str) -> None:
        """``current`` (``name``) failed: remember it by its files, say so once, count it."""
        self._rejected = (name, signature)
        self.rejection = reason
        m.MODEL_RELOADS.labels("rejected").inc()
        m.MODEL_CURRENT_REJECTED.set(1)
        log.error("model version rejected; %s", "keeping the served one" if self.checkpoint is not None
                  else "no model served yet", extra={"model_version": name, "error": reason,
                                                     "served_version": self.served})

    def _clear_rejection(self) -> None:
        self._rejected = None
        self.rejection = None
        m.MODEL_CURRENT_REJECTED.set(0)

    def _signature(self, name: str) -> tuple:
        """What identifies a version's files: a rejected version is retried once they change."""
        out: list = []
        for file in (CARD_FILE, ESTIMATOR_FILE):
            try:
                st = (self.store.root / name / file).stat()
                out.append((st.st_size, st.st_mtime_ns, st.st_ino))
            except OSError:
                out.append(None)
        return tuple(out)

    def _load(self, path) -> Checkpoint:  # noqa: ANN001
        checkpoint = load_checkpoint(path, self.band, self.samples_per_record)
        set_transform_threads(checkpoint.estimator, self.threads)  # before the warm-up compiles for them
        # numba compiles on the first call: pay it here, before readiness or the switch
        seconds = checkpoint.warm_up(self.samples_per_record)
        log.info("model loaded", extra={"model_version": checkpoint.version, "warm_up_seconds": round(seconds, 2)})
        m.MODEL_INFO.info({"version": checkpoint.version, "kind": str(checkpoint.card.get("kind", ""))})
        # series exist at 0 before the first prediction, so rate() sees that first increment
        for label in checkpoint.classes:
            m.PREDICTIONS.labels(label, checkpoint.version)
        return checkpoint


def _describe(exc: BaseException) -> str:
    """One line naming the error: a ModelError says it all, anything else also needs its type."""
    lines = str(exc).splitlines()
    text = lines[0][:MAX_REASON_CHARS] if lines else ""
    if isinstance(exc, ModelError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ClassifierProcessor:
    def __init__(self, models: ModelServer) -> None:
        self.models = models

    def between_batches(self) -> None:
        self.models.maybe_reload()

    def process(self, batch: Sequence[InputRecord]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(batch)
        valid: list[tuple[int, Recording]] = []
        inputs: list[np.ndarray] = []
        checkpoint = self.models.checkpoint
        assert checkpoint is not None, "the loop starts only once a model is served"
        model_rate = checkpoint.sampling_rate_hz
        for i, record in enumerate(batch):
            try:
                rec = decode_keyed_recording(record.key, record.value)
                validate_samples(rec.samples, self.models.samples_per_record)
                if rec.filtered_us == 0:
                    raise DecodeError("not_filtered", "recording has no filtered timestamp: it skipped the filter")
                inputs.append(_at_model_rate(rec, model_rate, self.models.samples_per_record))
                valid.append((i, rec))
            except (DecodeError, InvalidSignal) as exc:
                outcomes[i] = DeadLetter(exc.reason, exc.detail)
        if valid:
            # the model's operating point decides (threshold on the calibrated MI probability), else the argmax
            proba, decided = checkpoint.decide(np.vstack(inputs))
            classes = checkpoint.classes
            point = checkpoint.operating_point or {}
            stamp = now_us()
            for (i, rec), row, predicted in zip(valid, proba, decided):
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
                    threshold=checkpoint.threshold,
                    target_sensitivity=point.get("target_sensitivity"),
                    validation_sensitivity=point.get("validation_sensitivity"),
                    validation_specificity=point.get("validation_specificity"),
                    validation_brier=point.get("validation_brier"),
                )
                latency = max(prediction.latency_s, 0.0) if rec.produced_us else None
                # counted once its transaction commits: an aborted and redone batch counts once
                outcomes[i] = Output(rec.record_id.encode(), prediction.encode(),
                                     on_commit=partial(_count_prediction, predicted, checkpoint.version, latency))
        return outcomes  # type: ignore[return-value]


def _at_model_rate(rec: Recording, model_rate: float | None, length: int) -> np.ndarray:
    """The recording's filtered samples as the model expects them: resampled from the rate its
    message carries to the rate the model was trained at, and fitted to its window.

    The filter band-passes each recording at its own rate, but the model knows time only as sample
    index: a 250 Hz recording given as is to a 125 Hz model looks like a pulse half as fast.  A rate
    that cannot be resampled (no small-integer ratio, or too short a recording once resampled) raises
    :class:`InvalidSignal` ``bad_sampling_rate``: a dead letter saying why.
    """
    if model_rate is None or abs(rec.sampling_rate_hz - model_rate) <= 1e-6 * model_rate:
        return rec.samples
    try:
        return conform(rec.samples, rec.sampling_rate_hz, model_rate, length)
    except InvalidSignal as exc:
        raise InvalidSignal(exc.reason, f"recording at {rec.sampling_rate_hz:g} Hz, model trained at "
                                        f"{model_rate:g} Hz: {exc.detail}") from None


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
    use_numba_cache(settings.numba_cache_dir, settings.numba_cache_seed_dir)
    termination = on_termination()  # before the model loads, which takes seconds
    with service(settings, ROLE) as health:
        metrics = StageMetrics(ROLE, health)
        health.add_check("broker", broker_check(settings))
        health.add_check("model", lambda: (False, "loading and warming up the model"))
        threads = settings.classifier_threads or usable_cpus()
        m.CLASSIFIER_THREADS.set(threads)
        models = ModelServer(ModelStore(settings.models_dir), BandPass.from_settings(settings),
                             settings.samples_per_record, settings.model_reload_interval_s, threads)
        health.add_check("model", models.check)
        if models.checkpoint is None:
            # live but not ready: a restart would load the same `current` and fail again
            models.wait_until_loaded()
        limit_blas_threads(settings.classifier_blas_threads)  # now that the model's libraries are loaded
        health.add_check("partitions", lambda: (True, f"{metrics.partitions_assigned} assigned (or awaited)"))
        loop = StageLoop(settings, ROLE, settings.topic_filtered, settings.topic_predictions,
                         settings.group_classifier, ClassifierProcessor(models), metrics)
        termination.attach(loop.stop)
        loop.run()
    return 0
