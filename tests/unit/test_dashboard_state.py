"""The dashboard's pure parts: bounded deduplicated state, and the numbers the page shows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ppg_mi.dashboard import views as v
from ppg_mi.dashboard.state import (
    MAX_LABEL_CHARS,
    OTHER,
    DeadLetterCounts,
    PredictionStore,
    WaveformCache,
    bounded_label,
)
from ppg_mi.model.metrics import classification_metrics
from ppg_mi.streaming.codec import Prediction

T0 = 1_700_000_000_000_000  # µs


def pred(i: int, true: str | None = "Normal", predicted: str = "Normal", version: str = "v1", shard: int = 0,
         score: float = 0.2, t_us: int | None = None, latency_us: int = 50_000) -> Prediction:
    t = T0 + i * 1_000_000 if t_us is None else t_us
    return Prediction(f"rec-{i}", predicted, {"Normal": 1 - score, "MI": score}, version, true, shard,
                      t - latency_us, t - latency_us // 2, t)


def random_predictions(n: int, seed: int = 0, labelled: bool = True) -> list[Prediction]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t = ["Normal", "MI"][rng.integers(0, 2)]
        p = t if rng.random() < 0.8 else ("MI" if t == "Normal" else "Normal")
        out.append(pred(i, t if labelled else None, p, version=f"v{i % 3}", shard=i % 4,
                        score=float(rng.random()), latency_us=int(rng.integers(1_000, 900_000))))
    return out


def store_of(predictions: list[Prediction], capacity: int = 10_000) -> PredictionStore:
    store = PredictionStore(capacity)
    store.add_many(predictions, 0.0)
    return store


# --- state ------------------------------------------------------------------------
def test_a_record_predicted_twice_is_counted_once_and_the_latest_prediction_wins() -> None:
    store = PredictionStore(100)
    assert store.add(pred(1, "MI", "Normal", version="v1"), 0.0) is True
    assert store.add(pred(2), 0.0) is True
    # the same shard replayed: same record ids again, a newer model this time
    assert store.add_many([pred(1, "MI", "MI", version="v2"), pred(2)], 1.0) == 0
    df = store.frame()
    assert len(df) == 2 and store.duplicates == 2
    row = df[df["record_id"] == "rec-1"].iloc[0]
    assert row["pred_code"] == 1 and row["model_version"] == "v2"


def test_the_ring_keeps_the_newest_records_within_capacity() -> None:
    store = PredictionStore(5)
    store.add_many([pred(i) for i in range(12)], 0.0)
    df = store.frame()
    assert len(df) == 5 and store.evicted == 7
    assert df["record_id"].tolist() == [f"rec-{i}" for i in range(7, 12)]
    # an evicted record coming back is a new row again; a kept one is still a duplicate
    assert store.add(pred(0), 0.0) is True
    assert store.add(pred(11), 0.0) is False
    assert len(store.frame()) == 5


def test_frame_is_a_sorted_copy_with_typed_columns() -> None:
    store = PredictionStore(10)
    store.add_many([pred(3), pred(1), pred(2)], 0.0)
    df = store.frame()
    assert df["record_id"].tolist() == ["rec-1", "rec-2", "rec-3"]
    assert df["true_code"].dtype == np.int8 and df["predicted_us"].dtype == np.int64
    assert isinstance(df["model_version"].dtype, pd.CategoricalDtype)
    df.loc[0, "shard"] = 99
    assert 99 not in store.frame()["shard"].tolist()


def test_unlabelled_predictions_store_minus_one_as_true_code() -> None:
    df = store_of([pred(1, None, "MI")]).frame()
    assert df["true_code"].tolist() == [-1]


def test_waveform_cache_is_bounded_and_owns_its_samples() -> None:
    cache = WaveformCache(3)
    buffer = np.arange(10, dtype=np.float32)
    for i in range(5):
        cache.put(f"r{i}", buffer, 125.0)
    assert len(cache) == 3 and cache.get("r0") is None and cache.get("r4") is not None
    buffer[:] = -1
    assert cache.get("r4").samples[1] == 1.0
    cache.put("r2", buffer, 125.0)  # refreshed: now the newest, r3 is the oldest
    cache.put("r9", buffer, 125.0)
    assert cache.get("r3") is None and cache.get("r2") is not None


def test_dead_letter_counts_by_stage_and_reason() -> None:
    dlq = DeadLetterCounts()
    for stage, reason in [("filter", "truncated"), ("filter", "truncated"), ("classifier", "bad_label")]:
        dlq.add(stage, reason)
    assert dlq.total == 3
    assert dlq.table().set_index(["stage", "reason"])["count"].to_dict() == {
        ("classifier", "bad_label"): 1, ("filter", "truncated"): 2}


# --- metrics ----------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_running_metrics_equal_classification_metrics(seed: int) -> None:
    predictions = random_predictions(400, seed)
    df = store_of(predictions).frame()
    expected = classification_metrics([p.true_label for p in predictions], [p.predicted_label for p in predictions])
    got = v.running_metrics(df)
    for key in v.METRIC_NAMES:
        assert got[key] == pytest.approx(expected[key])
    assert got["n"] == 400
    assert v.label_metrics(df)["accuracy"] == pytest.approx(expected["accuracy"])


@pytest.mark.parametrize("labels", [
    [("Normal", "Normal")] * 5,                       # one class only
    [("MI", "MI")] * 3,
    [("MI", "Normal"), ("Normal", "MI")],             # all wrong
])
def test_counts_based_metrics_match_sklearn_conventions_on_edge_cases(labels: list[tuple[str, str]]) -> None:
    df = store_of([pred(i, t, p) for i, (t, p) in enumerate(labels)]).frame()
    expected = classification_metrics([t for t, _ in labels], [p for _, p in labels])
    got = v.running_metrics(df)
    for key in v.METRIC_NAMES:
        assert got[key] == (pytest.approx(expected[key]) if expected[key] is not None else None)


def test_trends_end_at_the_overall_and_last_n_values() -> None:
    predictions = random_predictions(300, 5)
    df = store_of(predictions).frame()
    running = v.running_trend(df, max_points=50)
    assert len(running) <= 50
    overall = v.running_metrics(df)
    for key in v.METRIC_NAMES:
        assert running[key].iloc[-1] == pytest.approx(overall[key])
    rolling = v.rolling_trend(df, 40, max_points=50)
    last40 = v.last_n_metrics(df, 40)
    for key in v.METRIC_NAMES:
        assert rolling[key].iloc[-1] == pytest.approx(last40[key])
    assert last40["n"] == 40


def test_confusion_matrix_counts_and_normalisation() -> None:
    labels = [("Normal", "Normal")] * 6 + [("Normal", "MI")] * 2 + [("MI", "MI")] * 3 + [("MI", "Normal")]
    df = store_of([pred(i, t, p) for i, (t, p) in enumerate(labels)] + [pred(99, None, "MI")]).frame()
    counts, norm = v.confusion(df)
    assert counts.loc["true Normal"].tolist() == [6, 2]
    assert counts.loc["true MI"].tolist() == [1, 3]
    assert norm.loc["true Normal", "predicted MI"] == pytest.approx(0.25)
    assert norm.to_numpy().sum(axis=1) == pytest.approx([1.0, 1.0])


def test_unlabelled_data_hides_label_based_results_but_keeps_predictions() -> None:
    predictions = random_predictions(50, 3, labelled=False)
    df = store_of(predictions).frame()
    assert v.running_metrics(df) is None and v.label_metrics(df) is None and v.confusion(df) is None
    assert v.running_trend(df) is None and v.rolling_trend(df, 10) is None
    assert v.headline(df, 0)["recordings"] == 50
    dist = v.class_distribution(df)
    assert list(dist.columns) == ["predicted"] and dist["predicted"].sum() == 50
    assert "true" not in v.latest(df).columns and len(v.latest(df, 20)) == 20
    assert "accuracy" not in v.model_versions(df).columns


def test_filters_by_time_shard_and_model_version() -> None:
    df = store_of(random_predictions(100, 4)).frame()   # one per second, shards i%4, versions v{i%3}
    assert len(v.apply_filters(df, v.Filters(shards=(1, 3)))) == 50
    assert set(v.apply_filters(df, v.Filters(versions=("v2",)))["model_version"]) == {"v2"}
    now_s = (T0 + 99 * 1_000_000) / 1e6
    assert len(v.apply_filters(df, v.Filters(window_s=9.5), now_s=now_s)) == 10
    both = v.apply_filters(df, v.Filters(window_s=9.5, shards=(0,)), now_s=now_s)
    assert both["record_id"].tolist() == ["rec-92", "rec-96"]


def test_headline_latency_throughput_versions_alerts() -> None:
    predictions = [pred(i, "MI" if i % 2 else "Normal", "MI" if i % 3 == 0 else "Normal",
                        version="v1" if i < 6 else "v2", latency_us=(i + 1) * 100_000) for i in range(10)]
    df = store_of(predictions).frame()
    head = v.headline(df, dlq_total=7)
    assert head == {"recordings": 10, "mi_predicted": 4, "labelled": 10, "dlq": 7}
    lat = v.latency_summary(df)
    assert lat["p50_s"] == pytest.approx(0.55) and lat["p95_s"] == pytest.approx(0.955)
    series, rate = v.throughput(df)
    assert rate == pytest.approx(10 / 9) and series["predictions/s"].sum() > 0
    versions = v.model_versions(df).set_index("model version")
    assert versions["predictions"].to_dict() == {"v1": 6, "v2": 4}
    alerts = v.alerts(df)
    assert alerts["record id"].tolist() == ["rec-9", "rec-6", "rec-3", "rec-0"]  # newest first
    assert set(alerts["predicted"]) == {"MI"}
    assert v.latest(df, 3)["record id"].tolist() == ["rec-9", "rec-8", "rec-7"]
    assert v.latency_trend(df)["p95 s"].max() <= 1.0


def test_model_versions_show_each_versions_operating_point_from_its_predictions() -> None:
    point = dict(threshold=0.31, target_sensitivity=0.95, validation_sensitivity=0.96, validation_specificity=0.84,
                 validation_brier=0.11)
    with_point = [Prediction(f"op-{i}", "MI", {"Normal": 0.6, "MI": 0.4}, "v-op", "MI", 0, T0, T0, T0 + i, **point)
                  for i in range(3)]
    argmax = [pred(10 + i, version="v-argmax") for i in range(2)]
    table = v.model_versions(store_of(with_point + argmax).frame()).set_index("model version")
    assert table.loc["v-op", "MI threshold"] == pytest.approx(0.31)
    assert table.loc["v-op", "target sensitivity"] == pytest.approx(0.95)
    assert table.loc["v-op", "validation sensitivity"] == pytest.approx(0.96)
    assert table.loc["v-op", "validation specificity"] == pytest.approx(0.84)
    assert table.loc["v-op", "validation Brier"] == pytest.approx(0.11)
    assert np.isnan(table.loc["v-argmax", "MI threshold"])           # decides by argmax: no threshold shown
    # no version with an operating point: no such columns
    assert "MI threshold" not in v.model_versions(store_of(argmax).frame()).columns


# --- bounds on what anyone can write (issue 18 item 9) ------------------------------
def test_model_versions_are_bounded_and_the_overflow_is_counted_exactly_under_other() -> None:
    store = PredictionStore(10_000, max_versions=5)
    # 2,000 predictions, each naming its own model version, some absurdly long
    store.add_many([pred(i, version=f"v{i}-" + "x" * (i % 7) * 100) for i in range(2_000)], 0.0)
    df = store.frame()
    assert len(df) == 2_000
    assert store.version_names == 5 and len(df["model_version"].cat.categories) == 6  # 5 named + OTHER
    assert max(len(str(c)) for c in df["model_version"].cat.categories) <= MAX_LABEL_CHARS
    table = v.model_versions(df).set_index("model version")
    assert table["predictions"].sum() == 2_000                       # totals stay exact
    assert table.loc[OTHER, "predictions"] == 1_995 == store.folded_predictions == v.folded_predictions(df)


def test_a_version_whose_rows_left_the_ring_frees_its_name_for_a_new_one() -> None:
    store = PredictionStore(4, max_versions=2)
    store.add_many([pred(i, version=f"old{i % 2}") for i in range(4)], 0.0)
    # the ring turns over to newer versions: the old names are freed, the new ones kept by name
    store.add_many([pred(10 + i, version=f"new{i % 2}") for i in range(4)], 0.0)
    # the first two came while both old names still had rows: folded; the last two took the freed names
    assert store.frame()["model_version"].astype(str).tolist() == [OTHER, OTHER, "new0", "new1"]
    assert store.folded_predictions == 2
    store.add_many([pred(20 + i, version=f"new{i % 2}") for i in range(4)], 0.0)
    assert set(store.frame()["model_version"].astype(str)) == {"new0", "new1"} and store.folded_predictions == 2
    # thousands of turns over distinct versions never hold more than max_versions names
    for i in range(3_000):
        store.add(pred(100 + i, version=f"churn{i}"), 0.0)
        assert store.version_names <= 2
    df = store.frame()
    assert len(df) == 4 and len(df["model_version"].cat.categories) <= 3
    assert store.evicted == 3_008


def test_a_replayed_prediction_moves_its_row_to_the_new_version() -> None:
    store = PredictionStore(10, max_versions=1)
    store.add(pred(1, version="v1"), 0.0)
    store.add(pred(1, version="v2"), 0.0)    # v1 has no row left: v2 takes its name slot
    assert store.frame()["model_version"].astype(str).tolist() == ["v2"] and store.folded_predictions == 0


def test_a_version_named_like_the_other_bucket_is_folded_into_it() -> None:
    store = PredictionStore(10, max_versions=3)
    store.add_many([pred(1, version=OTHER), pred(2, version="v1")], 0.0)
    df = store.frame()
    assert sorted(df["model_version"].astype(str)) == sorted([OTHER, "v1"]) and store.folded_predictions == 1


def test_dead_letter_keys_are_bounded_and_the_total_stays_exact() -> None:
    dlq = DeadLetterCounts(max_keys=10)
    for i in range(5_000):
        dlq.add(f"stage{i % 3}", f"reason-{i}-" + "r" * 5_000)
    dlq.add("filter", "")
    table = dlq.table()
    assert dlq.total == 5_001 == table["count"].sum()
    assert len(table) == 11                                            # 10 named + (other, other)
    assert table["reason"].str.len().max() <= MAX_LABEL_CHARS and table["stage"].str.len().max() <= MAX_LABEL_CHARS
    other = table[(table["stage"] == OTHER) & (table["reason"] == OTHER)]
    assert other["count"].tolist() == [4_991] and dlq.folded == 4_991


def test_labels_are_cut_and_made_printable() -> None:
    assert bounded_label("") == "?" and bounded_label(None) == "?"
    assert bounded_label("truncated") == "truncated"
    cut = bounded_label("a" * 10_000)
    assert len(cut) == MAX_LABEL_CHARS and cut.endswith("…")
    assert bounded_label("bad\nreason\x1b[31m") == "bad\ufffdreason\ufffd[31m"
