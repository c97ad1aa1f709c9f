"""The filter service: ``ppg.raw`` → band-pass + z-score → ``ppg.filtered``."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..config import Settings
from ..observability.metrics import StageMetrics
from ..signal import BandPass, InvalidSignal, preprocess_batch, validate_samples
from ..streaming.codec import Recording, decode_keyed_recording, now_us
from ..streaming.exceptions import DecodeError
from ..streaming.loop import DeadLetter, InputRecord, Outcome, Output, StageLoop
from .runtime import broker_check, on_termination, service

ROLE = "filter"


class FilterProcessor:
    """Decode, validate, filter a batch of raw recordings; one outcome per input."""

    def __init__(self, band: BandPass, samples_per_record: int) -> None:
        self.default_band = band
        self.samples_per_record = samples_per_record

    def between_batches(self) -> None:
        return None

    def process(self, batch: Sequence[InputRecord]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(batch)
        # group valid recordings by sampling rate: each group is filtered in one vectorised call
        groups: dict[float, list[tuple[int, Recording]]] = {}
        for i, record in enumerate(batch):
            try:
                rec = decode_keyed_recording(record.key, record.value)
                validate_samples(rec.samples, self.samples_per_record)
                groups.setdefault(rec.sampling_rate_hz, []).append((i, rec))
            except (DecodeError, InvalidSignal) as exc:
                outcomes[i] = DeadLetter(exc.reason, exc.detail)
        for rate, members in groups.items():
            band = self.default_band if rate == self.default_band.sampling_rate_hz else BandPass(
                rate, self.default_band.low_hz, self.default_band.high_hz, self.default_band.order)
            if not band.high_hz < rate / 2:
                for i, _ in members:
                    outcomes[i] = DeadLetter("bad_sampling_rate", f"{rate} Hz is too low for the band-pass")
                continue
            filtered = preprocess_batch(np.vstack([rec.samples for _, rec in members]), band)
            stamp = now_us()
            for (i, rec), row in zip(members, filtered):
                rec.samples = row
                rec.filtered_us = stamp
                outcomes[i] = Output(rec.record_id.encode(), rec.encode())
        return outcomes  # type: ignore[return-value]


def run(settings: Settings) -> int:
    termination = on_termination()
    with service(settings, ROLE) as health:
        metrics = StageMetrics(ROLE, health)
        loop = StageLoop(settings, ROLE, settings.topic_raw, settings.topic_filtered, settings.group_filter,
                         FilterProcessor(BandPass.from_settings(settings), settings.samples_per_record),
                         metrics)
        health.add_check("broker", broker_check(settings))
        health.add_check("partitions", lambda: (True, f"{metrics.partitions_assigned} assigned (or awaited)"))
        termination.attach(loop.stop)
        loop.run()
    return 0
