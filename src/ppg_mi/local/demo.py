"""`ppg-mi demo`: the whole pipeline on one laptop.

Starts (or reuses) the local broker, creates the topics, trains a small model when the
store has none, runs the filter, classifier and dashboard as child processes, streams
synthetic recordings through them and reports progress.  Each process gets its own
metrics port: the configured one plus an offset, or, when that is taken or the configured port
is 0, one the process binds itself and writes to a file the demo reads (a port chosen here and
bound there could be taken in between, by any process's outgoing connection).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Settings
from ..observability.probe import fetch, metric_total
from .kafka import LocalBroker, free_port, port_open

ROLES = ("filter", "classifier", "dashboard", "producer")


@dataclass
class Child:
    role: str
    port_file: Path
    proc: subprocess.Popen
    log: Path
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def port(self) -> int | None:
        """The port the process bound, once it has written it."""
        try:
            return int(self.port_file.read_text())
        except (OSError, ValueError):
            return None

    def get(self, path: str) -> str | None:
        port = self.port
        return fetch(port, path) if port is not None else None

    def metric(self, name: str) -> float:
        return metric_total(self.get("/metrics") or "", name)


def _port(preferred: int) -> int:
    return preferred if preferred and not port_open("127.0.0.1", preferred) else free_port()


def _metrics_port(preferred: int) -> int:
    """``preferred`` when nothing listens there, else 0 (the process binds a free port)."""
    return preferred if preferred and not port_open("127.0.0.1", preferred) else 0


def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM end the demo through its clean-up.

    Explicitly, because a shell starts a background job with SIGINT ignored and Python then keeps
    it ignored: the children, which handle SIGINT themselves, stopped alone and the demo reported
    them as failed ("filter exited with 0", exit 1).
    """

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)


