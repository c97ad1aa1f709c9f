"""After a rewind, a partition's records count only from the rewind's offset on (seek() can be lost)."""

from __future__ import annotations

from ppg_mi.config import Settings
from ppg_mi.local.kafka import free_port
from ppg_mi.streaming.loop import InputRecord, NullObserver, StageLoop


class RecordingConsumer:
    def __init__(self) -> None:
        self.seeks: list[tuple[str, int, int]] = []

    def seek(self, tp) -> None:  # noqa: ANN001
        self.seeks.append((tp.topic, tp.partition, tp.offset))


def _loop() -> StageLoop:
    # nothing listens on the port: the clients are created but never used
    settings = Settings.from_env({}, kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")
    loop = StageLoop(settings, "test", "in", "out", "group", processor=None, observer=NullObserver())  # type: ignore[arg-type]
    loop.consumer = RecordingConsumer()  # type: ignore[assignment]
    loop._assigned = {("in", 0), ("in", 1)}
    return loop


def rec(partition: int, offset: int) -> InputRecord:
    return InputRecord(b"k", b"v", "in", partition, offset, 0)


def test_records_resume_at_the_rewind_offset() -> None:
    loop = _loop()
    loop._rewind([rec(0, 40), rec(0, 41), rec(1, 7)])
    assert loop.consumer.seeks == [("in", 0, 40), ("in", 1, 7)]
    # partition 0 resumed where it should; partition 1 came back from the position before the seek
    kept = loop._from_rewind_points([rec(0, 40), rec(0, 41), rec(1, 9), rec(1, 10)])
    assert [(r.partition, r.offset) for r in kept] == [(0, 40), (0, 41)]
    assert loop.consumer.seeks[-1] == ("in", 1, 7)  # sought again
    # once the record at the rewind's offset is back, everything after it counts
    kept = loop._from_rewind_points([rec(1, 7), rec(1, 8), rec(0, 42)])
    assert [(r.partition, r.offset) for r in kept] == [(1, 7), (1, 8), (0, 42)]
    assert loop._rewound == {}


def test_records_from_before_the_rewind_are_dropped_too() -> None:
    loop = _loop()
    loop._rewind([rec(0, 40)])
    # a position reset to an earlier (already committed) offset would redo committed records
    kept = loop._from_rewind_points([rec(0, 38), rec(0, 39), rec(0, 40), rec(0, 41)])
    assert [r.offset for r in kept] == [40, 41]
    assert loop.consumer.seeks == [("in", 0, 40)]  # the stream reached 40 in the same batch: no second seek


def test_a_revoked_partition_forgets_its_rewind() -> None:
    from confluent_kafka import TopicPartition

    loop = _loop()
    loop._rewind([rec(0, 40), rec(1, 3)])
    loop._on_revoke(None, [TopicPartition("in", 1)])  # type: ignore[arg-type]
    assert loop._rewound == {("in", 0): 40}
