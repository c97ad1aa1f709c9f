"""ppg-mi's Prometheus alerting rules, as data: one source for the rule file, its docs and its tests.

``render_rules()`` gives the Prometheus rule-file document (``groups:``) written to
``helm/ppg-mi/files/alerts/ppg-mi-rules.yaml`` by ``ppg-mi observability generate``; the
chart wraps it into a PrometheusRule.  Each :class:`Alert` also names its *signals*: the
sub-expressions that must return data on a running pipeline for the rule to be able to
fire at all (the real-Prometheus test evaluates them; an expression over a misspelled
metric would otherwise never fire and never complain).

Rule annotations use Prometheus templates (``{{ $labels.stage }}``): whatever embeds this
file must not run it through another template engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Every replica of a stage reports the lag of all partitions of its group: de-duplicate first.
LAG_BY_STAGE = "sum by (stage) (max by (stage, topic, partition) (ppg_mi_consumer_lag_records))"
LAG_GROWTH_BY_STAGE = ("sum by (stage) (max by (stage, topic, partition) "
                       "(delta(ppg_mi_consumer_lag_records[5m])))")
#: Lag below this is noise: an idle partition of a transactionally written topic shows 1 (the commit marker).
LAG_FLOOR_RECORDS = 100
#: Produced → predicted budget of the 99th percentile.
LATENCY_BUDGET_S = 10
E2E_P99 = "histogram_quantile(0.99, sum by (le) (rate(ppg_mi_end_to_end_latency_seconds_bucket[5m])))"
_DLQ = 'ppg_mi_records_dead_lettered_total{reason!="none"}'
# A reason's counter is born at its first dead letter with the value 1, and increase() cannot see
# a series' first sample: for series younger than the window, take their value instead.
DLQ_INCREASE = (f"sum by (stage, reason) ({_DLQ} unless {_DLQ} offset 5m) "
                f"or sum by (stage, reason) (increase({_DLQ}[5m]))")
INPUT_RATE = 'sum(rate(ppg_mi_records_consumed_total{stage="filter"}[5m]))'
PREDICTION_RATE = "sum(rate(ppg_mi_predictions_total[5m]))"
ABORTED_INCREASE = 'sum by (stage) (increase(ppg_mi_transactions_total{outcome="aborted"}[10m]))'
BLOCKED_BY_STAGE = "max by (stage) (ppg_mi_stage_blocked)"
LOST_TO_RETENTION_INCREASE = "sum by (stage) (increase(ppg_mi_records_lost_to_retention_total[10m]))"
CURRENT_REJECTED = "max by (instance) (ppg_mi_model_current_rejected)"


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    summary: str
    description: str
    signals: tuple[str, ...]
    for_: str = "0m"
    severity: str = "warning"
    labels: dict[str, str] = field(default_factory=dict)

    def rule(self) -> dict[str, Any]:
        rule: dict[str, Any] = {"alert": self.name, "expr": self.expr}
        if self.for_ != "0m":
            rule["for"] = self.for_
        rule["labels"] = {"severity": self.severity, "service": "ppg-mi", **self.labels}
        rule["annotations"] = {"summary": self.summary, "description": self.description}
        return rule


ALERTS: tuple[Alert, ...] = (
    Alert(
        name="PpgMiConsumerLagGrowing",
        expr=f"({LAG_GROWTH_BY_STAGE} > 0) and ({LAG_BY_STAGE} > {LAG_FLOOR_RECORDS})",
        for_="10m",
        summary="{{ $labels.stage }} is falling behind its input",
        description=(f"The {{{{ $labels.stage }}}} group's committed lag has grown for 10 minutes and is above "
                     f"{LAG_FLOOR_RECORDS} records. Scale the stage out (up to the partition count) or look "
                     "for a slow or stuck replica. An idle lag of 1 per partition is the transaction marker, "
                     "not a backlog."),
        signals=(LAG_GROWTH_BY_STAGE, LAG_BY_STAGE),
    ),
    Alert(
        name="PpgMiDeadLetters",
        expr=f"({DLQ_INCREASE}) > 0",
        for_="1m",
        summary="{{ $labels.stage }} dead-letters records ({{ $labels.reason }})",
        description=("{{ $value | humanize }} records went to the dead-letter topic from {{ $labels.stage }} "
                     "with reason {{ $labels.reason }} in the last 5 minutes. Read them from the DLQ topic: "
                     "the headers name the stage, the reason and the original offset."),
        signals=(DLQ_INCREASE,),
    ),
    Alert(
        name="PpgMiNoPredictions",
        expr=f"({INPUT_RATE} > 0) and on() (({PREDICTION_RATE} or vector(0)) == 0)",
        for_="5m",
        severity="critical",
        summary="Input arrives but nothing is predicted",
        description=("The filter consumed {{ $value | humanize }} records/s over the last 5 minutes while the "
                     "classifier predicted none for 5 minutes: the classifier is down, stuck or has no model."),
        signals=(INPUT_RATE, PREDICTION_RATE),
    ),
    Alert(
        name="PpgMiLatencyP99OverBudget",
        expr=f"{E2E_P99} > {LATENCY_BUDGET_S}",
        for_="10m",
        summary=f"p99 produced → predicted latency is over {LATENCY_BUDGET_S} s",
        description=(f"The 99th percentile of end-to-end latency has been {{{{ $value | humanizeDuration }}}} "
                     f"(budget {LATENCY_BUDGET_S} s) for 10 minutes. Check the lag and batch processing time "
                     "of each stage."),
        signals=(E2E_P99,),
    ),
    Alert(
        name="PpgMiServiceNotReady",
        expr="ppg_mi_ready == 0",
        for_="5m",
        summary="{{ $labels.role }} {{ $labels.instance }} has not been ready for 5 minutes",
        description=("/readyz of {{ $labels.role }} fails (broker unreachable, model not loaded, ...). "
                     "ppg_mi_readiness_check names the failing check."),
        signals=("ppg_mi_ready",),
    ),
    Alert(
        name="PpgMiTransactionsAborting",
        expr=f"{ABORTED_INCREASE} > 3",
        for_="5m",
        summary="{{ $labels.stage }} aborts transactions",
        description=("{{ $value | humanize }} transactions of {{ $labels.stage }} aborted in 10 minutes: every "
                     "abort redoes a batch. Look for broker restarts, fencing or timeouts in the logs."),
        signals=(ABORTED_INCREASE,),
    ),
    Alert(
        name="PpgMiStageBlocked",
        expr=f"{BLOCKED_BY_STAGE} > 0",
        for_="1m",
        severity="critical",
        summary="{{ $labels.stage }} holds a record it can neither output nor dead-letter",
        description=("A record of {{ $labels.stage }} can be written neither to its output topic nor to the "
                     "dead-letter topic (even cut to its reduced form): the DLQ topic is missing, not "
                     "authorised, or refuses its size. The record's partition does not move on (nothing is "
                     "skipped); the process is not ready and fails /healthz after the liveness timeout, so "
                     "Kubernetes restarts it. The log line `stage blocked` names the record and the error."),
        signals=(BLOCKED_BY_STAGE,),
    ),
    Alert(
        name="PpgMiRecordsLostToRetention",
        expr=f"{LOST_TO_RETENTION_INCREASE} > 0",
        severity="critical",
        summary="{{ $labels.stage }} lost input records to the topic's retention",
        description=("A rewind of {{ $labels.stage }} found {{ $value | humanize }} input offsets (transaction "
                     "markers included) already deleted in the last 10 minutes: retention or delete-records "
                     "moved the log start past records that were never committed, so they were never "
                     "processed. Raise the input topic's retention above the longest outage you must "
                     "survive; the log line `records deleted before they were processed` names the partition and offsets."),
        signals=(LOST_TO_RETENTION_INCREASE,),
    ),
    Alert(
        name="PpgMiModelCurrentRejected",
        expr=f"{CURRENT_REJECTED} > 0",
        for_="5m",
        summary="A classifier refuses the model version `current` names",
        description=("The classifier {{ $labels.instance }} could not load or warm up the version the model "
                     "store's `current` points to (digest mismatch, unreadable card, failing warm-up) and "
                     "keeps serving the version it had, the previous one, or none (then it is not ready). "
                     "The log line `model version rejected` gives the reason; point `current` at a good version."),
        signals=(CURRENT_REJECTED,),
    ),
)


def render_rules() -> dict[str, Any]:
    """The Prometheus rule-file document of every alert."""
    return {"groups": [{"name": "ppg-mi", "rules": [a.rule() for a in ALERTS]}]}


HEADER = ("# Generated by `ppg-mi observability generate` from src/ppg_mi/observability/alerts.py: edit that,\n"
          "# not this file. Prometheus rule-file format; the chart wraps it into a PrometheusRule.\n")


def rules_yaml() -> str:
    import yaml

    return HEADER + yaml.safe_dump(render_rules(), sort_keys=False, width=120, allow_unicode=True)
