"""Reading a running service's HTTP endpoints from the process that started it.

The demo and the bench supervise the services as child processes and follow them through
the same ``/metrics`` and ``/readyz`` a Kubernetes probe or Prometheus reads.
"""

from __future__ import annotations

import urllib.error
import urllib.request


def fetch(port: int, path: str, timeout: float = 2.0) -> str | None:
    """Body of ``GET http://127.0.0.1:<port><path>``; ``None`` when nothing answers or the status is not 2xx."""
    code, body = status("127.0.0.1", port, path, timeout)
    return body if 200 <= code < 300 else None


def status(host: str, port: int, path: str, timeout: float = 2.0) -> tuple[int, str]:
    """``(HTTP status, body)`` of ``GET http://<host>:<port><path>``; status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError as exc:
        return 0, str(exc)


def metric_total(exposition: str, name: str) -> float:
    """Sum of every sample of ``name`` in a Prometheus text exposition, whatever its labels.

    A name is matched whole: ``ppg_mi_records`` does not match ``ppg_mi_records_total``.
    """
    total = 0.0
    for line in exposition.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total
