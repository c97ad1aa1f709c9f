"""Dead-letter headers: which stage refused a record, why, and where it came from.

A dead letter is the refused record itself (same key, same value; an oversized value is
cut to its first KiB and marked ``ppg-mi.truncated: true``) plus these headers, written
to ``ppg.dlq`` in the same transaction that commits the input offset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .loop import InputRecord

H_STAGE = "ppg-mi.stage"
H_REASON = "ppg-mi.reason"
H_DETAIL = "ppg-mi.detail"
H_TOPIC = "ppg-mi.original.topic"
H_PARTITION = "ppg-mi.original.partition"
H_OFFSET = "ppg-mi.original.offset"
H_TRUNCATED = "ppg-mi.truncated"


def dead_letter_headers(stage: str, reason: str, detail: str, record: "InputRecord",
                        truncated: bool = False) -> list[tuple[str, bytes]]:
    """Headers naming the stage, the reason and the record's original topic/partition/offset."""
    headers = [
        (H_STAGE, stage.encode()),
        (H_REASON, reason.encode()),
        (H_DETAIL, detail[:1000].encode("utf-8", errors="replace")),
        (H_TOPIC, record.topic.encode()),
        (H_PARTITION, str(record.partition).encode()),
        (H_OFFSET, str(record.offset).encode()),
    ]
    if truncated:
        headers.append((H_TRUNCATED, b"true"))
    return headers


def headers_dict(headers: list[tuple[str, bytes]] | None) -> dict[str, str]:
    return {k: (v or b"").decode("utf-8", errors="replace") for k, v in (headers or [])}
