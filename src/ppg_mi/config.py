"""Every setting of ppg-mi, read once from ``PPG_MI_*`` environment variables.

The CLI, the local demo and the Helm chart all configure the services through
these variables, so one table (``Settings.describe()``, printed by
``ppg-mi config``) documents all three.  Command-line flags only override a
setting for one invocation; they never introduce settings of their own.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

ENV_PREFIX = "PPG_MI_"
COMPRESSION_CODECS = ("none", "lz4", "zstd", "snappy", "gzip")


class ConfigError(ValueError):
    """A ``PPG_MI_*`` variable holds a value that cannot be used."""


def _default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "ppg-mi")


def _setting(default: Any, help: str, **kw: Any) -> Any:
    metadata = {"help": help}
    if callable(default):
        return field(default_factory=default, metadata=metadata, **kw)
    return field(default=default, metadata=metadata, **kw)


@dataclass(frozen=True)
class Settings:
    """All configuration of one ppg-mi process.

    Each field ``name`` is read from the environment variable
    ``PPG_MI_<NAME>`` (upper case). Use :meth:`from_env` to build one.
    """

    # --- Kafka connection -------------------------------------------------
    kafka_bootstrap_servers: str = _setting(
        "", "Broker(s) to use, host:port[,host:port]. Empty: the local broker of `ppg-mi kafka up`."
    )
    kafka_security_protocol: str = _setting("PLAINTEXT", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.")
    kafka_sasl_mechanism: str = _setting("SCRAM-SHA-512", "SASL mechanism when the protocol is SASL_*.")
    kafka_sasl_username: str = _setting("", "SASL user name (Strimzi KafkaUser name).")
    kafka_sasl_password: str = _setting("", "SASL password (from the KafkaUser's Secret).")
    kafka_ssl_ca_location: str = _setting("", "CA certificate file of the cluster (PEM).")
    kafka_ssl_certificate_location: str = _setting("", "Client certificate for mTLS (PEM).")
    kafka_ssl_key_location: str = _setting("", "Client private key for mTLS (PEM).")

    # --- Local broker (`ppg-mi kafka up`) -----------------------------------
    kafka_local_host: str = _setting("127.0.0.1", "Address the local broker listens on.")
    kafka_local_port: int = _setting(9092, "Port the local broker listens on.")
    kafka_local_heap: str = _setting("512m", "Java heap of the local broker.")
    kafka_version: str = _setting("4.3.1", "Apache Kafka version of the local broker (Strimzi 1.2.0 runs 4.3.1).")
    cache_dir: str = _setting(_default_cache_dir, "Where Kafka jars, helm and broker data are cached.")
    java_home: str = _setting("", "JDK for the local broker; empty: the `java` on PATH.")

    # --- Topics ----------------------------------------------------------
    topic_raw: str = _setting("ppg.raw", "Raw recordings, written by the producer.")
    topic_filtered: str = _setting("ppg.filtered", "Filtered recordings, written by the filter.")
    topic_predictions: str = _setting("ppg.predictions", "Predictions, written by the classifier.")
    topic_dlq: str = _setting("ppg.dlq", "Dead letters of every stage.")
    topic_partitions: int = _setting(6, "Partitions of each topic (caps useful consumer replicas).")
    topic_replication_factor: int = _setting(1, "Replication factor of each topic.")

    # --- Consumer groups and identity -----------------------------------------
    group_filter: str = _setting("ppg-mi-filter", "Consumer group of the filter service.")
    group_classifier: str = _setting("ppg-mi-classifier", "Consumer group of the classifier service.")
    group_dashboard: str = _setting("ppg-mi-dashboard", "Group id prefix of the dashboard's reader (it never commits).")
    instance_id: str = _setting(
        socket.gethostname,
        "Stable name of this process (the pod name in Kubernetes); the transactional id is <role>-<instance_id>.",
    )
    session_timeout_ms: int = _setting(
        10000, "Consumer group session timeout: a killed member keeps its partitions this long before the "
        "group moves them (a clean exit leaves at once). Heartbeats every third of it, at most every 3 s."
    )

    # --- Stream processing ----------------------------------------------------
    batch_max_records: int = _setting(
        1024, "Most records in one transaction (one micro-batch); batches are what arrived during the last one, so "
        "the cap matters only under a backlog, where larger transactions cost less per record.")
    process_during_commit: bool = _setting(
        True, "Process the next batch while the current one's transaction commits (a worker thread, started once "
        "the transaction's messages are produced; the next batch is fetched before the transaction begins). Off: "
        "the commit's wait for the broker idles the stage, a quarter of the filter's time under backlog "
        "(docs/performance.md).")
    batch_max_wait_ms: int = _setting(200, "Longest wait for a record before the loop turns; a batch is then what was already fetched.")
    batch_fill_ms: int = _setting(
        0, "After a batch's first record, wait this long for more (fewer, larger transactions; adds latency)."
    )
    transaction_timeout_ms: int = _setting(60000, "Broker-side timeout of an open transaction.")
    transaction_retry_backoff_ms: int = _setting(
        10, "Wait before retrying a refused transactional request (librdkafka's default of 100 ms adds up to "
        "that to most transactions: the next one is refused while the last one's markers are written)."
    )
    compression: str = _setting(
        "none", "Compression of produced batches: none, lz4, zstd, snappy or gzip. Float32 PPG samples do not "
        "compress (lz4 ratio 1.00 on recordings), so the default spends no CPU on it."
    )
    queued_max_kbytes: int = _setting(16384, "Cap of librdkafka's prefetch queue per consumer (KiB): bounds memory under backlog.")
    fetch_wait_max_ms: int = _setting(
        20, "Longest a consumer's fetch waits at the broker for records (librdkafka's fetch.wait.max.ms). Its "
        "500 ms default was most of a record's wait between the filter and the classifier at half load "
        "(measured by the bench's latency runs, docs/performance.md)."
    )
    fetch_min_bytes: int = _setting(
        1, "Least a consumer's fetch asks the broker to gather before it answers, unless fetch_wait_max_ms "
        "passes first (librdkafka's fetch.min.bytes): larger means fewer fetch requests for the broker to serve."
    )
    producer_linger_ms: int = _setting(
        20, "How long a producer holds a record to batch it with the next ones (librdkafka's linger.ms): "
        "fewer, larger produce requests for the broker against that much added latency. At half load 5 ms "
        "made four times the requests, and the broker's CPU per request was the tail of the latency "
        "(docs/performance.md)."
    )
    fetch_queue_backoff_ms: int = _setting(
        100, "Wait before fetching again once the prefetch cap is reached (librdkafka's fetch.queue.backoff.ms; "
        "its 1000 ms default idled a stage that empties its queue in less; 20 and 100 were within the bench's "
        "noise, 0 doubled the filter's CPU per record, docs/performance.md)."
    )
    max_message_bytes: int = _setting(1048576, "Largest message accepted; bigger input is dead-lettered as oversized.")
    shutdown_timeout_s: float = _setting(8.0, "Time to finish the open transaction on SIGTERM before exiting.")
    fault_hold_transaction_file: str = _setting(
        "", "Tests only: while this file exists, each transaction is held open after producing (within its "
        "budget) and <file>.held is written, so that a test can stop the broker inside one. Empty: never."
    )

    # --- Signal ----------------------------------------------------------
    sampling_rate_hz: float = _setting(125.0, "Sampling rate of recordings that do not say otherwise.")
    samples_per_record: int = _setting(2000, "Samples per recording (2000 in the Kaggle PPG set).")
    filter_low_hz: float = _setting(0.5, "Band-pass lower edge: removes baseline wander and respiration.")
    filter_high_hz: float = _setting(8.0, "Band-pass upper edge: keeps the pulse's harmonics, drops noise.")
    filter_order: int = _setting(4, "Butterworth order of the band-pass (applied forward and backward).")

    # --- Model -----------------------------------------------------------
    models_dir: str = _setting("models", "Model store: one directory per checkpoint and a `current` pointer.")
    model_reload_interval_s: float = _setting(5.0, "How often the classifier checks `current` for a new model.")
    model_kind: str = _setting(
        "minirocket-1000-ds4-rhy", "Estimator `ppg-mi train` fits by default: the kind the selection rule chose over 11 data "
        "conditions (docs/model.md); any other kind by name, e.g. rdst for shapelets."
    )
    target_sensitivity: str = _setting(
        "0.95", "MI sensitivity `ppg-mi train` sets the model's operating point for: the MI score is calibrated "
        "(Platt scaling on out-of-fold scores) and the decision threshold is the highest calibrated probability "
        "that still reaches this sensitivity on held-out folds; the classifier and `ppg-mi evaluate` decide with "
        "it. 0 or empty: no operating point (the kind's own scores, argmax). See docs/model.md."
    )
    classifier_threads: int = _setting(
        0, "Threads of the model's transform in the classifier (its kernels run in parallel over a batch's "
           "recordings); 0: one per CPU the process may use (its CPU affinity, capped by its cgroup CPU "
           "limit, so a pod limited to 1 CPU runs one)."
    )
    classifier_blas_threads: int = _setting(
        1, "BLAS threads of the classifier; 0 keeps the library's default (one per CPU, spinning between calls)."
    )
    numba_cache_dir: str = _setting("", "Writable numba cache (set when the root filesystem is read-only).")
    numba_cache_seed_dir: str = _setting(
        "", "numba cache compiled ahead (the image builds one): copied into PPG_MI_NUMBA_CACHE_DIR when that holds "
            "nothing yet, so a new classifier or training pod loads the model's kernels instead of compiling them; "
            "kernels compiled for another CPU are compiled again as usual."
    )

    # --- Producer --------------------------------------------------------
    producer_rate: float = _setting(0.0, "Records per second the producer sends; 0 means as fast as possible.")
    producer_shard: str = _setting("0/1", "Shard i/N of the dataset this producer sends.")
    producer_delivery_timeout_ms: int = _setting(
        120000, "How long the producer retries a record (e.g. while the broker is down) before failing it."
    )

    # --- Observability ------------------------------------------------------
    metrics_port: int = _setting(
        9464, "Port of /metrics, /healthz and /readyz; 0 disables the server, unless PPG_MI_METRICS_PORT_FILE "
        "is set: then 0 binds a free port."
    )
    metrics_host: str = _setting(
        "127.0.0.1", "Address the metrics server binds (the chart sets 0.0.0.0 for pods on a pod network)."
    )
    metrics_port_file: str = _setting(
        "", "File the metrics server writes the port it bound to (read by `ppg-mi probe`: pods that share "
        "the host network cannot each have a fixed port). Empty: none."
    )
    liveness_timeout_s: float = _setting(30.0, "/healthz fails when the main loop has not turned for this long.")
    lag_interval_s: float = _setting(5.0, "How often a consuming stage queries its group's committed lag.")
    log_level: str = _setting("INFO", "DEBUG, INFO, WARNING or ERROR.")
    log_format: str = _setting("auto", "json, text, or auto (text on a terminal, JSON otherwise).")

    # --- Dashboard ---------------------------------------------------------
    dashboard_port: int = _setting(8501, "Port of the Streamlit dashboard.")
    dashboard_host: str = _setting(
        "127.0.0.1", "Address the Streamlit dashboard binds (the chart sets 0.0.0.0 for pods on a pod network)."
    )
    dashboard_max_records: int = _setting(50000, "Predictions kept in the dashboard's memory (oldest dropped).")
    dashboard_refresh_s: float = _setting(2.0, "Refresh period of the live parts of the page.")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Build settings from ``PPG_MI_*`` variables; ``overrides`` win over the environment."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = ENV_PREFIX + f.name.upper()
            if f.name in overrides and overrides[f.name] is not None:
                values[f.name] = overrides[f.name]
            elif name in env:
                values[f.name] = _parse(name, env[name], f.type)
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        settings = cls(**values)
        settings.validate()
        return settings

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        if self.topic_partitions < 1:
            raise ConfigError("PPG_MI_TOPIC_PARTITIONS must be at least 1")
        if not 0 < self.filter_low_hz < self.filter_high_hz < self.sampling_rate_hz / 2:
            raise ConfigError(
                "the band-pass needs 0 < PPG_MI_FILTER_LOW_HZ < PPG_MI_FILTER_HIGH_HZ < "
                f"PPG_MI_SAMPLING_RATE_HZ/2, got {self.filter_low_hz} < {self.filter_high_hz} < "
                f"{self.sampling_rate_hz / 2}"
            )
        if self.batch_max_records < 1:
            raise ConfigError("PPG_MI_BATCH_MAX_RECORDS must be at least 1")
        if self.classifier_threads < 0:
            raise ConfigError(f"PPG_MI_CLASSIFIER_THREADS must be 0 (one per usable CPU) or more, got {self.classifier_threads}")
        if not 6000 <= self.session_timeout_ms <= 300000:
            # the broker's default group.min/max.session.timeout.ms: outside, every join is refused
            raise ConfigError(f"PPG_MI_SESSION_TIMEOUT_MS must lie within 6000..300000, got {self.session_timeout_ms}")
        if self.compression not in COMPRESSION_CODECS:
            raise ConfigError(f"PPG_MI_COMPRESSION must be one of {', '.join(COMPRESSION_CODECS)}, got {self.compression!r}")
        if self.log_format not in ("auto", "json", "text"):
            raise ConfigError("PPG_MI_LOG_FORMAT must be auto, json or text")
        parse_target_sensitivity(self.target_sensitivity)   # raises ConfigError when out of range

    @property
    def kafka_home(self) -> Path:
        return Path(self.cache_dir) / f"kafka-{self.kafka_version}"

    @property
    def bootstrap_servers(self) -> str:
        """The broker address clients use: the configured one, else the local broker."""
        return self.kafka_bootstrap_servers or f"{self.kafka_local_host}:{self.kafka_local_port}"

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """(variable, default, meaning) for every setting, for `ppg-mi config` and the docs."""
        rows = []
        for f in fields(cls):
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
            rows.append((ENV_PREFIX + f.name.upper(), str(default), f.metadata["help"]))
        return rows

    def as_env(self) -> dict[str, str]:
        """These settings as ``PPG_MI_*`` variables, to hand to a child process."""
        return {ENV_PREFIX + f.name.upper(): str(getattr(self, f.name)) for f in fields(self)}


def parse_target_sensitivity(raw: str | float | None) -> float | None:
    """PPG_MI_TARGET_SENSITIVITY as a number in (0, 1], or None for "no operating point" (0 or empty)."""
    text = "" if raw is None else str(raw).strip()
    try:
        value = float(text) if text else 0.0
    except ValueError:
        raise ConfigError(f"PPG_MI_TARGET_SENSITIVITY={raw!r} is not a number (0 or empty: no operating point)") from None
    if value == 0.0:
        return None
    if not 0.0 < value <= 1.0:
        raise ConfigError(f"PPG_MI_TARGET_SENSITIVITY must lie in (0, 1] (0 or empty: no operating point), got {raw!r}")
    return value


def _parse(name: str, raw: str, type_: Any) -> Any:
    kind = type_ if isinstance(type_, str) else getattr(type_, "__name__", str(type_))
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind}") from None
    return raw
