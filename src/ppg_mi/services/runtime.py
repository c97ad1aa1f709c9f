"""What every service process shares: logging, the health/metrics server, signal handling."""

from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from confluent_kafka.admin import AdminClient

from ..config import Settings
from ..observability.logs import configure as configure_logging
from ..observability.server import Health, MetricsServer
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


@contextmanager
def service(settings: Settings, role: str) -> Iterator[Health]:
    """Configure logging, serve the endpoints and yield the process's :class:`Health`."""
    configure_logging(settings.log_level, settings.log_format)
    health = Health(settings.liveness_timeout_s)
    server = None
    if settings.metrics_port:
        server = MetricsServer(settings.metrics_host, settings.metrics_port, health).start()
        log.info("endpoints ready", extra={"role": role, "port": server.port,
                                           "paths": "/metrics /healthz /readyz"})
    try:
        yield health
    finally:
        if server is not None:
            server.stop()


def on_termination(stop: Callable[[], None]) -> threading.Event:
    """Call ``stop`` on the first SIGTERM/SIGINT; a second one exits at once."""
    fired = threading.Event()

    def handler(signum: int, frame: object) -> None:
        if fired.is_set():
            raise SystemExit(130)
        fired.set()
        log.info("shutdown requested", extra={"signal": signal.Signals(signum).name})
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return fired
