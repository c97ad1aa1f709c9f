"""The real thing: Debian's Prometheus scrapes a local end-to-end run; every dashboard and alert
expression must return data through its HTTP API.

Ranges: dashboards use Grafana's ``$__rate_interval``; Grafana sets it to at least four scrape
intervals, so with this test's 1 s scrape interval it is substituted by ``5s``.  Alert rules
keep their literal ``[5m]``/``[10m]`` windows: a run of a minute gives them the two samples a
``rate``/``delta`` needs, so they are evaluated unchanged.  Every expression is evaluated as
a range query over the run (what a Grafana panel does) and must yield at least one finite value.

Not evaluated, by design: the panels marked ``exporter_only`` (``kafka_*`` metrics of Strimzi's
kafka-exporter, which only runs in the cluster); the test prints them.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from confluent_kafka import Producer

from ppg_mi.config import Settings
from ppg_mi.local.kafka import free_port
from ppg_mi.observability import alerts, dashboards
from ppg_mi.streaming.clients import idempotent_producer_config

from ..helpers import ServiceProcess, wait_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "helm/ppg-mi/files/alerts/ppg-mi-rules.yaml"
SCRAPE_S = 1
RATE_INTERVAL = "5s"  # Grafana's $__rate_interval is >= 4 scrape intervals
RECORDS = 90


class Prometheus:
    """A real ``prometheus`` process with its own port and storage."""

    def __init__(self, workdir: Path, targets: dict[str, int]) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("prometheus is not installed: install Debian's `prometheus` package (scripts/bootstrap.sh)")
        self.port = free_port()
        config = {
            "global": {"scrape_interval": f"{SCRAPE_S}s", "evaluation_interval": f"{SCRAPE_S}s",
                       "scrape_timeout": f"{SCRAPE_S}s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{
                "job_name": "ppg-mi",
                "static_configs": [{"targets": [f"127.0.0.1:{port}"], "labels": {"process": name}}
                                   for name, port in targets.items()],
            }],
        }
        cfg = workdir / "prometheus.yml"
        cfg.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={cfg}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h"],
            stdout=self._log, stderr=subprocess.STDOUT)

    def api(self, path: str, **params: object) -> dict:
        url = f"http://127.0.0.1:{self.port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            return json.loads(e.read() or b"{}")

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{self.log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def instant(self, expr: str) -> list:
        body = self.api("/api/v1/query", query=expr)
        assert body.get("status") == "success", f"{expr}: {body}"
        return body["data"]["result"]

    def finite_values(self, expr: str, start: float, end: float) -> int:
        body = self.api("/api/v1/query_range", query=expr, start=start, end=end, step=SCRAPE_S)
        assert body.get("status") == "success", f"{expr}: {body}"
        return sum(math.isfinite(float(v)) for series in body["data"]["result"] for _, v in series["values"])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def _dashboard_expr(expr: str) -> str:
    return expr.replace("$__rate_interval", RATE_INTERVAL)


def test_every_dashboard_and_alert_expression_returns_data(
    served_settings: Settings, tmp_path: Path
) -> None:
    settings = served_settings.replace(lag_interval_s=1.0)
    producer_port = free_port()
    services = [ServiceProcess(settings, "filter", log_dir=tmp_path, name="filter-1"),
                ServiceProcess(settings, "classify", log_dir=tmp_path, name="classifier-1")]
    prometheus = Prometheus(tmp_path, {"filter": services[0].metrics_port,
                                       "classifier": services[1].metrics_port, "producer": producer_port})
    producer = None
    try:
        wait_for(prometheus.ready, 60, what="prometheus ready")
        for s in services:
            s.wait_ready(timeout=240)  # a fresh broker's transaction coordinator can take minutes to load
        start = time.time()
        # one undecodable record: the DLQ panels and alert need a dead letter to show
        raw = Producer(idempotent_producer_config(settings))
        raw.produce(settings.topic_raw, key=b"garbage-1", value=b"\x00not a recording")
        raw.flush(10)
        producer = ServiceProcess(settings, "produce", "--synthetic", str(RECORDS), "--rate", "10",
                                  log_dir=tmp_path, name="producer-1", env={"PPG_MI_METRICS_PORT": str(producer_port)})
        producer.metrics_port = producer_port
        # Prometheus must have scraped the short-lived producer at least twice while it ran: a rate needs two samples
        wait_for(lambda: prometheus.instant(f"sum(rate(ppg_mi_producer_records_sent_total[{RATE_INTERVAL}])) > 0"), 90,
                 what="two scrapes of the producer mid-run")
        assert producer.proc.wait(120) == 0, producer.log()
        wait_for(lambda: services[1].metric("ppg_mi_predictions_total") >= RECORDS, 120,
                 what="every record predicted")
        wait_for(lambda: prometheus.instant(f"sum(ppg_mi_predictions_total) >= {RECORDS}"), 30,
                 what="prometheus saw every prediction")
        # the idle lag settles: 0 on the raw topic, 1 per partition (the commit marker) on the filtered one
        expected_idle = {"filter": 0.0, "classifier": float(settings.topic_partitions)}

        def idle_lag() -> bool:
            rows = prometheus.instant(f"sum by (stage) ({dashboards.LAG})")
            return {r["metric"]["stage"]: float(r["value"][1]) for r in rows} == expected_idle

        wait_for(idle_lag, 60, what=f"idle lag per stage {expected_idle}")
        for s in services:
            assert s.get("/healthz")[0] == 200 and s.get("/readyz")[0] == 200

        def expressions_without_data() -> list[str]:
            end = time.time()
            missing = []
            for dash, panel, target in dashboards.expressions(include_exporter_only=False):
                if not prometheus.finite_values(_dashboard_expr(target.expr), start, end):
                    missing.append(f"dashboard {dash.uid} / {panel.title}: {target.expr}")
            for alert in alerts.ALERTS:
                for signal in alert.signals:
                    if not prometheus.finite_values(signal, start, end):
                        missing.append(f"alert {alert.name} signal: {signal}")
                prometheus.instant(alert.expr)  # parses and evaluates (status success)
            return missing

        # on a busy 2-core machine a scrape can come late: a broken expression stays empty, a late one fills in
        last: dict[str, list[str]] = {}

        def all_have_data() -> bool:
            last["missing"] = expressions_without_data()
            return not last["missing"]

        try:
            wait_for(all_have_data, 30, interval=SCRAPE_S, what="every expression to have data")
        except AssertionError:
            pass  # the assertion below names the expressions
        missing = last["missing"]
        assert not missing, "expressions without data (broken panels or alerts):\n" + "\n".join(missing)
        end = time.time()

        # the one dead letter makes the DLQ alert's full expression true, and the loaded rules evaluate cleanly
        dlq = next(a for a in alerts.ALERTS if a.name == "PpgMiDeadLetters")
        assert prometheus.finite_values(dlq.expr, start, end), dlq.expr
        groups = prometheus.api("/api/v1/rules")["data"]["groups"]
        rules = {r["name"]: r for g in groups for r in g["rules"]}
        assert set(rules) == {a.name for a in alerts.ALERTS}
        assert all(r["health"] == "ok" for r in rules.values()), {n: r.get("lastError") for n, r in rules.items()}
        wait_for(lambda: prometheus.api("/api/v1/alerts")["data"]["alerts"], 30, what="the DLQ alert pending")
        states = {(a["labels"]["alertname"], a["labels"].get("reason")) for a in prometheus.api("/api/v1/alerts")
                  ["data"]["alerts"]}
        assert ("PpgMiDeadLetters", "unknown_schema") in states

        exporter_only = [t.expr for _, p, t in dashboards.expressions() if p.exporter_only]
        print("not evaluated here (Strimzi kafka-exporter only):\n  " + "\n  ".join(exporter_only))
    except AssertionError as exc:
        logs = "\n".join(f"--- {s.name} (last lines) ---\n{s.log()[-2500:]}"
                          for s in [*services, *([producer] if producer else [])])
        raise AssertionError(f"{exc}\n{logs}") from None
    finally:
        for s in [*services, *([producer] if producer else [])]:
            if s.proc.poll() is None:
                s.terminate()
            s.close()
        prometheus.stop()
