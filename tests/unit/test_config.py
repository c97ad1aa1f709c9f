import pytest

from ppg_mi.config import ConfigError, Settings


def test_environment_variables_are_read_and_typed() -> None:
    s = Settings.from_env({"PPG_MI_TOPIC_PARTITIONS": "12", "PPG_MI_TOPIC_RAW": "x.raw",
                           "PPG_MI_SAMPLING_RATE_HZ": "250"})
    assert s.topic_partitions == 12 and s.topic_raw == "x.raw" and s.sampling_rate_hz == 250.0


def test_overrides_win_over_the_environment() -> None:
    s = Settings.from_env({"PPG_MI_TOPIC_RAW": "env"}, topic_raw="flag")
    assert s.topic_raw == "flag"


def test_bad_values_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="PPG_MI_TOPIC_PARTITIONS='many'"):
        Settings.from_env({"PPG_MI_TOPIC_PARTITIONS": "many"})
    with pytest.raises(ConfigError, match="band-pass"):
        Settings.from_env({"PPG_MI_FILTER_HIGH_HZ": "100"})
    with pytest.raises(ConfigError, match="PPG_MI_COMPRESSION must be one of none, lz4"):
        Settings.from_env({"PPG_MI_COMPRESSION": "lzma"})


def test_local_broker_is_the_default_bootstrap() -> None:
    assert Settings.from_env({}).bootstrap_servers == "127.0.0.1:9092"
    assert Settings.from_env({"PPG_MI_KAFKA_BOOTSTRAP_SERVERS": "k:1"}).bootstrap_servers == "k:1"


def test_as_env_round_trips() -> None:
    s = Settings.from_env({}, topic_partitions=3, instance_id="abc")
    assert Settings.from_env(s.as_env()) == s


def test_every_setting_is_documented() -> None:
    assert all(meaning for _, _, meaning in Settings.describe())
