"""A read-process-write stage whose processing costs nothing: the limit Kafka sets a stage.

The same :class:`~ppg_mi.streaming.loop.StageLoop` as the filter (transactions, ``read_committed``,
the same settings, record size and batch), with a processor that writes each input record's key
and value unchanged.  What it moves per second is what Kafka and the loop allow any stage on
this machine; run as ``python -m ppg_mi.bench.identity`` (input ``topic_raw``, output
``topic_filtered``, group ``group_filter``).
"""

from __future__ import annotations

from typing import Sequence

from ..config import Settings
from ..observability.metrics import StageMetrics
from ..services.runtime import on_termination, service
from ..streaming.loop import InputRecord, Outcome, Output, StageLoop

ROLE = "identity"


class IdentityProcessor:
    """One output per input, its key and value as read."""

    def between_batches(self) -> None:
        return None

    def process(self, batch: Sequence[InputRecord]) -> list[Outcome]:
        return [Output(record.key, record.value) for record in batch]


def run(settings: Settings) -> int:
    termination = on_termination()
    with service(settings, ROLE) as health:
        loop = StageLoop(settings, ROLE, settings.topic_raw, settings.topic_filtered, settings.group_filter,
                         IdentityProcessor(), StageMetrics(ROLE, health))
        termination.attach(loop.stop)
        loop.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(run(Settings.from_env()))
