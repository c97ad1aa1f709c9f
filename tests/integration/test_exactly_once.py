"""Replays and reconciliation on the real broker (#4).

* A producer shard run twice writes every recording twice, under the same key: the
  duplicates are recognisable by record id downstream too (each prediction names it).
* ``in = out + dead letters`` per stage, from the stages' own metrics and from the topics.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from ppg_mi.config import Settings
from ppg_mi.streaming import dlq
from ppg_mi.streaming.codec import Recording, decode_prediction

from ..helpers import ServiceProcess, produce_raw, read_topic, synthetic_raw, wait_for


@pytest.fixture
def settings(served_settings: Settings) -> Settings:
    return served_settings.replace(batch_max_records=32)


def _produce_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **settings.as_env(), "PPG_MI_METRICS_PORT": "0"}
    return subprocess.run([sys.executable, "-m", "ppg_mi", "produce", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_a_shard_run_twice_is_recognisable_by_record_id(settings: Settings, tmp_path: Path) -> None:
    services = [ServiceProcess(settings, "filter", log_dir=tmp_path, name="filter-r"),
                ServiceProcess(settings, "classify", log_dir=tmp_path, name="classifier-r")]
    try:
        for s in services:
            s.wait_ready()
        for _ in range(2):  # the same Job re-run (e.g. retried by Kubernetes after a failure)
            result = _produce_cli(settings, "--synthetic", "40", "--seed", "5", "--shard", "0/1")
            assert result.returncode == 0, result.stderr
        raw = read_topic(settings, settings.topic_raw, 80)
        predictions = read_topic(settings, settings.topic_predictions, 80, timeout=120)
    finally:
        for s in services:
            s.terminate()
            s.close()
    copies: dict[str, set[int]] = defaultdict(set)
    for r in raw:
        copies[r.key].add(r.partition)
    assert len(copies) == 40 and Counter(r.key for r in raw) == Counter({k: 2 for k in copies})
    assert all(len(parts) == 1 for parts in copies.values()), "same key, same partition: replays stay in order"
    # downstream, each input message was predicted once, and the prediction names its recording
    assert Counter(p.key for p in predictions) == Counter(r.key for r in raw)
    assert all(decode_prediction(p.value).record_id == p.key for p in predictions)
    assert len({p.key for p in predictions}) == 40, "counting by record id counts each recording once"


def test_in_equals_out_plus_dead_letters_per_stage(settings: Settings, tmp_path: Path) -> None:
    good = synthetic_raw(90, "recon")
    wave = np.sin(np.linspace(0, 60, settings.samples_per_record)).astype(np.float32)
    nan = wave.copy()
    nan[5] = np.nan
    bad_raw = [(b"r-corrupt", b"\xff\xff junk"), (b"r-short", Recording("r-short", wave[:500], 125.0).encode()),
               (b"r-nan", Recording("r-nan", nan, 125.0).encode())]
    # straight onto ppg.filtered: not filtered (no filtered timestamp) and undecodable input for the classifier
    bad_filtered = [(b"f-unfiltered", Recording("f-unfiltered", wave, 125.0).encode()),
                    (b"f-corrupt", b"\x02\x01 a prediction? no")]
    services = [ServiceProcess(settings, "filter", log_dir=tmp_path, name="filter-q"),
                ServiceProcess(settings, "classify", log_dir=tmp_path, name="classifier-q")]
    filt, clf = services
    try:
        for s in services:
            s.wait_ready()
        produce_raw(settings, good[:45] + bad_raw + good[45:])
        produce_raw(settings, bad_filtered, topic=settings.topic_filtered)
        n_raw = len(good) + len(bad_raw)
        n_filtered_in = len(good) + len(bad_filtered)
        wait_for(lambda: filt.metric("ppg_mi_records_consumed_total") >= n_raw
                 and clf.metric("ppg_mi_records_consumed_total") >= n_filtered_in, 120,
                 what="both stages to commit all their input")
        stage_metrics = {
            s.name.split("-")[0]: {k: s.metric(f"ppg_mi_records_{k}_total") for k in ("consumed", "produced",
                                                                                 "dead_lettered")}
            for s in services}
        topics = {t: read_topic(settings, t, 1) for t in (settings.topic_raw, settings.topic_filtered,
                                                          settings.topic_predictions, settings.topic_dlq)}
    finally:
        for s in services:
            s.terminate()
            s.close()
    print(f"\nper-stage metrics: {stage_metrics}")
    dead_by_stage = Counter(r.headers[dlq.H_STAGE] for r in topics[settings.topic_dlq])
    # from the metrics
    for stage, m in stage_metrics.items():
        assert m["consumed"] == m["produced"] + m["dead_lettered"], f"{stage}: {m}"
    assert stage_metrics["filter"] == {"consumed": n_raw, "produced": len(good), "dead_lettered": len(bad_raw)}
    assert stage_metrics["classifier"] == {"consumed": n_filtered_in, "produced": len(good),
                                           "dead_lettered": len(bad_filtered)}
    # from the topics
    assert len(topics[settings.topic_raw]) == len(topics[settings.topic_filtered]) - len(bad_filtered) \
        + dead_by_stage["filter"]
    assert len(topics[settings.topic_filtered]) == len(topics[settings.topic_predictions]) \
        + dead_by_stage["classifier"]
    reasons = {r.key: (r.headers[dlq.H_STAGE], r.headers[dlq.H_REASON]) for r in topics[settings.topic_dlq]}
    assert reasons == {"r-corrupt": ("filter", "unknown_schema"), "r-short": ("filter", "wrong_length"),
                       "r-nan": ("filter", "non_finite"), "f-unfiltered": ("classifier", "not_filtered"),
                       "f-corrupt": ("classifier", "unknown_schema")}
    assert sorted(p.key for p in topics[settings.topic_predictions]) == sorted(k.decode() for k, _ in good)
