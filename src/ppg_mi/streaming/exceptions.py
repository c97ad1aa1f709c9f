"""Errors of the streaming layer."""

from __future__ import annotations


class StreamingError(Exception):
    """Base class of the streaming layer's errors."""


class DecodeError(StreamingError):
    """Bytes that are not a valid message of the expected schema.

    ``reason`` is a short stable token (``truncated``, ``unknown_schema``...) used as the
    dead-letter reason and metric label; ``detail`` is for humans.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class RejectedRecord(StreamingError):
    """A decoded record that a stage refuses to process (NaN samples, flat signal...)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class FencedError(StreamingError):
    """Another process took over this process's transactional id; this one must stop."""


class ProducerFailed(StreamingError):
    """The transactional producer failed fatally again and again, with no commit between."""


class BrokerUnavailable(StreamingError):
    """The broker did not answer within the deadline."""


class StuckCall(StreamingError):
    """A client call blocked past its deadline; the client it was made on must be replaced."""


class TransactionExpired(StreamingError):
    """An open transaction used up its share of ``transaction.timeout.ms`` before it committed:
    the loop ends it itself (abort, or a new producer) before the coordinator times it out."""


class ConsumerFailed(StreamingError):
    """The consumer reported a fatal error: it cannot be used any more and must be replaced."""
