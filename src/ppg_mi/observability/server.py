"""One HTTP port per process: ``/metrics`` (Prometheus), ``/healthz`` (liveness), ``/readyz`` (readiness)."""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from ..config import Settings

log = logging.getLogger(__name__)

Check = Callable[[], tuple[bool, str]]


class Health:
    """Liveness from a heartbeat, readiness from named checks.

    Liveness: the main loop turned within ``liveness_timeout_s``.  Before the loop's
    first turn (start-up: model load and warm-up, joining the group) the process counts
    as live; readiness covers start-up.  A process that never beats (no main loop) is
    therefore always live: its /healthz only says that the process and its HTTP server respond.

    Readiness: every named check passes.  Each evaluation also sets ``ppg_mi_ready`` and
    ``ppg_mi_readiness_check``, so Prometheus sees what /readyz says.
    """

    def __init__(self, liveness_timeout_s: float = 30.0, role: str = "") -> None:
        self.liveness_timeout_s = liveness_timeout_s
        self.role = role
        self._last_beat: float | None = None
        self._checks: dict[str, Check] = {}
        self._lock = threading.Lock()

    def beat(self) -> None:
        self._last_beat = time.monotonic()

    @property
    def loop_started(self) -> bool:
        """True once the main loop has turned (for a stage: transactions initialised, subscribed)."""
        return self._last_beat is not None

    def add_check(self, name: str, check: Check) -> None:
        """Register (or replace) the readiness check ``name``."""
        self._checks[name] = check

    def live(self) -> tuple[bool, dict]:
        if self._last_beat is None:
            return True, {"loop": "not started yet (start-up is covered by /readyz)"}
        age = time.monotonic() - self._last_beat
        return age < self.liveness_timeout_s, {"loop_last_turn_seconds_ago": round(age, 3)}

    def ready(self) -> tuple[bool, dict]:
        from . import metrics as m  # metrics imports this module for typing only

        results = {}
        ok = True
        # one evaluation at a time: a scrape and a probe arriving together share the broker check
        with self._lock:
            for name, check in list(self._checks.items()):
                try:
                    passed, detail = check()
                except Exception as exc:  # noqa: BLE001 - a failing check means not ready
                    passed, detail = False, repr(exc)
                results[name] = {"ok": passed, "detail": detail}
                m.READY_CHECK.labels(self.role, name).set(1 if passed else 0)
                ok = ok and passed
            m.READY.labels(self.role).set(1 if ok else 0)
        return ok, results


class _Handler(BaseHTTPRequestHandler):
    health: Health

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self.health.ready()  # refreshes ppg_mi_ready so the scrape carries the current readiness
            self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            ok, body = self.health.live()
            self._json(ok, body)
        elif path == "/readyz":
            ok, body = self.health.ready()
            self._json(ok, body)
        else:
            self._send(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain")

    def _json(self, ok: bool, body: dict) -> None:
        self._send(200 if ok else 503, json.dumps({"ok": ok, **body}).encode() + b"\n", "application/json")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - silence access logs
        return


class MetricsServer:
    """Serves the three endpoints from a daemon thread.

    Usable from any process, including one whose main thread belongs to another
    framework (the Streamlit dashboard)::

        health = Health(30.0, role="dashboard")
        server = serve_endpoints(settings, health)

    ``port=0`` binds a free port; :attr:`port` tells which.
    """

    def __init__(self, host: str, port: int, health: Health) -> None:
        handler = type("Handler", (_Handler,), {"health": health})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="metrics-server", daemon=True)

    def start(self) -> "MetricsServer":
        self._thread.start()
        log.info("metrics server listening", extra={"port": self.port})
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def serve_endpoints(settings: Settings, health: Health) -> MetricsServer | None:
    """Start the process's endpoints as configured; None when the server is disabled.

    With ``metrics_port_file`` set, port 0 binds a free port, and the bound port is written there
    (atomically) for ``ppg-mi probe``: the probes of pods sharing one host network find it so.
    """
    if not settings.metrics_port and not settings.metrics_port_file:
        return None
    server = MetricsServer(settings.metrics_host, settings.metrics_port, health).start()
    if settings.metrics_port_file:
        path = Path(settings.metrics_port_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(f"{server.port}\n")
        tmp.replace(path)
    return server
