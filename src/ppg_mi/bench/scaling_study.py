"""``ppg-mi bench scaling``: the chart's lag-driven autoscaling simulated, searched and checked.

Reads the per-replica rates the bench measured (``docs/performance.json``) and the autoscaling
values the chart ships (``helm/ppg-mi``), runs :func:`ppg_mi.bench.scaling.simulate` on an arrival
ramp of patients, searches a small grid of chart values for the cheapest that keep the delay
under a bound, and writes the plots (``docs/img/``), the figures (``docs/scaling.json``) and a
self-contained section of ``docs/performance.md`` between two marker comments.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .report import refresh_targets
from .scaling import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    IN_STAGE_TURNS,
    Autoscaler,
    Cluster,
    Policy,
    ScalingRules,
    Stage,
    Trace,
    patient_ramp,
    simulate,
)

SECTION_BEGIN = "<!-- scaling-simulation:begin (written by `ppg-mi bench scaling`) -->"
SECTION_END = "<!-- scaling-simulation:end -->"

#: Figures used when docs/performance.json does not have them, and where each comes from.
#: The filter stage's rate is in issue #20 (a 20,000-record backlog drained on the bench's broker),
#: not yet in the bench's report; the others are the bench's report of 2026-11-29.
FALLBACKS = {
    "filter_rate": (1452.0, "issue #20: the filter stage drained a 20,000-record backlog at 1,452 records/s"),
    "classifier_rate": (908.0, "docs/performance.md: end to end with one classifier, 908 records/s"),
    "filter_in_stage_s": (0.027, "docs/performance.md: half load, p50 produced → the filter's stamp, 0.027 s"),
    "classifier_in_stage_s": (0.132, "docs/performance.md: half load, p50 the filter's stamp → the classifier's, 0.132 s"),
    "half_load_rate": (454.0, "docs/performance.md: the half-load run's offered rate, 454 records/s"),
    "classifier_half_load_batch": (41.0, "docs/performance.md: the half-load run's mean classifier batch, 41"),
}

#: Where each figure is looked for in docs/performance.json, first match wins.
JSON_PATHS = {
    "filter_rate": (("stages", "filter", "records_per_s"), ("pipeline", "filter_stage", "records_per_s")),
    "classifier_rate": (("stages", "classifier", "records_per_s"), ("pipeline", "one_classifier", "records_per_s")),
    "filter_in_stage_s": (("pipeline", "latency", "latency_segments_s", "produced_to_filtered", "p50"),),
    "classifier_in_stage_s": (("pipeline", "latency", "latency_segments_s", "filtered_to_predicted", "p50"),),
    "half_load_rate": (("pipeline", "latency", "rate"),),
    "classifier_half_load_batch": (("pipeline", "latency", "classifier_mean_batch"),),
}

#: lagThresholds searched: around the lag each stage shows while it keeps up at the peak
FILTER_THRESHOLDS = (10, 25, 50, 100, 200)
CLASSIFIER_THRESHOLDS = (25, 50, 100, 200, 400)

#: Seconds from a pod's creation until it consumes, measured on the project's machine as CPU
#: time (the machine is shared, so its wall times were 2-5x longer): the classifier's imports, model
#: load and numba compilation of MiniRocket with an empty cache (the chart's numba cache is an
#: emptyDir, so every new pod compiles) take 16.4 CPU-s, the filter's imports and first filtering
#: 1.3 CPU-s; a pod with a core of its own takes about that, + 5 s, the readiness probe's period.
#: Image pulls are not counted (a node that ran the pod before has the image).
STARTUP_S = {"filter": 7, "classifier": 22}
STARTUP_SOURCE = ("measured here as CPU time: classifier 16.4 s to import, load and compile the model with an empty "
                  "numba cache (the chart's emptyDir; 2.9 s with a warm cache), filter 1.3 s; each + 5 s "
                  "readiness-probe period; image pulls not counted")
#: Seconds a moved partition is idle: up to one heartbeat (3 s, half on average) before the
#: members hear of the rebalance, then cooperative-sticky's two join rounds (~1 s each, the
#: bench's consumer group join took 0.94 s).
REBALANCE_S = 3


@dataclass(frozen=True)
class Figure:
    """A number and where it came from."""

    value: float
    source: str


def read_measured(path: Path) -> dict[str, Figure]:
    """Per-replica rates and in-stage times from the bench's JSON report, else the documented fallbacks."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    figures = {}
    for name, (fallback, why) in FALLBACKS.items():
        figure = Figure(fallback, why)
        for keys in JSON_PATHS[name]:
            value = _dig(data, keys)
            if isinstance(value, (int, float)) and value > 0:
                figure = Figure(float(value), f"{path.name}: {'.'.join(keys)}")
                break
        figures[name] = figure
    return figures


