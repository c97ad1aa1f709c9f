"""The paced producer's loop (pure logic: librdkafka's Producer and the clock are replaced)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from ppg_mi.config import Settings
from ppg_mi.data import SyntheticConfig, generate
from ppg_mi.services import producer as producer_module


class RecordingProducer:
    """Acknowledges every record at once; a poll with nothing to serve lets its timeout pass on a
    fake clock (a real one under a millisecond returns at once, and the caller spins meanwhile)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []
        self.sent_at: list[float] = []
        self.pending: list[Any] = []

    def monotonic(self) -> float:
        return self.now

    def produce(self, topic: str, value: bytes, key: bytes, on_delivery: Any) -> None:
        self.sent_at.append(self.now)
        self.pending.append(on_delivery)

    def poll(self, timeout: float) -> int:
        self.waits.append(timeout)
        served = len(self.pending)
        for report in self.pending:
            report(None, None)
        self.pending.clear()
        if not served:
            self.now += timeout
        return served

    def flush(self, timeout: float) -> int:
        self.poll(0)
        return 0

    def list_topics(self, topic: str, timeout: float) -> object:
        return object()


@pytest.mark.parametrize("rate", [2000.0, 300.0])
def test_a_paced_producer_keeps_its_rate_without_spinning(monkeypatch: pytest.MonkeyPatch, rate: float) -> None:
    fake = RecordingProducer()
    monkeypatch.setattr(producer_module, "Producer", lambda cfg: fake)
    monkeypatch.setattr(producer_module, "time", SimpleNamespace(monotonic=fake.monotonic))
    records = 400
    data = generate(SyntheticConfig(records=records, samples=64, seed=1, id_prefix="pace"))
    settings = Settings(producer_rate=rate, samples_per_record=64)
    summary = producer_module.produce(settings, data, "0/1", progress=False)
    assert summary.ok and summary.delivered == records
    # a wait shorter than librdkafka's millisecond is no wait: asking for one spun a core
    waits = [w for w in fake.waits if w > 0]
    assert waits and min(waits) >= producer_module.PACING_RESOLUTION_S
    # the schedule holds: no record more than the resolution ahead of its moment
    early = [i / rate - t for i, t in enumerate(fake.sent_at)]
    assert max(early) <= producer_module.PACING_RESOLUTION_S + 1e-9
    # and none late: the whole shard took its scheduled time, within a millisecond
    assert fake.sent_at[-1] == pytest.approx((records - 1) / rate, abs=producer_module.PACING_RESOLUTION_S)


class ConnectingProducer(RecordingProducer):
    """Notes when the topic's metadata was asked for, against the records produced by then."""

    def __init__(self, reachable: bool) -> None:
        super().__init__()
        self.reachable = reachable
        self.metadata_asked_after: list[int] = []

    def list_topics(self, topic: str, timeout: float) -> object:
        self.metadata_asked_after.append(len(self.sent_at))
        if not self.reachable:
            from confluent_kafka import KafkaError, KafkaException

            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "all brokers down"))
        return object()


@pytest.mark.parametrize("reachable", [True, False])
def test_the_producer_connects_before_its_first_record_and_sends_even_if_it_cannot_yet(
        monkeypatch: pytest.MonkeyPatch, reachable: bool) -> None:
    fake = ConnectingProducer(reachable)
    monkeypatch.setattr(producer_module, "Producer", lambda cfg: fake)
    data = generate(SyntheticConfig(records=20, samples=64, seed=1, id_prefix="conn"))
    summary = producer_module.produce(Settings(samples_per_record=64), data, "0/1", progress=False)
    assert fake.metadata_asked_after == [0], "metadata fetched once, before any record was produced"
    assert summary.ok and summary.delivered == 20
