"""What every service process shares: logging, the health/metrics server, signal handling."""

from __future__ import annotations

import logging
import os
import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from confluent_kafka.admin import AdminClient

from ..config import Settings
from ..observability.lag import GroupLagMonitor
from ..observability.logs import configure as configure_logging
from ..observability.server import Health, serve_endpoints
from ..streaming.clients import common_config

log = logging.getLogger(__name__)


def broker_check(settings: Settings) -> Callable[[], tuple[bool, str]]:
    admin = AdminClient(common_config(settings))

    def check() -> tuple[bool, str]:
        try:
            md = admin.list_topics(timeout=2)
            return True, f"{len(md.brokers)} broker(s)"
        except Exception as exc:  # noqa: BLE001
            return False, f"broker unreachable: {exc}"

    return check


def consumed_topic(settings: Settings, role: str) -> tuple[str, str] | None:
    """(consumer group, input topic) of a consuming stage; None for roles that commit no offsets."""
    return {
        "filter": (settings.group_filter, settings.topic_raw),
        "classifier": (settings.group_classifier, settings.topic_filtered),
    }.get(role)


@contextmanager
def service(settings: Settings, role: str) -> Iterator[Health]:
    """Configure logging, serve the endpoints and yield the process's :class:`Health`.

    A consuming stage also exports its group's committed lag (``ppg_mi_consumer_lag_records``).
    """
    configure_logging(settings.log_level, settings.log_format)
    health = Health(settings.liveness_timeout_s, role=role)
    server = None
    lag_monitor = None
    server = serve_endpoints(settings, health)
    if server is not None:
        log.info("endpoints ready", extra={"role": role, "port": server.port,
                                           "paths": "/metrics /healthz /readyz"})
    consumed = consumed_topic(settings, role)
    if consumed is not None:
        # a stage is not ready before its loop runs: init_transactions can wait long for the
        # transaction coordinator of a freshly started broker
        health.add_check("loop", lambda: (health.loop_started, "running" if health.loop_started
                                          else "initialising transactions and subscribing"))
        if server is not None:
            lag_monitor = GroupLagMonitor(settings, role, *consumed, interval_s=settings.lag_interval_s,
                                          wait_for=lambda: health.loop_started).start()
    try:
        yield health
    finally:
        if lag_monitor is not None:
            lag_monitor.stop()
        if server is not None:
            server.stop()


class Termination:
    """SIGTERM/SIGINT handling, installed before the slow start-up (broker, model).

    Until a loop is :meth:`attach`-ed nothing is in flight, so a signal ends the process
    at once (exit 0); afterwards the first signal calls the loop's ``stop`` and a second
    one exits at once (130).
    """

    def __init__(self) -> None:
        self.fired = threading.Event()
        self._stop: Callable[[], None] | None = None
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def attach(self, stop: Callable[[], None]) -> None:
        self._stop = stop
        if self.fired.is_set():
            stop()

    def _handle(self, signum: int, frame: object) -> None:
        if self.fired.is_set():
            raise SystemExit(130)
        self.fired.set()
        log.info("shutdown requested", extra={"signal": signal.Signals(signum).name,
                                              "during": "run" if self._stop else "start-up"})
        if self._stop is None:
            # Nothing is in flight yet, so leave at once.  Not by raising SystemExit: the signal
            # lands in whatever runs, and C code unpickling the model turned it into an unrelated
            # ValueError ("not a valid PEP 3118 buffer format string"), so the process exited 1.
            logging.shutdown()
            os._exit(0)
        self._stop()


def on_termination(stop: Callable[[], None] | None = None) -> Termination:
    """Handle SIGTERM/SIGINT from now on; ``stop`` (or a later :meth:`Termination.attach`) ends the run."""
    termination = Termination()
    if stop is not None:
        termination.attach(stop)
    return termination