def run_demo(settings: Settings, records: int = 2000, rate: float = 50.0, dashboard: bool = True,
             exit_when_done: bool = False) -> int:
    _stop_on_signals()
    started_broker = None
    if not settings.kafka_bootstrap_servers:
        broker = LocalBroker.for_settings(settings)
        if not broker.running():
            _say(f"starting Kafka {settings.kafka_version} at {broker.bootstrap} (log: {broker.log_file})")
            broker.start()
            started_broker = broker
        else:
            _say(f"using the running local broker at {broker.bootstrap}")
    from ..streaming.topics import ensure_topics

    for topic in ensure_topics(settings):
        _say(f"topic {topic.name}: {'created' if topic.created else 'exists'}")

    from ..model import ModelStore

    store = ModelStore(settings.models_dir)
    if store.current_version() is None:
        _say(f"no model in {store.root}: training {settings.model_kind} on 400 synthetic recordings")
        from training.train import TrainConfig, train

        from ..data import SyntheticConfig, generate
        from ..signal import BandPass

        data = generate(SyntheticConfig(records=400, samples=settings.samples_per_record,
                                        sampling_rate_hz=settings.sampling_rate_hz, seed=1, id_prefix="train"))
        from ..config import parse_target_sensitivity

        # with the operating point PPG_MI_TARGET_SENSITIVITY sets, as `ppg-mi train` (the dashboard shows it)
        cfg = TrainConfig(kind=settings.model_kind, folds=0,
                          target_sensitivity=parse_target_sensitivity(settings.target_sensitivity))
        _, card = train(data, BandPass.from_settings(settings), cfg, store.root)
        _say(f"trained {card['version']}: held-out accuracy {card['metrics']['held_out']['accuracy']:.3f}")
    else:
        _say(f"serving model {store.current_version()} from {store.root}")

    log_dir = Path(settings.cache_dir) / "demo-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    base = settings.metrics_port
    children: list[Child] = []

    def spawn(role: str, args: list[str], offset: int, extra_env: dict[str, str] | None = None) -> Child:
        port_file = log_dir / f"{role}.port"
        port_file.unlink(missing_ok=True)
        env = {**os.environ, **settings.as_env(),
               "PPG_MI_METRICS_PORT": str(_metrics_port(base + offset if base else 0)),
               "PPG_MI_METRICS_PORT_FILE": str(port_file),
               "PPG_MI_INSTANCE_ID": f"demo-{role}", "PPG_MI_LOG_FORMAT": "json", **(extra_env or {})}
        log = log_dir / f"{role}.log"
        proc = subprocess.Popen([sys.executable, "-m", "ppg_mi", *args], env=env,
                                stdout=log.open("ab"), stderr=subprocess.STDOUT)
        child = Child(role, port_file, proc, log, extra_env or {})
        children.append(child)
        return child

    try:
        spawn("filter", ["filter"], 0)
        classifier = spawn("classifier", ["classify"], 1)
        if dashboard:
            dash_port = _port(settings.dashboard_port)
            spawn("dashboard", ["dashboard"], 2, {"PPG_MI_DASHBOARD_PORT": str(dash_port)})
        _wait_ready(children)
        _say("processes and their metrics ports (each serves /metrics /healthz /readyz):")
        for c in children:
            _say(f"  {c.role:<10} pid {c.proc.pid:<7} http://127.0.0.1:{c.port}/metrics   log {c.log}")
        before = classifier.metric("ppg_mi_records_consumed_total")
        producer = spawn("producer", ["produce", "--synthetic", str(records), "--seed", str(int(time.time())),
                                      "--rate", str(rate)], 3)
        _say(f"  producer   pid {producer.proc.pid:<7} log {producer.log}")
        if dashboard:
            _say(f"dashboard: http://127.0.0.1:{children[2].extra['PPG_MI_DASHBOARD_PORT']}")
        done = before + records
        last = -1.0
        while True:
            for c in children:
                if c.proc.poll() not in (None, 0) or (c.role != "producer" and c.proc.poll() is not None):
                    _say(f"{c.role} exited with {c.proc.returncode}; see {c.log}")
                    return 1
            predicted = classifier.metric("ppg_mi_records_consumed_total")
            if predicted != last:
                _say(f"{int(predicted - before)}/{records} recordings classified")
                last = predicted
            if predicted >= done and producer.proc.poll() is not None:
                break
            time.sleep(2)
        _summary(children)
        if exit_when_done:
            return 0
        _say("all recordings classified; the services keep running. Ctrl-C stops everything.")
        while all(c.proc.poll() is None for c in children if c.role != "producer"):
            time.sleep(1)
        return 1
    except KeyboardInterrupt:
        _say("stopping")
        return 0
    finally:
        for c in children:
            if c.proc.poll() is None:
                c.proc.terminate()
        for c in children:
            try:
                c.proc.wait(15)
            except subprocess.TimeoutExpired:
                c.proc.kill()
        if started_broker is not None:
            _say("stopping the broker this demo started")
            started_broker.stop()


def _wait_ready(children: list[Child], timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    pending = {c.role: c for c in children}
    while pending:
        for role, c in list(pending.items()):
            if c.proc.poll() is not None:
                raise RuntimeError(f"{role} exited with {c.proc.returncode}; see {c.log}")
            body = c.get("/readyz")
            if body is not None and '"ok": true' in body:
                _say(f"{role} ready")
                del pending[role]
        if time.monotonic() > deadline:
            raise RuntimeError(f"not ready after {timeout:.0f}s: {', '.join(pending)}")
        time.sleep(0.5)


def _summary(children: list[Child]) -> None:
    for c in children:
        if c.role in ("filter", "classifier"):
            consumed = c.metric("ppg_mi_records_consumed_total")
            produced = c.metric("ppg_mi_records_produced_total")
            dead = c.metric("ppg_mi_records_dead_lettered_total")
            _say(f"{c.role}: in {consumed:.0f} = out {produced:.0f} + dead letters {dead:.0f}")
