"""The Streamlit page: layout and rendering only; numbers come from :mod:`.views`.

The static part (title, the not-a-medical-device notice) is drawn once per session;
everything live sits in one ``st.fragment(run_every=PPG_MI_DASHBOARD_REFRESH_S)``, so a
refresh reruns only that function against a snapshot of the shared state, never the
whole script, and never touches Kafka.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import streamlit as st

from ..config import Settings
from . import charts
from . import runtime as rt_module
from . import views as v
from .runtime import DashboardRuntime
from .state import OTHER

NOTICE = ("**Research demonstration, not a medical device.** Predictions come from a model trained on "
          "research data; they must not be used to diagnose, treat or monitor anyone.")
LATEST_ROWS = 200
ALERT_ROWS = 50


@st.cache_resource(show_spinner=False)
def _runtime(key: str, _settings: Settings) -> DashboardRuntime:
    # one per server process (and per settings, which only tests vary): the reader thread,
    # the state and the metrics server live as long as the process
    return rt_module.shared(_settings)


def get_runtime(settings: Settings) -> DashboardRuntime:
    return _runtime(repr(sorted(settings.as_env().items())), settings)


def main() -> None:
    settings = Settings.from_env()
    st.set_page_config(page_title="ppg-mi · live MI detection", page_icon="🫀", layout="wide")
    runtime = get_runtime(settings)
    st.title("ppg-mi · live MI detection from PPG")
    st.warning(NOTICE, icon="⚠️")
    live = st.fragment(run_every=settings.dashboard_refresh_s)(render_live)
    live(runtime)


# --- the live fragment ----------------------------------------------------------------
def render_live(runtime: DashboardRuntime) -> None:
    started = time.perf_counter()
    s = runtime.settings
    df_all = runtime.store.frame()
    _status(runtime, len(df_all))
    filters, window_n = _filters(df_all)
    df = v.apply_filters(df_all, filters)

    head = v.headline(df, runtime.dlq.total)
    thr_series, mean_rate = v.throughput(df)
    lat = v.latency_summary(df)
    cols = st.columns(6)
    cols[0].metric("Recordings", f"{head['recordings']:,}", help="Distinct record ids (replays counted once)")
    cols[1].metric("MI predicted", f"{head['mi_predicted']:,}")
    cols[2].metric("Dead letters (DLQ)", f"{head['dlq']:,}", help=f"Records on {s.topic_dlq}, all stages")
    cols[3].metric("Throughput", f"{mean_rate:.1f}/s", help="Predictions per second over the shown span")
    cols[4].metric("Latency p50", f"{lat['p50_s']:.3f} s" if lat else "–", help="produced → predicted")
    cols[5].metric("Latency p95", f"{lat['p95_s']:.3f} s" if lat else "–", help="produced → predicted")

    if df.empty:
        st.info(f"Waiting for predictions on `{s.topic_predictions}` (none match the filters yet).")
    elif head["labelled"] == 0:
        st.info("These recordings carry no true label: accuracy, F1, sensitivity, specificity and the "
                "confusion matrix are hidden; predictions are shown below.")
    else:
        _label_based(df, window_n)

    left, right = st.columns(2)
    with left:
        st.subheader("Class distribution")
        _bars(v.class_distribution(df), 220)
    with right:
        st.subheader("Model versions seen")
        versions = v.model_versions(df)
        st.dataframe(versions, hide_index=True, height=220)
        if "MI threshold" in versions.columns:
            st.caption("**Operating point** (from the predictions): a version with an MI threshold calls a recording "
                       "MI when its calibrated MI probability reaches the threshold, chosen at training for the "
                       "target sensitivity; validation sensitivity, specificity and Brier score are those of the "
                       "training's held-out folds at that threshold. No threshold: the version decides by argmax.")
        folded = v.folded_predictions(df)
        if folded:
            st.caption(f"More than {runtime.store.max_versions} model versions in memory: {folded:,} "
                       f"predictions of the others are counted together as `{OTHER}`.")

    left, right = st.columns(2)
    with left:
        st.subheader("Throughput")
        if thr_series is not None:
            _lines(thr_series, "predictions/s", 220)
    with right:
        st.subheader("End-to-end latency")
        lat_trend = v.latency_trend(df)
        if lat_trend is not None:
            _lines(lat_trend, "seconds", 220)

    left, right = st.columns([3, 2])
    with left:
        st.subheader("Latest predictions")
        latest = v.latest(df, LATEST_ROWS)
        st.dataframe(latest, hide_index=True, height=300)
    with right:
        st.subheader("MI alerts")
        alerts = v.alerts(df, ALERT_ROWS)
        with st.container(key="mi_alerts"):
            if alerts.empty:
                st.caption("No MI predicted in the shown data.")
            else:
                st.dataframe(alerts[["record id", "predicted at", "MI score", "shard"]], hide_index=True,
                             height=300)

    _record_view(runtime, df, latest, alerts)
    _dead_letters(runtime)
    st.caption(f"refreshed every {s.dashboard_refresh_s:g} s · page computed in "
               f"{(time.perf_counter() - started) * 1000:.0f} ms")


def _lines(wide: pd.DataFrame, y_title: str, height: int, y_domain: list[float] | None = None) -> None:
    long, x = charts.long_form(wide)
    x_type = "temporal" if isinstance(wide.index, pd.DatetimeIndex) else "quantitative"
    st.vega_lite_chart(long, charts.line_spec(x, x_type, y_title, height, y_domain=y_domain))


def _bars(wide: pd.DataFrame, height: int) -> None:
    long, x = charts.long_form(wide)
    st.vega_lite_chart(long, charts.bar_spec(x, height))


def _status(runtime: DashboardRuntime, n: int) -> None:
    store = runtime.store
    text = (f"{n:,} / {store.capacity:,} predictions in memory · {store.duplicates:,} repeated predictions "
            f"ignored · {store.evicted:,} oldest dropped · updated {time.strftime('%H:%M:%S')}")
    with st.container(key="connection"):
        if runtime.connected:
            st.success(f"connected to {runtime.settings.bootstrap_servers} · {text}", icon="🟢")
        else:
            st.error(f"disconnected from {runtime.settings.bootstrap_servers}, reconnecting by itself "
                     f"({runtime.reader.last_error or 'no answer yet'}) · {text}", icon="🔴")


def _filters(df: pd.DataFrame) -> tuple[v.Filters, int]:
    cols = st.columns([2, 2, 3, 1])
    window = cols[0].selectbox("Time range", list(v.TIME_RANGES), key="f_time")
    shard_options = sorted(set(int(x) for x in np.unique(df["shard"].to_numpy()))
                           | set(st.session_state.get("f_shards", [])))
    shards = cols[1].multiselect("Producer shards", shard_options, key="f_shards", placeholder="all shards")
    version_options = sorted(set(df["model_version"].astype(str).unique())
                             | set(st.session_state.get("f_versions", [])))
    versions = cols[2].multiselect("Model versions", version_options, key="f_versions",
                                   placeholder="all versions")
    n = cols[3].number_input("Last N", min_value=10, max_value=100_000, value=500, step=50, key="f_last_n",
                             help="Window of the 'last N' metrics and trend")
    return v.Filters(v.TIME_RANGES[window], tuple(shards), tuple(versions)), int(n)


def _fmt(x: float | int | None) -> str:
    return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.3f}"


def _label_based(df: pd.DataFrame, window_n: int) -> None:
    running = v.running_metrics(df) or {}
    recent = v.last_n_metrics(df, window_n) or {}
    names = {"accuracy": "Accuracy", "macro_f1": "Macro-F1", "sensitivity_mi": "MI sensitivity",
             "specificity": "Specificity"}
    cols = st.columns(len(names))
    for col, (key, title) in zip(cols, names.items()):
        with col.container(key=f"metric_{key}"):
            st.metric(f"{title} (running)", _fmt(running.get(key)))
            st.caption(f"last {window_n}: {_fmt(recent.get(key))}")

    left, right = st.columns(2)
    with left:
        st.subheader("Running metrics over time")
        trend = v.running_trend(df)
        if trend is not None:
            _lines(trend, "running value", 240, [0, 1])
    with right:
        st.subheader(f"Metrics over the last {window_n} predictions")
        rolling = v.rolling_trend(df, window_n)
        if rolling is not None:
            _lines(rolling, f"over last {window_n}", 240, [0, 1])

    cm = v.confusion(df)
    if cm is not None:
        counts, normalised = cm
        left, right = st.columns(2)
        with left:
            st.subheader("Confusion matrix (counts)")
            with st.container(key="confusion_counts"):
                st.table(counts)
        with right:
            st.subheader("Confusion matrix (normalised by true class)")
            with st.container(key="confusion_normalised"):
                st.table(normalised.round(3))


def _record_view(runtime: DashboardRuntime, df: pd.DataFrame, latest: pd.DataFrame, alerts: pd.DataFrame) -> None:
    st.subheader("Recording")
    options = list(dict.fromkeys([*latest["record id"].tolist(), *alerts["record id"].tolist()]))
    chosen = st.session_state.get("record")
    if chosen and chosen not in options:
        options.append(chosen)
    if not options:
        st.caption("Select a recording once predictions arrive.")
        return
    record_id = st.selectbox("Record id (latest predictions and MI alerts)", options, key="record")
    row = df[df["record_id"].to_numpy() == record_id]
    with st.container(key="record_prediction"):
        if not row.empty:
            r = row.iloc[-1]
            true = v.label_names(np.array([r["true_code"]]))[0]
            st.markdown(
                f"**{record_id}** · predicted **{v.label_names(np.array([r['pred_code']]))[0]}** "
                f"(MI score {r['score_mi']:.3f}) · true label **{true or 'unknown'}** · model "
                f"`{r['model_version']}` · shard {r['shard']}")
    left, right = st.columns(2)
    s = runtime.settings
    for col, cache, title in ((left, runtime.raw, f"Raw ({s.topic_raw})"),
                              (right, runtime.filtered, f"Filtered ({s.topic_filtered})")):
        with col:
            st.markdown(f"**{title}**")
            wave = cache.get(record_id)
            if wave is None:
                st.caption(f"Not in memory: only the last {cache.capacity} recordings' samples are kept.")
            else:
                t = np.arange(wave.samples.size) / wave.sampling_rate_hz
                _lines(pd.DataFrame({"amplitude": wave.samples}, index=pd.Index(t, name="seconds")),
                       "amplitude", 200)


def _dead_letters(runtime: DashboardRuntime) -> None:
    table = runtime.dlq.table()
    if not table.empty:
        st.subheader("Dead letters by stage and reason")
        st.dataframe(table, hide_index=True)
        if runtime.dlq.folded:
            st.caption(f"More than {runtime.dlq.max_keys} distinct stages and reasons: {runtime.dlq.folded:,} "
                       f"dead letters of the others are counted together as `{OTHER}`.")
