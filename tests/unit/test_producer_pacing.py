"""The paced producer's loop (pure logic: librdkafka's Producer is replaced by a recorder)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from ppg_mi.config import Settings
from ppg_mi.data import SyntheticConfig, generate
from ppg_mi.services import producer as producer_module


class RecordingProducer:
    """Acknowledges every record at once and waits in whole milliseconds, as librdkafka's poll() does."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.waits: list[float] = []
        self.sent_at: list[float] = []
        self.pending: list[Any] = []

    def produce(self, topic: str, value: bytes, key: bytes, on_delivery: Any) -> None:
        self.sent_at.append(time.monotonic())
        self.pending.append(on_delivery)

    def poll(self, timeout: float) -> int:
        self.waits.append(timeout)
        served = len(self.pending)
        for report in self.pending:
            report(None, None)
        self.pending.clear()
        if not served:
            time.sleep(int(timeout * 1000) / 1000)
        return served

    def flush(self, timeout: float) -> int:
        self.poll(0)
        return 0


@pytest.mark.parametrize("rate", [2000.0, 300.0])
def test_a_paced_producer_keeps_its_rate_without_spinning(monkeypatch: pytest.MonkeyPatch, rate: float) -> None:
    made: list[RecordingProducer] = []
    monkeypatch.setattr(producer_module, "Producer", lambda cfg: made.append(RecordingProducer(cfg)) or made[-1])
    records = 400
    data = generate(SyntheticConfig(records=records, samples=64, seed=1, id_prefix="pace"))
    settings = Settings(producer_rate=rate, samples_per_record=64)
    summary = producer_module.produce(settings, data, "0/1", progress=False)
    assert summary.ok and summary.delivered == records
    fake = made[0]
    # a wait shorter than librdkafka's millisecond is no wait: asking for one spun a core
    waits = [w for w in fake.waits if w > 0]
    assert waits and min(waits) >= producer_module.PACING_RESOLUTION_S
    # the schedule holds: no record more than the resolution ahead of its moment
    first = fake.sent_at[0]
    early = [(i / rate) - (t - first) for i, t in enumerate(fake.sent_at)]
    assert max(early) <= producer_module.PACING_RESOLUTION_S + 1e-4
