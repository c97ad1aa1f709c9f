"""`ppg-mi probe`: the exec probe of pods that share the host network, against a real endpoint server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ppg_mi.config import Settings
from ppg_mi.observability.server import Health, serve_endpoints


def _probe(path: str, settings: Settings) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ppg_mi", "probe", path], capture_output=True, text=True,
                          env={**os.environ, **settings.as_env()}, timeout=60)


def test_a_free_port_is_written_and_found_by_the_probe(tmp_path: Path) -> None:
    settings = Settings.from_env({}, metrics_port=0, metrics_port_file=str(tmp_path / "run" / "metrics.port"))
    assert _probe("/healthz", settings).returncode == 1, "no port file yet: the probe fails"
    health = Health(role="test")
    health.add_check("model", lambda: (False, "warming up"))
    server = serve_endpoints(settings, health)
    try:
        assert server is not None and server.port > 0
        assert (tmp_path / "run" / "metrics.port").read_text().strip() == str(server.port)
        assert server.httpd.server_address[0] == "127.0.0.1", "binds loopback unless configured otherwise"
        live = _probe("/healthz", settings)
        assert live.returncode == 0, live.stdout
        ready = _probe("/readyz", settings)
        assert ready.returncode == 1 and "503" in ready.stdout and "warming up" in ready.stdout
    finally:
        server.stop()


def test_port_zero_without_a_port_file_disables_the_server() -> None:
    assert serve_endpoints(Settings.from_env({}, metrics_port=0), Health()) is None
