"""Grafana dashboards as code: pipeline overview, model, Kafka.

Generated with ``grafana-foundation-sdk`` and committed under
``helm/ppg-mi/files/dashboards/`` (the chart ships them as ConfigMaps)::

    ppg-mi observability generate            # or: python -m ppg_mi.observability.dashboards

``tests/unit/test_dashboards_fresh.py`` fails when the committed JSON differs from what
this module generates.  Panels are data (:class:`PanelSpec`) so that the real-Prometheus
test can evaluate every expression; ``$__rate_interval`` is Grafana's range variable
(the test substitutes a window suited to its 1 s scrape interval).  Panels marked
``exporter_only`` read Strimzi's kafka-exporter (``kafka_*`` metrics), which exists
only in the cluster; the local test lists and skips exactly those.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .alerts import LATENCY_BUDGET_S

RATE = "$__rate_interval"
#: the de-duplicated committed lag per stage and partition (every replica reports every partition)
LAG = "max by (stage, topic, partition) (ppg_mi_consumer_lag_records)"
EXPORTER_NOTE = "Needs Strimzi's kafka-exporter (Kafka CR spec.kafkaExporter); no data without it."


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str


@dataclass(frozen=True)
class PanelSpec:
    title: str
    targets: tuple[Target, ...]
    unit: str = "short"
    description: str = ""
    kind: str = "timeseries"  # or "stat"
    width: int = 12
    height: int = 8
    exporter_only: bool = False


@dataclass(frozen=True)
class DashboardSpec:
    uid: str
    title: str
    description: str
    panels: tuple[PanelSpec, ...]

    @property
    def filename(self) -> str:
        return f"{self.uid}.json"


def _t(expr: str, legend: str) -> Target:
    return Target(expr, legend)


def _quantile(q: float, metric: str, by: str = "") -> str:
    group = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket[{RATE}])))"


PIPELINE = DashboardSpec(
    uid="ppg-mi-pipeline",
    title="ppg-mi / Pipeline overview",
    description="Throughput, lag, latency and dead letters of every stage of ppg-mi.",
    panels=(
        PanelSpec("Throughput per stage", (
            _t(f"sum by (stage) (rate(ppg_mi_records_produced_total[{RATE}]))", "{{stage}} out"),
            _t(f"sum(rate(ppg_mi_producer_records_sent_total[{RATE}]))", "producer sent"),
        ), unit="recps", description="Records written per second: producer acknowledged, stages committed."),
        PanelSpec("Consumed per stage", (
            _t(f"sum by (stage) (rate(ppg_mi_records_consumed_total[{RATE}]))", "{{stage}} in"),
        ), unit="recps", description="Input records per second whose transaction committed."),
        PanelSpec("Consumer lag per group", (
            _t(f"sum by (stage) ({LAG})", "{{stage}}"),
        ), unit="short", description=(
            "Committed lag of each stage's consumer group, queried by the stage. Idle, the classifier's group shows 1 "
            "per partition: the commit marker of the filter's transactions (kedacore/keda#5675).")),
        PanelSpec("End-to-end latency (produced → predicted)", (
            _t(_quantile(0.5, "ppg_mi_end_to_end_latency_seconds"), "p50"),
            _t(_quantile(0.9, "ppg_mi_end_to_end_latency_seconds"), "p90"),
            _t(_quantile(0.99, "ppg_mi_end_to_end_latency_seconds"), "p99"),
        ), unit="s", description=f"Alert budget for p99: {LATENCY_BUDGET_S} s."),
        PanelSpec("Dead letters per stage and reason", (
            _t(f'sum by (stage, reason) (rate(ppg_mi_records_dead_lettered_total{{reason!="none"}}[{RATE}]))',
               "{{stage}} {{reason}}"),
            _t(f"sum by (stage) (rate(ppg_mi_records_dead_lettered_total[{RATE}]))", "{{stage}} total"),
        ), unit="recps", description="Records sent to the DLQ per second (in = out + dead letters)."),
        PanelSpec("Replicas (ready / running)", (
            _t("sum by (role) (ppg_mi_ready)", "{{role}} ready"),
            _t("count by (role) (ppg_mi_ready)", "{{role}} running"),
        ), unit="short", description="Processes exporting ppg_mi_ready, and how many pass /readyz."),
        PanelSpec("Batch processing time p95", (
            _t(_quantile(0.95, "ppg_mi_batch_processing_seconds", "stage"), "{{stage}}"),
        ), unit="s", description="Consume → commit wall time of one micro-batch (one transaction)."),
        PanelSpec("Transaction commit time p95", (
            _t(_quantile(0.95, "ppg_mi_transaction_seconds", "stage"), "{{stage}}"),
        ), unit="s", description=(
            "send_offsets_to_transaction + commit_transaction of one batch: the per-batch price of exactly "
            "once. Tens of ms on a healthy broker; ~100 ms means refused requests waiting out the retry "
            "backoff (PPG_MI_TRANSACTION_RETRY_BACKOFF_MS).")),
        PanelSpec("Mean batch size", (
            _t(f"sum by (stage) (rate(ppg_mi_batch_size_records_sum[{RATE}])) / "
               f"sum by (stage) (rate(ppg_mi_batch_size_records_count[{RATE}]))", "{{stage}}"),
        ), unit="short", description="Records per committed transaction."),
        PanelSpec("Transactions", (
            _t(f"sum by (stage, outcome) (rate(ppg_mi_transactions_total[{RATE}]))", "{{stage}} {{outcome}}"),
        ), unit="ops", description="Kafka transactions per second by outcome."),
        PanelSpec("Producer progress", (
            _t("sum by (shard) (ppg_mi_producer_records_sent_total) / "
               "sum by (shard) (ppg_mi_producer_records_total)", "shard {{shard}}"),
        ), unit="percentunit", description="Acknowledged / total records of each producer shard (Job)."),
        PanelSpec("Seconds since the loop turned", (
            _t("time() - max by (stage) (ppg_mi_loop_last_turn_timestamp_seconds)", "{{stage}}"),
        ), unit="s", description="Liveness: /healthz fails above PPG_MI_LIVENESS_TIMEOUT_S."),
        PanelSpec("Versions running", (
            _t("count by (version) (ppg_mi_build_info)", "ppg-mi {{version}}"),
        ), kind="stat", unit="short", description="Processes per ppg-mi build."),
    ),
)

MODEL = DashboardSpec(
    uid="ppg-mi-model",
    title="ppg-mi / Model",
    description="What the classifier predicts and which model versions do it.",
    panels=(
        PanelSpec("Predictions by class", (
            _t(f"sum by (predicted_class) (rate(ppg_mi_predictions_total[{RATE}]))", "{{predicted_class}}"),
        ), unit="recps"),
        PanelSpec("MI rate", (
            _t(f'sum(rate(ppg_mi_predictions_total{{predicted_class="MI"}}[{RATE}])) / '
               f"sum(rate(ppg_mi_predictions_total[{RATE}]))", "MI share"),
        ), unit="percentunit", description="Share of predictions that are MI."),
        PanelSpec("Predictions by model version", (
            _t(f"sum by (model_version) (rate(ppg_mi_predictions_total[{RATE}]))", "{{model_version}}"),
        ), unit="recps", description="During a model switch two versions appear side by side."),
        PanelSpec("Model versions served", (
            _t("count by (version, kind) (ppg_mi_model_info)", "{{version}} ({{kind}})"),
        ), kind="stat", unit="short", description="Classifier replicas per served model version."),
        PanelSpec("Classifier batch processing time p95", (
            _t(_quantile(0.95, "ppg_mi_batch_processing_seconds", "stage")
               .replace("_bucket[", '_bucket{stage="classifier"}['), "p95"),
        ), unit="s", description="Prediction of one micro-batch, consume → commit."),
        PanelSpec("Classifier dead letters", (
            _t(f'sum by (reason) (rate(ppg_mi_records_dead_lettered_total{{stage="classifier"}}[{RATE}]))',
               "{{reason}}"),
        ), unit="recps"),
    ),
)

KAFKA = DashboardSpec(
    uid="ppg-mi-kafka",
    title="ppg-mi / Kafka",
    description="Topics and consumer groups of ppg-mi, from ppg-mi's own lag metric and Strimzi's kafka-exporter.",
    panels=(
        PanelSpec("Committed lag per partition (ppg-mi)", (
            _t(LAG, "{{stage}} {{topic}}/{{partition}}"),
        ), description="From each stage's lag query; 1 per idle partition of ppg.filtered is the "
                       "transaction marker (kedacore/keda#5675)."),
        PanelSpec("Consumer group lag (kafka-exporter)", (
            _t('sum by (consumergroup, topic) (kafka_consumergroup_lag{consumergroup=~"ppg-mi.*"})',
               "{{consumergroup}} {{topic}}"),
        ), description=EXPORTER_NOTE, exporter_only=True),
        PanelSpec("Messages in per topic (kafka-exporter)", (
            _t(f'sum by (topic) (rate(kafka_topic_partition_current_offset{{topic=~"ppg.*"}}[{RATE}]))',
               "{{topic}}"),
        ), unit="recps", description=EXPORTER_NOTE + " Includes transaction markers.", exporter_only=True),
        PanelSpec("Under-replicated partitions (kafka-exporter)", (
            _t('sum by (topic) (kafka_topic_partition_under_replicated_partition{topic=~"ppg.*"})', "{{topic}}"),
        ), description=EXPORTER_NOTE, exporter_only=True),
        PanelSpec("Brokers (kafka-exporter)", (
            _t("max(kafka_brokers)", "brokers"),
        ), kind="stat", description=EXPORTER_NOTE, exporter_only=True),
        PanelSpec("Lag queries (ppg-mi)", (
            _t(f"sum by (stage, outcome) (rate(ppg_mi_consumer_lag_queries_total[{RATE}]))", "{{stage}} {{outcome}}"),
        ), unit="ops", description="Lag queries of the consuming stages; errors mean the broker "
                                   "did not answer them."),
    ),
)

DASHBOARDS: tuple[DashboardSpec, ...] = (PIPELINE, MODEL, KAFKA)


def expressions(include_exporter_only: bool = True) -> Iterator[tuple[DashboardSpec, PanelSpec, Target]]:
    """Every (dashboard, panel, target) of every dashboard."""
    for dash in DASHBOARDS:
        for panel in dash.panels:
            if include_exporter_only or not panel.exporter_only:
                for target in panel.targets:
                    yield dash, panel, target


def build(spec: DashboardSpec) -> dict:
    """The Grafana dashboard model of ``spec`` (JSON-ready)."""
    from grafana_foundation_sdk.builders import common as gc
    from grafana_foundation_sdk.builders import dashboard as gd
    from grafana_foundation_sdk.builders import prometheus, stat, timeseries
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.common import LegendDisplayMode, LegendPlacement
    from grafana_foundation_sdk.models.dashboard import DataSourceRef, DashboardCursorSync

    datasource = DataSourceRef(type_val="prometheus", uid="${datasource}")
    board = (
        gd.Dashboard(spec.title)
        .uid(spec.uid)
        .description(spec.description)
        .tags(["ppg-mi"])
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .with_variable(gd.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
    )
    for panel in spec.panels:
        if panel.kind == "stat":
            builder = stat.Panel().reduce_options(gc.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        else:
            builder = timeseries.Panel().legend(
                gc.VizLegendOptions().show_legend(True).display_mode(LegendDisplayMode.LIST)
                .placement(LegendPlacement.BOTTOM))
        builder = (builder.title(panel.title).datasource(datasource).unit(panel.unit)
                   .span(panel.width).height(panel.height))
        if panel.description:
            builder = builder.description(panel.description)
        for i, target in enumerate(panel.targets):
            builder = builder.with_target(
                prometheus.Dataquery().expr(target.expr).legend_format(target.legend).ref_id(chr(ord("A") + i))
            )
        board = board.with_panel(builder)
    # a stable, sorted rendering keeps the committed files diff-friendly and the freshness test exact
    return json.loads(json.dumps(board.build(), cls=JSONEncoder, sort_keys=True))


def render(spec: DashboardSpec) -> str:
    return json.dumps(build(spec), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_dashboards(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for spec in DASHBOARDS:
        path = out_dir / spec.filename
        path.write_text(render(spec), encoding="utf-8")
        paths.append(path)
    return paths


if __name__ == "__main__":
    from .generate import main

    raise SystemExit(main())