def _dig(data: Any, keys: Sequence[str]) -> Any:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


@dataclass(frozen=True)
class ChartScaling:
    """The autoscaling values the chart ships (values.yaml and templates/_scaling.tpl)."""

    partitions: int
    polling_interval_s: int
    cooldown_s: int
    lag_threshold: dict[str, int]
    activation_lag_threshold: dict[str, int]
    min_replicas: dict[str, int]
    max_replicas: dict[str, int]
    allow_idle_consumers: bool
    scale_up: ScalingRules
    scale_down: ScalingRules


def read_chart(chart: Path) -> ChartScaling:
    """Read the shipped defaults: values.yaml, and the HPA behaviour written in the template.

    Raises
    ------
    ValueError
        When the template's ``behavior`` or trigger cannot be read (the chart changed shape).
    """
    import yaml

    values = yaml.safe_load((chart / "values.yaml").read_text())
    template = (chart / "templates" / "_scaling.tpl").read_text()
    partitions = int(values["topics"]["partitions"])
    stages = ("filter", "classifier")
    auto = {stage: values[stage]["autoscaling"] for stage in stages}
    activation = {stage: (partitions + 1 if auto[stage]["activationLagThreshold"] is None
                          else int(auto[stage]["activationLagThreshold"])) for stage in stages}
    idle = re.search(r'allowIdleConsumers:\s*"?(true|false)"?', template)
    if idle is None:
        raise ValueError(f"{chart}/templates/_scaling.tpl: no allowIdleConsumers in the kafka trigger")
    return ChartScaling(
        partitions=partitions,
        polling_interval_s=int(values["keda"]["pollingInterval"]),
        cooldown_s=int(values["keda"]["cooldownPeriod"]),
        lag_threshold={stage: int(auto[stage]["lagThreshold"]) for stage in stages},
        activation_lag_threshold=activation,
        min_replicas={stage: int(auto[stage]["minReplicas"]) for stage in stages},
        max_replicas={stage: int(auto[stage]["maxReplicas"]) for stage in stages},
        allow_idle_consumers=idle.group(1) == "true",
        scale_up=_behavior(template, "scaleUp") or DEFAULT_SCALE_UP,
        scale_down=_behavior(template, "scaleDown") or DEFAULT_SCALE_DOWN,
    )


def _behavior(template: str, direction: str) -> ScalingRules | None:
    """One ``behavior`` direction of the template's HPA config, or None when the chart leaves Kubernetes' default."""
    block = re.search(rf"^(\s*){direction}:\n((?:\1\s+.*\n)+)", template, re.MULTILINE)
    if block is None:
        return None
    text = block.group(2)
    window = re.search(r"stabilizationWindowSeconds:\s*(\d+)", text)
    select = re.search(r"selectPolicy:\s*(\w+)", text)
    policies = tuple(Policy(kind, int(value), int(period)) for kind, value, period in re.findall(
        r"-\s*type:\s*(\w+)\s*\n\s*value:\s*(\d+)\s*\n\s*periodSeconds:\s*(\d+)", text))
    default = DEFAULT_SCALE_UP if direction == "scaleUp" else DEFAULT_SCALE_DOWN
    return ScalingRules(int(window.group(1)) if window else default.stabilization_s,
                        policies or default.policies, select.group(1) if select else "Max")


