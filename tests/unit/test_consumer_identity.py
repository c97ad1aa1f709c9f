"""The stage consumer's group settings (#18 item 7): a dynamic member with a short session timeout."""

from __future__ import annotations

import pytest

from ppg_mi.config import ConfigError, Settings
from ppg_mi.streaming.clients import transactional_consumer_config


def test_a_stage_consumer_is_a_dynamic_member_with_a_10_s_session() -> None:
    cfg = transactional_consumer_config(Settings.from_env({}, instance_id="ppg-ppg-mi-classifier-2"), "g")
    # no group.instance.id: librdkafka makes a static member's own session timeout fatal (librdkafka#3437)
    assert "group.instance.id" not in cfg
    assert (cfg["session.timeout.ms"], cfg["heartbeat.interval.ms"]) == (10000, 3000)


def test_the_session_timeout_is_a_setting() -> None:
    cfg = transactional_consumer_config(Settings.from_env({"PPG_MI_SESSION_TIMEOUT_MS": "6000"}), "g")
    assert (cfg["session.timeout.ms"], cfg["heartbeat.interval.ms"]) == (6000, 2000)


@pytest.mark.parametrize("ms", ["5999", "300001"])
def test_a_session_timeout_the_broker_would_refuse_is_a_configuration_error(ms: str) -> None:
    with pytest.raises(ConfigError, match="PPG_MI_SESSION_TIMEOUT_MS"):
        Settings.from_env({"PPG_MI_SESSION_TIMEOUT_MS": ms})
