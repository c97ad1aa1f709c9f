"""A client call that ignores its own timeout is abandoned at the caller's deadline."""

from __future__ import annotations

import threading
import time

import pytest

from ppg_mi.streaming.bounded import call_with_deadline
from ppg_mi.streaming.exceptions import StuckCall


def test_returns_the_value() -> None:
    assert call_with_deadline(lambda: 42, 1.0, "answer") == 42


def test_reraises_the_calls_exception() -> None:
    def fail() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        call_with_deadline(fail, 1.0, "fail")


def test_a_blocked_call_raises_stuck_and_leaves_its_thread_behind() -> None:
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(StuckCall, match="blocker did not return within 0.2 s"):
        call_with_deadline(release.wait, 0.2, "blocker")
    assert time.monotonic() - started < 5  # the caller is free long before the call returns
    stuck = [t for t in threading.enumerate() if t.name == "call:blocker"]
    assert stuck and all(t.daemon for t in stuck)
    release.set()
    stuck[0].join(5)
    assert not stuck[0].is_alive()