# --- configurations ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    """The chart values a run uses (both stages share partitions, polling and behaviour)."""

    partitions: int
    filter_lag_threshold: int
    classifier_lag_threshold: int
    scale_down_window_s: int
    polling_interval_s: int

    def label(self) -> str:
        return (f"partitions {self.partitions}, lagThreshold filter {self.filter_lag_threshold} / classifier "
                f"{self.classifier_lag_threshold}, scale-down window {self.scale_down_window_s} s, "
                f"pollingInterval {self.polling_interval_s} s")


@dataclass(frozen=True)
class Inputs:
    """Everything a run needs besides the chart values searched."""

    figures: dict[str, Figure]
    chart: ChartScaling
    startup_s: dict[str, int]
    rebalance_s: int
    arrivals: np.ndarray


def chart_config(chart: ChartScaling) -> Config:
    """The configuration the chart ships."""
    return Config(chart.partitions, chart.lag_threshold["filter"], chart.lag_threshold["classifier"],
                  chart.scale_down.stabilization_s, chart.polling_interval_s)


def turn_overhead(figures: dict[str, Figure], stage: str) -> float:
    """The overhead c of one turn of ``stage``'s loop, from its time in the stage at half load.

    At the half-load rate λ₀ a record spent 1.5 T in the stage with T = c / (1 − λ₀/μ), so
    c = time in stage × (1 − λ₀/μ) / 1.5.
    """
    utilisation = figures["half_load_rate"].value / figures[f"{stage}_rate"].value
    return figures[f"{stage}_in_stage_s"].value * max(0.0, 1.0 - utilisation) / IN_STAGE_TURNS


def stages_for(config: Config, inputs: Inputs) -> tuple[Stage, Stage, Cluster]:
    """The two stages and the cluster of ``config``; ``maxReplicas`` = partitions, the rest as shipped."""
    chart = inputs.chart
    stages = []
    for name, threshold, transactional in (("filter", config.filter_lag_threshold, False),
                                           ("classifier", config.classifier_lag_threshold, True)):
        activation = max(chart.activation_lag_threshold[name], config.partitions + 1)
        scaler = Autoscaler(
            lag_threshold=threshold, activation_lag_threshold=activation,
            min_replicas=chart.min_replicas[name], max_replicas=config.partitions,
            polling_interval_s=config.polling_interval_s, cooldown_s=chart.cooldown_s,
            allow_idle_consumers=chart.allow_idle_consumers, scale_up=chart.scale_up,
            scale_down=ScalingRules(config.scale_down_window_s, chart.scale_down.policies, chart.scale_down.select))
        stages.append(Stage(name, inputs.figures[f"{name}_rate"].value, inputs.startup_s[name],
                            turn_overhead(inputs.figures, name), transactional, scaler,
                            initial_replicas=max(1, chart.min_replicas[name])))
    return stages[0], stages[1], Cluster(config.partitions, rebalance_s=inputs.rebalance_s)


@dataclass(frozen=True)
class Outcome:
    """One configuration's run, summarised."""

    config: Config
    delay_q_s: float
    delay_max_s: float
    replica_seconds: dict[str, float]
    scale_events: dict[str, int]
    left_over: float

    @property
    def cost(self) -> float:
        return sum(self.replica_seconds.values())

    def meets(self, bound_s: float) -> bool:
        return self.left_over < 1 and self.delay_q_s <= bound_s


def run(config: Config, inputs: Inputs, quantile: float) -> tuple[Outcome, Trace]:
    """Simulate one configuration."""
    filter_stage, classifier_stage, cluster = stages_for(config, inputs)
    trace = simulate(filter_stage, classifier_stage, cluster, inputs.arrivals)
    events = {name: int(np.count_nonzero(np.diff(r))) for name, r in trace.replicas.items()}
    outcome = Outcome(config, trace.delay_quantile(quantile), float(np.nanmax(trace.delay_max)),
                      {name: trace.replica_seconds(name) for name in trace.replicas}, events, trace.left_over)
    return outcome, trace


