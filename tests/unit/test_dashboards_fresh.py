"""The committed dashboards and rule file are exactly what the generators produce."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ppg_mi.observability import alerts, dashboards
from ppg_mi.observability.generate import DASHBOARDS_DIR, RULES_FILE, generate

CHART = Path(__file__).resolve().parents[2] / "helm/ppg-mi"
HINT = "stale: run `ppg-mi observability generate` and commit the result"


def test_committed_dashboards_are_fresh() -> None:
    committed = sorted(p.name for p in (CHART / DASHBOARDS_DIR).glob("*.json"))
    assert committed == sorted(d.filename for d in dashboards.DASHBOARDS), HINT
    for spec in dashboards.DASHBOARDS:
        path = CHART / DASHBOARDS_DIR / spec.filename
        assert path.read_text(encoding="utf-8") == dashboards.render(spec), f"{path.name} is {HINT}"


def test_committed_rules_are_fresh() -> None:
    assert (CHART / RULES_FILE).read_text(encoding="utf-8") == alerts.rules_yaml(), f"{RULES_FILE} is {HINT}"


def test_generate_writes_the_same_files(tmp_path: Path) -> None:
    written = generate(tmp_path)
    assert {p.relative_to(tmp_path) for p in written} == (
        {DASHBOARDS_DIR / d.filename for d in dashboards.DASHBOARDS} | {RULES_FILE})
    for path in written:
        assert path.read_text() == (CHART / path.relative_to(tmp_path)).read_text()


def test_dashboard_json_carries_every_panel_expression() -> None:
    for spec in dashboards.DASHBOARDS:
        model = json.loads((CHART / DASHBOARDS_DIR / spec.filename).read_text())
        exprs = [t["expr"] for p in model["panels"] for t in p["targets"]]
        assert exprs == [t.expr for p in spec.panels for t in p.targets]
        assert model["uid"] == spec.uid
        assert all(p["datasource"]["uid"] == "${datasource}" for p in model["panels"])
        # panels must not overlap on Grafana's 24-column grid
        cells = set()
        for p in model["panels"]:
            g = p["gridPos"]
            assert g["x"] + g["w"] <= 24
            new = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not cells & new, f"{p['title']} overlaps another panel"
            cells |= new


def test_rule_file_is_a_prometheus_rule_file() -> None:
    doc = yaml.safe_load((CHART / RULES_FILE).read_text())
    assert list(doc) == ["groups"]
    rules = doc["groups"][0]["rules"]
    assert [r["alert"] for r in rules] == [a.name for a in alerts.ALERTS]
    assert all(r["labels"]["severity"] in ("warning", "critical") for r in rules)


def test_exporter_only_panels_read_only_kafka_exporter_metrics() -> None:
    import re

    for _, panel, target in dashboards.expressions():
        metrics = set(re.findall(r"\b(ppg_mi_\w+|kafka_\w+)", target.expr))
        assert metrics, target.expr
        if panel.exporter_only:
            assert all(name.startswith("kafka_") for name in metrics), panel.title
        else:
            assert all(name.startswith("ppg_mi_") for name in metrics), panel.title
