"""The dashboard service: Streamlit serving :mod:`ppg_mi.dashboard`, in this very process.

The reader thread and the metrics server (``/metrics``, ``/healthz``, ``/readyz`` on
``PPG_MI_METRICS_PORT``) start *before* Streamlit, so the process is observable and ready
as soon as the broker answers, with or without a browser connected; the page's cached
resource then finds that same runtime instead of starting a second one.
"""

from __future__ import annotations

import logging
import os
import sys

from ..config import Settings
from ..dashboard import APP_SCRIPT
from ..dashboard import runtime as dashboard_runtime
from ..observability.logs import configure as configure_logging

ROLE = "dashboard"
log = logging.getLogger(__name__)


def streamlit_argv(settings: Settings) -> list[str]:
    """The ``streamlit run`` command line: headless, on ``dashboard_port``, no file watching."""
    return ["streamlit", "run", str(APP_SCRIPT),
            "--server.address", settings.dashboard_host,
            "--server.port", str(settings.dashboard_port),
            "--server.headless", "true",
            "--server.fileWatcherType", "none",
            "--server.runOnSave", "false",
            "--browser.gatherUsageStats", "false",
            "--client.toolbarMode", "minimal"]


def run(settings: Settings) -> int:
    configure_logging(settings.log_level, settings.log_format)
    # the page reads its settings from the environment: hand it these (CLI flags included),
    # so it finds the runtime started here rather than a second one
    os.environ.update(settings.as_env())
    runtime = dashboard_runtime.shared(settings)
    server = dashboard_runtime.metrics_server()
    log.info("dashboard starting", extra={"port": settings.dashboard_port, "group": runtime.reader.group_id,
                                          "metrics_port": server.port if server else None})
    from streamlit.web import cli as streamlit_cli

    sys.argv = streamlit_argv(settings)
    try:
        streamlit_cli.main(prog_name="streamlit")
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    finally:
        dashboard_runtime.stop_all()
    return 0