def grid(chart: ChartScaling, quick: bool = False) -> list[Config]:
    """The chart values searched: partitions (= maxReplicas), both lagThresholds, the scale-down window.

    ``pollingInterval`` stays the chart's: with ``minReplicaCount`` ≥ 1 and KEDA's metrics read fresh
    by the HPA it changes nothing, which :func:`polling_check` shows.
    """
    partitions = (chart.partitions, 2 * chart.partitions)
    filter_thresholds = (25, 200) if quick else FILTER_THRESHOLDS
    classifier_thresholds = (50, 200) if quick else CLASSIFIER_THRESHOLDS
    windows = (chart.scale_down.stabilization_s,) if quick else sorted({60, chart.scale_down.stabilization_s, 300})
    values = set(itertools.product(partitions, filter_thresholds + (chart.lag_threshold["filter"],),
                                   classifier_thresholds + (chart.lag_threshold["classifier"],), windows))
    return [Config(p, f, c, w, chart.polling_interval_s) for p, f, c, w in sorted(values)]


def search(configs: Iterable[Config], inputs: Inputs, quantile: float) -> list[Outcome]:
    """Run every configuration; cheapest first."""
    outcomes = [run(config, inputs, quantile)[0] for config in configs]
    return sorted(outcomes, key=lambda o: (o.cost, o.delay_q_s))


def polling_check(inputs: Inputs, quantile: float, intervals: Sequence[int] = (5, 15, 30, 60)) -> list[Outcome]:
    """The chart's configuration with other ``pollingInterval`` values."""
    base = chart_config(inputs.chart)
    return [run(Config(base.partitions, base.filter_lag_threshold, base.classifier_lag_threshold,
                       base.scale_down_window_s, interval), inputs, quantile)[0] for interval in intervals]


# --- output ----------------------------------------------------------------------------------------
def plot(trace: Trace, title: str, bound_s: float, path: Path) -> None:
    """Replicas, lag and end-to-end delay over time, one panel each, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seconds = np.arange(len(trace.arrivals))
    fig, axes = plt.subplots(4, 1, figsize=(9, 9.5), sharex=True, constrained_layout=True)
    axes[0].plot(seconds, trace.arrivals, color="black")
    axes[0].set_ylabel("records/s\nproduced")
    for name, colour in (("filter", "tab:blue"), ("classifier", "tab:orange")):
        axes[1].step(seconds, trace.replicas[name], where="post", color=colour, label=f"{name} pods")
        axes[1].step(seconds, trace.ready[name], where="post", color=colour, linestyle=":",
                     label=f"{name} consuming")
        axes[2].plot(seconds, np.maximum(trace.lag[name], 1), color=colour, label=f"{name} lag")
    axes[1].set_ylabel("replicas")
    axes[1].legend(loc="upper left", fontsize=8, ncol=2)
    axes[2].set_yscale("log")
    axes[2].set_ylabel("lag (offsets,\nlog; 0 drawn as 1)")
    axes[2].legend(loc="upper left", fontsize=8)
    axes[3].plot(seconds, trace.delay_max, color="tab:red", label="max of the second")
    axes[3].plot(seconds, trace.delay_mean, color="tab:green", label="mean of the second")
    axes[3].axhline(bound_s, color="grey", linestyle="--", label=f"bound {bound_s:g} s")
    axes[3].set_ylabel("produced → predicted (s)")
    axes[3].set_xlabel("seconds")
    axes[3].legend(loc="upper left", fontsize=8)
    fig.suptitle(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    # no version or date in the file: the same inputs write the same bytes
    fig.savefig(path, dpi=80, metadata={"Software": None})
    plt.close(fig)


def _row(outcome: Outcome, bound_s: float, note: str = "") -> str:
    c = outcome.config
    verdict = "met" if outcome.meets(bound_s) else "NOT MET"
    return (f"| {c.partitions} | {c.filter_lag_threshold} | {c.classifier_lag_threshold} | {c.scale_down_window_s} | "
            f"{c.polling_interval_s} | {outcome.delay_q_s:.1f} | {outcome.delay_max_s:.1f} | "
            f"{outcome.replica_seconds['filter']:,.0f} + {outcome.replica_seconds['classifier']:,.0f} = "
            f"**{outcome.cost:,.0f}** | {outcome.scale_events['filter']} / {outcome.scale_events['classifier']} | "
            f"{verdict}{note} |")


@dataclass(frozen=True)
class Study:
    """What the command found."""

    bound_s: float
    quantile: float
    inputs: Inputs
    default: Outcome
    best: Outcome | None
    ranked: list[Outcome]
    polling: list[Outcome]
    scenario: dict[str, float]


def verdict(study: Study) -> str:
    """One paragraph: do the chart's defaults keep the bound, and at what cost against the best found."""
    d, q = study.default, _q(study.quantile)
    head = (f"The chart's defaults give a {q} delay of {d.delay_q_s:.1f} s (bound {study.bound_s:g} s): "
            f"**{'met' if d.meets(study.bound_s) else 'NOT MET'}**")
    if study.best is None:
        return head + "; no configuration of the grid meets the bound."
    b = study.best
    if b.config == d.config:
        return head + f", at {d.cost:,.0f} replica-seconds, and no configuration of the grid meets it for less."
    change = _changes(d.config, b.config)
    if d.meets(study.bound_s):
        return (head + f", at {d.cost:,.0f} replica-seconds; the cheapest configuration within the bound costs "
                f"{b.cost:,.0f} ({(d.cost - b.cost) / d.cost:.1%} less than the defaults) with {b.delay_q_s:.1f} s: "
                f"recommended {change}.")
    return (head + f". The cheapest configuration within it gives {b.delay_q_s:.1f} s for {b.cost:,.0f} "
            f"replica-seconds ({(b.cost - d.cost) / d.cost:+.1%} on the defaults' {d.cost:,.0f}): recommended "
            f"{change}.")


