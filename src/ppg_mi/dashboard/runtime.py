"""The process-wide part of the dashboard: state, the reader thread, the metrics server.

A Streamlit server process runs the page script once per browser session and again on
every refresh; what must exist once per *process* lives here.  :func:`shared` returns
the one :class:`DashboardRuntime` for a set of settings, creating and starting it on
first use; the page reaches it through an ``st.cache_resource`` function, and
``ppg-mi dashboard`` creates it before Streamlit starts, so ``/readyz`` answers before
the first browser connects.  The metrics server (``/metrics``, ``/healthz``,
``/readyz``) is started at most once per process, whoever asks first.
"""

from __future__ import annotations

import logging
import threading
import time

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..config import Settings
from ..observability import metrics as m
from ..observability.server import Health, MetricsServer, serve_endpoints
from .reader import METADATA_INTERVAL_S, StreamReader
from .state import DeadLetterCounts, PredictionStore, WaveformCache

log = logging.getLogger(__name__)

STAGE = "dashboard"
#: recent recordings whose raw and filtered samples are kept (≈ 8 KB each at 2000 samples)
WAVEFORM_CACHE = 500


class DashboardRuntime:
    """Everything one dashboard process shares between its browser sessions."""

    def __init__(self, settings: Settings, health: Health, start_reader: bool = True) -> None:
        self.settings = settings
        self.health = health
        self.store = PredictionStore(settings.dashboard_max_records)
        self.raw = WaveformCache(WAVEFORM_CACHE)
        self.filtered = WaveformCache(WAVEFORM_CACHE)
        self.dlq = DeadLetterCounts()
        self.started_s = time.time()
        self.reader = StreamReader(settings, self.store, self.raw, self.filtered, self.dlq, on_turn=self._turn)
        self._last_loop = m.LAST_LOOP.labels(STAGE)
        if start_reader:
            self.reader.start()

    def _turn(self) -> None:
        self.health.beat()
        self._last_loop.set_to_current_time()

    @property
    def connected(self) -> bool:
        """Broker reachable at the last metadata check, and that check is recent."""
        fresh = time.monotonic() - self.reader.last_metadata_ok < 3 * METADATA_INTERVAL_S + 2
        return self.reader.connected and fresh

    def broker_check(self) -> tuple[bool, str]:
        if self.connected:
            return True, f"broker reachable; {len(self.store)} predictions in memory"
        return False, f"broker unreachable: {self.reader.last_error or 'no successful metadata request yet'}"

    def reader_check(self) -> tuple[bool, str]:
        return self.reader.alive, "reader thread running" if self.reader.alive else "reader thread stopped"

    def stop(self) -> None:
        self.reader.stop()


class _Collector:
    """Exposes the current runtime's state on /metrics (read at scrape time)."""

    def describe(self) -> list:
        return []

    def collect(self):  # noqa: ANN201 - prometheus_client's protocol
        with _lock:
            runtime = _latest
            runtimes = list(_runtimes.values())
        if runtime is None:
            return
        yield GaugeMetricFamily("ppg_mi_dashboard_readers", "Kafka reader threads in this process (1 expected).",
                                value=sum(r.reader.alive for r in runtimes))
        yield GaugeMetricFamily("ppg_mi_dashboard_recordings", "Recordings (distinct record ids) in memory.",
                                value=len(runtime.store))
        yield GaugeMetricFamily("ppg_mi_dashboard_broker_connected", "1 when the broker answered recently.",
                                value=1.0 if runtime.connected else 0.0)
        yield CounterMetricFamily("ppg_mi_dashboard_duplicate_predictions",
                                  "Predictions of a record id already in memory (replaced, not counted).",
                                  value=runtime.store.duplicates)
        yield CounterMetricFamily("ppg_mi_dashboard_evicted_recordings",
                                  "Recordings dropped to stay within PPG_MI_DASHBOARD_MAX_RECORDS.",
                                  value=runtime.store.evicted)
        yield CounterMetricFamily("ppg_mi_dashboard_folded_predictions",
                                  "Predictions counted under '(other)': more model versions in memory than kept by name.",
                                  value=runtime.store.folded_predictions)
        yield CounterMetricFamily("ppg_mi_dashboard_folded_dead_letters",
                                  "Dead letters counted under '(other)': more (stage, reason) pairs than kept by name.",
                                  value=runtime.dlq.folded)
        yield CounterMetricFamily("ppg_mi_dashboard_undecodable_messages", "Messages the reader could not decode.",
                                  value=runtime.reader.undecodable)
        read = CounterMetricFamily("ppg_mi_dashboard_messages_read", "Messages read, by topic role.",
                                   labels=["topic"])
        for topic, n in runtime.reader.read.items():
            read.add_metric([topic], n)
        yield read


_lock = threading.Lock()
_runtimes: dict[Settings, DashboardRuntime] = {}
_latest: DashboardRuntime | None = None
_health: Health | None = None
_server: MetricsServer | None = None


def shared(settings: Settings, start_reader: bool = True) -> DashboardRuntime:
    """The runtime for ``settings`` in this process, created (and its reader started) once."""
    global _latest, _health, _server
    with _lock:
        runtime = _runtimes.get(settings)
        if runtime is not None:
            return runtime
        if _health is None:
            _health = Health(settings.liveness_timeout_s)
            REGISTRY.register(_Collector())
        runtime = DashboardRuntime(settings, _health, start_reader)
        _health.add_check("broker", runtime.broker_check)
        _health.add_check("reader", runtime.reader_check)
        if _server is None:
            _server = serve_endpoints(settings, _health)
        _runtimes[settings] = runtime
        _latest = runtime
        return runtime


def metrics_server() -> MetricsServer | None:
    """The process's metrics server, if one was started."""
    return _server


def stop_all() -> None:
    """Stop every runtime's reader (tests; the server process simply exits)."""
    global _latest
    with _lock:
        runtimes = list(_runtimes.values())
        _runtimes.clear()
        _latest = None
    for runtime in runtimes:
        runtime.stop()
