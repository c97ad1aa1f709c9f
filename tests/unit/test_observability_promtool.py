"""The alerting rules through the real ``promtool``: syntax (check rules) and behaviour (test rules)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ppg_mi.observability.alerts import ALERTS

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "helm/ppg-mi/files/alerts/ppg-mi-rules.yaml"
PROMTOOL_TESTS = sorted((REPO / "tests/promtool").glob("*.yaml"))


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: install Debian's `prometheus` package (scripts/bootstrap.sh does)")
    return path


def test_promtool_check_rules_accepts_the_rule_file(promtool: str) -> None:
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout + result.stderr


def test_promtool_unit_tests_of_every_alert_pass(promtool: str) -> None:
    assert PROMTOOL_TESTS, "no promtool test files in tests/promtool"
    result = subprocess.run([promtool, "test", "rules", *map(str, PROMTOOL_TESTS)], capture_output=True, text=True,
                            timeout=120, cwd=REPO / "tests/promtool")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in PROMTOOL_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {a.name for a in ALERTS}
    assert names - firing == set(), f"alerts never shown firing: {names - firing}"
    assert names - silent == set(), f"alerts never shown silent: {names - silent}"