def _changes(old: Config, new: Config) -> str:
    names = {"partitions": "topics.partitions (and maxReplicas)", "filter_lag_threshold": "filter.autoscaling.lagThreshold",
             "classifier_lag_threshold": "classifier.autoscaling.lagThreshold",
             "scale_down_window_s": "scaleDown.stabilizationWindowSeconds", "polling_interval_s": "keda.pollingInterval"}
    parts = [f"`{names[key]}` {getattr(old, key)} → {getattr(new, key)}" for key in names
             if getattr(old, key) != getattr(new, key)]
    return ", ".join(parts)


def _q(quantile: float) -> str:
    return f"p{quantile * 100:g}"


def render_section(study: Study, images: dict[str, str], default_trace: Trace) -> str:
    """The Markdown section of docs/performance.md, between its marker comments."""
    s, inputs, q = study.scenario, study.inputs, _q(study.quantile)
    chart = inputs.chart
    lines = [
        SECTION_BEGIN,
        "## Scaling on lag, simulated (KEDA's kafka scaler + the HPA)",
        "",
        f"`ppg-mi bench scaling` simulates, second by second and without Kafka, KEDA's kafka scaler and the HPA "
        f"driving the filter and classifier replicas of the chart (`src/ppg_mi/bench/scaling.py` says what is "
        f"modelled and from which code). Arrivals: {s['patients']:,.0f} patients sending one recording every "
        f"{s['window_s']:g} s, joining over {s['ramp_up_s']:.0f} s, all connected for {s['hold_s']:.0f} s "
        f"(**{s['peak_rate']:,.0f} records/s**), leaving over {s['ramp_down_s']:.0f} s. Bound: the {q} of "
        f"produced → predicted ≤ **{study.bound_s:g} s** (scaling may cost a few seconds, not a recording's "
        "length; the steady-state target is 0.25 s; other bounds below). "
        "Cost: replica-seconds of both stages, pods starting included.",
        "",
        "| input | value | from |",
        "| --- | ---: | --- |",
    ]
    for name, label in (("filter_rate", "filter, records/s per replica"),
                        ("classifier_rate", "classifier, records/s per replica"),
                        ("filter_in_stage_s", "filter, seconds in the stage (no queue)"),
                        ("classifier_in_stage_s", "classifier, seconds in the stage (no queue)")):
        figure = inputs.figures[name]
        lines.append(f"| {label} | {_number(figure.value)} | {figure.source} |")
    lines.append(f"| turn overhead c, filter / classifier (s) | {turn_overhead(inputs.figures, 'filter'):.4f} / "
                 f"{turn_overhead(inputs.figures, 'classifier'):.4f} | time in stage × (1 − λ₀/μ) / 1.5 at the "
                 f"half-load rate λ₀ = {_number(inputs.figures['half_load_rate'].value)} records/s; check: the "
                 f"classifier's mean batch there gives c = batch / λ₀ × (1 − λ₀/μ) = {_batch_overhead(inputs.figures):.4f} |")
    lines += [
        f"| pod start-up, filter / classifier (s) | {inputs.startup_s['filter']} / {inputs.startup_s['classifier']} "
        f"| {STARTUP_SOURCE} |",
        f"| partition pause on a rebalance (s) | {inputs.rebalance_s} | heartbeat 3 s (half on average) + two "
        "cooperative join rounds (~0.94 s each in the bench) |",
        f"| chart | partitions {chart.partitions}, lagThreshold {chart.lag_threshold['filter']} / "
        f"{chart.lag_threshold['classifier']}, activation {chart.activation_lag_threshold['filter']} / "
        f"{chart.activation_lag_threshold['classifier']}, min {chart.min_replicas['classifier']}, max "
        f"{chart.max_replicas['classifier']}, pollingInterval {chart.polling_interval_s} s, scale-down window "
        f"{chart.scale_down.stabilization_s} s, "
        + ", ".join(f"down by {p.value} {'pod' if p.kind == 'Pods' else '%'} per {p.period_s} s"
                    for p in chart.scale_down.policies)
        + " | `helm/ppg-mi/values.yaml`, `templates/_scaling.tpl` |",
        "",
        f"**Verdict.** {verdict(study)}",
        "",
        f"| partitions = maxReplicas | lagThreshold filter | lagThreshold classifier | scale-down window (s) | "
        f"pollingInterval (s) | {q} delay (s) | max delay (s) | replica-seconds filter + classifier | "
        "scalings filter / classifier | bound |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    feasible = [o for o in study.ranked if o.meets(study.bound_s)]
    for outcome in feasible[:6]:
        lines.append(_row(outcome, study.bound_s, " (cheapest)" if outcome is study.best else ""))
    lines.append(_row(study.default, study.bound_s, " (**chart defaults**)"))
    lines += [
        "",
        f"The {len(feasible)} of {len(study.ranked)} configurations searched that meet the bound, cheapest first "
        f"(the first six), and the chart's defaults. `pollingInterval` only decides when KEDA wakes a stage "
        f"from 0 replicas: with `minReplicas` ≥ 1 the HPA asks the scaler for the lag at each of its 15 s syncs, "
        "so the chart's configuration gives the same figures with any interval: "
        + ", ".join(f"{o.config.polling_interval_s} s → {o.delay_q_s:.1f} s, {o.cost:,.0f} replica-s"
                    for o in study.polling) + ".",
        "",
    ]
    lines += _bound_sensitivity(study)
    for key, caption in (("default", "The chart's defaults"), ("best", "The cheapest configuration within the bound")):
        if key in images:
            lines += [f"![{caption}: replicas, lag and delay over time]({images[key]})", "", f"*{caption}.*", ""]
    lines += _observations(study, default_trace)
    lines += [
        "Not modelled: image pulls and nodes to schedule the pods on (a cluster autoscaler adds minutes to a "
        "start-up), the broker's own limits, a consumer's prefetch, and randomness (arrivals are a fluid, spread "
        "evenly over the partitions; delays are counted in whole seconds of queueing).",
        "",
        "Rerun: `ppg-mi bench scaling` (about a minute; `--help` lists the scenario's flags and the inputs').",
        SECTION_END,
    ]
    return "\n".join(lines) + "\n"


#: other bounds the section compares (no extra runs: the same grid, filtered)
OTHER_BOUNDS_S = (2.0, 5.0, 10.0, 20.0)


def _bound_sensitivity(study: Study) -> list[str]:
    """The cheapest configuration for a few other bounds, and whether the defaults keep each."""
    lines = [f"The same grid held to other bounds ({_q(study.quantile)} delay):", "",
             "| bound (s) | configurations within it | cheapest | its replica-seconds | chart defaults |",
             "| ---: | ---: | --- | ---: | --- |"]
    for bound in sorted(set(OTHER_BOUNDS_S) | {study.bound_s}):
        feasible = [o for o in study.ranked if o.meets(bound)]
        cheapest = feasible[0] if feasible else None
        what = (f"partitions {cheapest.config.partitions}, lagThreshold {cheapest.config.filter_lag_threshold} / "
                f"{cheapest.config.classifier_lag_threshold}, window {cheapest.config.scale_down_window_s} s"
                if cheapest else "none")
        cost = f"{cheapest.cost:,.0f}" if cheapest else "—"
        default = "met" if study.default.meets(bound) else "not met"
        lines.append(f"| {bound:g} | {len(feasible)} of {len(study.ranked)} | {what} | {cost} | {default} |")
    return lines + [""]


def _observations(study: Study, default_trace: Trace) -> list[str]:
    """What a reader should take from the figures, with the chart defaults' numbers."""
    inputs, chart = study.inputs, study.inputs.chart
    peak = study.scenario["peak_rate"]
    hold = default_trace.arrivals >= peak - 1e-9
    lines = ["What the model shows:", ""]
    if hold.any():
        filter_lag = float(np.median(default_trace.lag["filter"][hold]))
        classifier_lag = float(np.median(default_trace.lag["classifier"][hold]))
        needed = {name: peak / inputs.figures[f"{name}_rate"].value for name in ("filter", "classifier")}
        lines.append(
            f"- A stage that keeps up still shows a lag: the batch in hand, whose offsets commit with its "
            f"transaction, and one commit marker per partition of `ppg.filtered`. At {peak:,.0f} records/s the "
            f"median lag is {filter_lag:,.0f} for the filter and {classifier_lag:,.0f} for the classifier, so "
            f"⌈lag / lagThreshold⌉ asks for {_ceil(filter_lag / chart.lag_threshold['filter'])} filter and "
            f"{_ceil(classifier_lag / chart.lag_threshold['classifier'])} classifier replicas where the rate needs "
            f"{needed['filter']:.1f} and {needed['classifier']:.1f}: a stage whose lagThreshold is above its "
            "lag in flight is scaled down until its backlog grows, then up again, and every change pauses the "
            f"partitions that move ({study.default.scale_events['filter']} filter and "
            f"{study.default.scale_events['classifier']} classifier scalings with the defaults).")
    lines += [
        f"- Replicas that do not divide the partitions add cost, not capacity: with {chart.partitions} partitions "
        "a consumer owning one more partition than the others sets the pace (6 partitions: 4 or 5 replicas "
        "consume no faster than 3).",
        f"- A new classifier pod consumes {inputs.startup_s['classifier']} s after it is created (the model's "
        "numba compilation with an empty cache): the worst delays are in the ramp, before the replicas asked for "
        "are ready.",
        "",
    ]
    return lines


def _batch_overhead(figures: dict[str, Figure]) -> float:
    """The classifier's turn overhead from its mean batch at half load: T = batch / λ₀, c = T (1 − λ₀/μ)."""
    rate = figures["half_load_rate"].value
    return figures["classifier_half_load_batch"].value / rate * (1 - rate / figures["classifier_rate"].value)


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _ceil(value: float) -> int:
    return int(np.ceil(value - 1e-9))


def write_section(markdown: Path, section: str) -> None:
    """Replace the section between the markers in ``markdown`` (or append it)."""
    text = markdown.read_text() if markdown.exists() else ""
    if SECTION_BEGIN in text and SECTION_END in text:
        before = text[:text.index(SECTION_BEGIN)]
        after = text[text.index(SECTION_END) + len(SECTION_END):].lstrip("\n")
        text = before + section + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section
    markdown.write_text(text)


def study(inputs: Inputs, bound_s: float, quantile: float, scenario: dict[str, float], quick: bool = False) -> tuple[Study, Trace, Trace | None]:
    """Run the chart's defaults, the grid and the polling check."""
    default, default_trace = run(chart_config(inputs.chart), inputs, quantile)
    ranked = search(grid(inputs.chart, quick), inputs, quantile)
    feasible = [o for o in ranked if o.meets(bound_s)]
    best = feasible[0] if feasible else None
    if best is not None and best.cost > default.cost and default.meets(bound_s):
        best = default
    best_trace = run(best.config, inputs, quantile)[1] if best is not None else None
    return (Study(bound_s, quantile, inputs, default, best, ranked, polling_check(inputs, quantile), scenario),
            default_trace, best_trace)


def to_json(result: Study) -> dict[str, Any]:
    """The figures as JSON (docs/scaling.json)."""
    def outcome(o: Outcome) -> dict[str, Any]:
        return {"config": asdict(o.config), "delay_quantile_s": o.delay_q_s, "delay_max_s": o.delay_max_s,
                "replica_seconds": o.replica_seconds, "cost": o.cost, "scale_events": o.scale_events,
                "left_over": o.left_over, "meets_bound": o.meets(result.bound_s)}

    return {
        "bound_s": result.bound_s, "quantile": result.quantile, "scenario": result.scenario,
        "inputs": {name: asdict(fig) for name, fig in result.inputs.figures.items()},
        "startup_s": result.inputs.startup_s, "rebalance_s": result.inputs.rebalance_s,
        "chart_defaults": outcome(result.default),
        "recommended": outcome(result.best) if result.best else None,
        "verdict": verdict(result),
        "polling_check": [outcome(o) for o in result.polling],
        "grid": [outcome(o) for o in result.ranked],
    }


# --- the command -------------------------------------------------------------------------------------
def main(args: Any) -> int:
    """``ppg-mi bench scaling``: run the study with the command's arguments and write its outputs."""
    figures = read_measured(Path(args.performance_json))
    for name, flag in (("filter_rate", args.filter_rate), ("classifier_rate", args.classifier_rate)):
        if flag is not None:
            figures[name] = Figure(float(flag), "given on the command line")
    chart = read_chart(Path(args.chart))
    arrivals = patient_ramp(args.patients, args.window, args.ramp_up, args.hold, args.ramp_down)
    scenario = {"patients": float(args.patients), "window_s": float(args.window), "ramp_up_s": float(args.ramp_up),
                "hold_s": float(args.hold), "ramp_down_s": float(args.ramp_down),
                "peak_rate": args.patients / args.window, "seconds": float(len(arrivals))}
    startup = {"filter": args.filter_startup, "classifier": args.classifier_startup}
    inputs = Inputs(figures, chart, startup, args.rebalance, arrivals)
    for name, figure in figures.items():
        print(f"{name}: {figure.value:g} ({figure.source})")
    result, default_trace, best_trace = study(inputs, args.delay_bound, args.quantile, scenario, quick=args.quick)
    out_dir = Path(args.out_dir)
    markdown = Path(args.out_md)
    images = {}
    for key, trace, outcome in (("default", default_trace, result.default), ("best", best_trace, result.best)):
        if trace is None or outcome is None or (key == "best" and outcome.config == result.default.config):
            continue
        path = out_dir / f"scaling-{'chart-defaults' if key == 'default' else 'recommended'}.png"
        plot(trace, outcome.config.label(), args.delay_bound, path)
        images[key] = _relative(path, markdown.parent)
        print(f"wrote {path}")
    Path(args.out_json).write_text(json.dumps(to_json(result), indent=2) + "\n")
    print(f"wrote {args.out_json}")
    write_section(markdown, render_section(result, images, default_trace))
    print(f"wrote the scaling section of {markdown}")
    if refresh_targets(args.performance_json, markdown, to_json(result)):
        print(f"refreshed goal 5's verdict in {args.performance_json} and {markdown}")
    print(verdict(result).replace("**", ""))
    return 0


def _relative(path: Path, start: Path) -> str:
    try:
        return str(path.resolve().relative_to(start.resolve()))
    except ValueError:
        return str(path.resolve())
