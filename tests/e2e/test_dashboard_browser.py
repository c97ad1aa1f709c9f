"""A real run seen through a real browser: producer → filter → classifier → `ppg-mi dashboard` → Chromium.

Debian's Chromium (``/usr/bin/chromium``) is driven by Playwright for Python through its
executable path; Playwright's own browser downloads are never used.  The screenshot is
saved to ``artifacts/dashboard.png``.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Producer

from ppg_mi.config import Settings
from ppg_mi.data import SyntheticConfig, generate, write_csv
from ppg_mi.local.kafka import free_port
from ppg_mi.streaming.clients import idempotent_producer_config
from ppg_mi.streaming.codec import decode_prediction

from ..conftest import REPO
from ..helpers import ServiceProcess, read_topic, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT = REPO / "artifacts" / "dashboard.png"
RECORDS = 60


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, **settings.as_env(), "PPG_MI_METRICS_PORT": "0"}
    return subprocess.run([sys.executable, "-m", "ppg_mi", *args], env=env, capture_output=True, text=True,
                          timeout=180)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _confusion_in_page(page) -> dict[tuple[str, str], int]:  # noqa: ANN001 - playwright Page
    """The counts table as shown: {(row header, column header): count}."""
    table = page.locator(".st-key-confusion_counts table")
    columns = [c.strip() for c in table.locator("thead th").all_inner_texts()][1:]
    out = {}
    for row in table.locator("tbody tr").all():
        header = row.locator("th").inner_text().strip()
        for column, cell in zip(columns, row.locator("td").all_inner_texts()):
            out[(header, column)] = int(cell.strip().replace(",", ""))
    return out


def test_browser_shows_a_real_run(served_settings: Settings, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (scripts/bootstrap.sh does)", pytrace=False)
    from playwright.sync_api import sync_playwright

    settings = served_settings.replace(dashboard_refresh_s=1.0)
    # hard enough that the small model makes some mistakes: every cell of the matrix is exercised
    dataset = generate(SyntheticConfig(records=RECORDS, seed=21, id_prefix="e2e", difficulty=0.8))
    csv_path = tmp_path / "e2e.csv"
    write_csv(dataset, csv_path)
    dash_port = free_port()

    services = [ServiceProcess(settings, "filter", log_dir=tmp_path, name="filter-e2e"),
                ServiceProcess(settings, "classify", log_dir=tmp_path, name="classifier-e2e"),
                ServiceProcess(settings, "dashboard", log_dir=tmp_path, name="dashboard-e2e",
                               env={"PPG_MI_DASHBOARD_PORT": str(dash_port)})]
    dashboard = services[2]
    try:
        for s in services:
            s.wait_ready()
        # two shards, and shard 0 sent twice: the page must still count each recording once
        for shard in ("0/2", "1/2", "0/2"):
            # paced, so throughput and latency have a few seconds of history to plot
            result = _cli(settings, "produce", "--data", str(csv_path), "--shard", shard, "--rate", "15")
            assert result.returncode == 0, result.stderr
        junk = Producer(idempotent_producer_config(settings))
        for i in range(3):
            junk.produce(settings.topic_raw, key=f"junk-{i}".encode(), value=b"\x01\x01not a recording")
        assert junk.flush(30) == 0

        predictions = read_topic(settings, settings.topic_predictions, RECORDS + RECORDS // 2, timeout=180)
        latest = {p.key: decode_prediction(p.value) for p in predictions}
        assert len(latest) == RECORDS
        expected = Counter((f"true {p.true_label}", f"predicted {p.predicted_label}") for p in latest.values())
        wait_for(lambda: dashboard.metric("ppg_mi_dashboard_recordings") == RECORDS, 60,
                 what="the dashboard to hold every recording")
        wait_for(lambda: dashboard.metric("ppg_mi_dashboard_messages_read_total", topic="dlq") == 3, 60,
                 what="the dashboard to read the 3 dead letters")
        wait_for(lambda: _http_ok(f"http://127.0.0.1:{dash_port}/_stcore/health"), 60, what="streamlit up")

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1500, "height": 3000})
                page.goto(f"http://127.0.0.1:{dash_port}/", wait_until="domcontentloaded")
                page.locator(".st-key-confusion_counts table").wait_for(timeout=90_000)

                def shown_matches() -> bool:
                    shown = _confusion_in_page(page)
                    return sum(shown.values()) == RECORDS and {k: v for k, v in shown.items() if v} == expected

                wait_for(shown_matches, 60, what=f"the confusion matrix to show the {RECORDS} recordings")
                body = page.locator("body").inner_text()
                assert "Research demonstration, not a medical device" in body
                assert "connected to" in body and "disconnected" not in body
                values = dict(zip(page.locator('[data-testid="stMetricLabel"]').all_inner_texts(),
                                  page.locator('[data-testid="stMetricValue"]').all_inner_texts()))
                assert values["Recordings"] == str(RECORDS)
                assert values["Dead letters (DLQ)"] == "3"
                assert values["MI predicted"] == str(sum(p.predicted_label == "MI" for p in latest.values()))
                for label in ("Accuracy (running)", "Macro-F1 (running)", "Latency p50", "Latency p95"):
                    assert values[label] not in ("", "–"), label
                assert "Not in memory" not in body, "the selected recording's waveforms are shown"
                SCREENSHOT.parent.mkdir(exist_ok=True)
                # seven charts drawn with their lines or bars: running and last-N trends, classes,
                # throughput, latency, raw and filtered waveform
                charts = page.locator('[data-testid="stVegaLiteChart"]').filter(
                    has=page.locator("svg g.mark-line, svg g.mark-rect"))
                try:
                    wait_for(lambda: charts.count() >= 7, 30, what="the seven charts to draw")
                finally:
                    page.screenshot(path=str(SCREENSHOT), full_page=True)
            finally:
                browser.close()

        # one reader and one metrics server in the Streamlit process, whatever the sessions
        assert dashboard.metric("ppg_mi_dashboard_readers") == 1
        assert dashboard.get("/healthz")[0] == 200
        assert dashboard.log().count("metrics server listening") == 1
        assert dashboard.terminate() == 0, "SIGTERM stops Streamlit, the reader and the metrics server cleanly"
    finally:
        for s in services:
            if s.proc.poll() is None:
                s.terminate()
            s.close()
