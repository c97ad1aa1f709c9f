"""Dead letters: the refused record, plus headers naming which stage refused it, why, and where it came from.

A dead letter is the refused record itself (same key, same value) plus these headers, written
to ``ppg.dlq`` in the same transaction that commits the input offset.  When the whole does not
fit in one message (the record was oversized, or its key, value and the headers together exceed
``PPG_MI_MAX_MESSAGE_BYTES``), or the broker refused the full form, it is written in a *reduced
form*: the key cut to its first :data:`KEY_KEPT_BYTES`, the value to its first
:data:`VALUE_KEPT_BYTES`, and the headers ``ppg-mi.truncated: true``,
``ppg-mi.original.key.bytes`` and ``ppg-mi.original.value.bytes`` added, so the partition moves
on and the dead letter still names the original record exactly (topic, partition, offset).
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
H_KEY_BYTES = "ppg-mi.original.key.bytes"
H_VALUE_BYTES = "ppg-mi.original.value.bytes"

#: bytes of the original key kept in a reduced dead letter
KEY_KEPT_BYTES = 256
#: bytes of the original value kept in a reduced dead letter
VALUE_KEPT_BYTES = 1024
#: room left for the record batch's framing (batch header, varints) when sizing a dead letter
FRAMING_BYTES = 512


def dead_letter_headers(stage: str, reason: str, detail: str, record: "InputRecord",
                        truncated: bool = False) -> list[tuple[str, bytes]]:
    """Headers naming the stage, the reason and the record's original topic/partition/offset;
    with ``truncated``, also the marker and the original key and value sizes."""
    headers = [
        (H_STAGE, stage.encode()),
        (H_REASON, reason.encode()),
        (H_DETAIL, detail[:1000].encode("utf-8", errors="replace")),
        (H_TOPIC, record.topic.encode()),
        (H_PARTITION, str(record.partition).encode()),
        (H_OFFSET, str(record.offset).encode()),
    ]
    if truncated:
        headers += [
            (H_TRUNCATED, b"true"),
            (H_KEY_BYTES, str(len(record.key or b"")).encode()),
            (H_VALUE_BYTES, str(len(record.value)).encode()),
        ]
    return headers


def message_bytes(key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> int:
    """What a message weighs against the broker's ``max.message.bytes`` (framing included)."""
    return len(key or b"") + len(value) + sum(len(k) + len(v) for k, v in headers) + FRAMING_BYTES


def dead_letter(stage: str, reason: str, detail: str, record: "InputRecord", limit: int,
                reduced: bool = False) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) of ``record``'s dead letter: whole if it fits in ``limit`` bytes and
    ``reduced`` is not asked for, else the reduced form (key and value cut, sizes in headers)."""
    if not reduced:
        headers = dead_letter_headers(stage, reason, detail, record)
        if message_bytes(record.key, record.value, headers) <= limit:
            return record.key, record.value, headers
    key = record.key[:KEY_KEPT_BYTES] if record.key is not None else None
    headers = dead_letter_headers(stage, reason, detail, record, truncated=True)
    return key, record.value[:VALUE_KEPT_BYTES], headers


def headers_dict(headers: list[tuple[str, bytes]] | None) -> dict[str, str]:
    return {k: (v or b"").decode("utf-8", errors="replace") for k, v in (headers or [])}
