"""Run a blocking client call with a deadline the caller enforces, not the library.

librdkafka does not always honour the timeout of its transactional calls: after the group
coordinator went away (a broker restart), ``send_offsets_to_transaction`` can block until a
coordinator lookup that nothing re-triggers (confluentinc/librdkafka#5456, #5511).  The
call runs in a daemon thread instead; when the deadline passes the caller gets
:class:`StuckCall` and goes on, and the thread is left blocked with the client it holds.
The caller must then stop using that client.
"""

from __future__ import annotations

import threading
from typing import Callable, TypeVar

from .exceptions import StuckCall

T = TypeVar("T")


def call_with_deadline(fn: Callable[[], T], seconds: float, what: str) -> T:
    """Return ``fn()``, re-raise its exception, or raise :class:`StuckCall` after ``seconds``."""
    done = threading.Event()
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread as is
            outcome["error"] = exc
        finally:
            done.set()

    # a daemon thread: one stuck forever must not keep the interpreter from exiting
    threading.Thread(target=run, name=f"call:{what}", daemon=True).start()
    if not done.wait(seconds):
        raise StuckCall(f"{what} did not return within {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
