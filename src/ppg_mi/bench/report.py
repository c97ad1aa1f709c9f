"""The benchmark's results as JSON and Markdown: targets, limits, where the time goes.

Everything here is pure: it takes the results dictionary the runner assembled and derives
ratios and verdicts from it, so the arithmetic is unit-tested on tiny inputs without a broker.
The Markdown page keeps the block another command writes into it (``ppg-mi bench scaling``,
between :data:`SCALING_BEGIN` and :data:`SCALING_END`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .stats import ratio

#: the part of docs/performance.md that `ppg-mi bench scaling` owns (scaling_study.SECTION_*)
SCALING_BEGIN = "<!-- scaling-simulation:begin"
SCALING_END = "<!-- scaling-simulation:end -->"
#: a stage reaches this share of the lower of its two limits (issue #20, goals 1 and 2)
WITHIN = 0.90
LIMIT_BATCH = "64"
STAGES = (("filter", "filter"), ("classifier", "classifier"))


@dataclass(frozen=True)
class Target:
    goal: str
    name: str
    value: float | None
    threshold: float
    unit: str
    higher_is_better: bool
    #: a verdict that is not a comparison (the lean bench, the scaling study)
    status: str | None = None

    @property
    def met(self) -> bool | None:
        if self.status is not None:
            return None
        if self.value is None or (isinstance(self.value, float) and math.isnan(self.value)):
            return None
        return self.value >= self.threshold if self.higher_is_better else self.value <= self.threshold

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met}


# --- derived figures ------------------------------------------------------------
def stage_limits(run: dict[str, Any] | None, identity: dict[str, Any] | None) -> dict[str, Any]:
    """A stage's rate against the limit Kafka sets it (the identity stage) and its CPU-bound limit.

    The CPU-bound limit is 1 / the stage's CPU per record: what it would move with a core to
    itself. The lower of the two binds; ``of_binding`` is the stage's rate over that one.
    """
    run = run or {}
    rate = run.get("records_per_s")
    kafka = (identity or {}).get("records_per_s")
    cpu = run.get("records_per_cpu_s")
    bound = [v for v in (kafka, cpu) if v]
    binding = min(bound) if bound else None
    return {
        "records_per_s": rate, "kafka_limit": kafka, "cpu_limit": cpu,
        "of_kafka": ratio(rate, kafka), "of_cpu": ratio(rate, cpu),
        "binding": None if binding is None else ("Kafka" if binding == kafka else "CPU"),
        "of_binding": ratio(rate, binding),
    }


def pipeline_limit(run: dict[str, Any] | None, producer_cpu_ms: float | None, cpus: int | None) -> dict[str, Any]:
    """End to end against the CPU-bound limit of the whole pipeline on this machine.

    The limit is ``cpus`` / the sum of every process's CPU per record (the producer's from its run
    alone, which leaves its start-up out; the stages' and the broker's over the run), and no more
    than the classifiers manage with a core per thread of their model's transform (``classifier_threads``,
    one per classifier when the run does not say): a classifier of one thread leaves the second core
    to the other processes however idle they leave it.
    """
    run = run or {}
    per_record = dict(run.get("cpu_ms_per_record") or {})
    if producer_cpu_ms is not None:
        per_record["producer"] = producer_cpu_ms
    total = sum(v for v in per_record.values() if v is not None)
    machine = 1000 * cpus / total if total > 0 and cpus else None
    classifier_ms = per_record.get("classifier")
    threads = run.get("classifier_threads") or run.get("classifiers")
    replicas_limit = 1000 * threads / classifier_ms if classifier_ms and threads else None
    bound = [v for v in (machine, replicas_limit) if v]
    limit = min(bound) if bound else None
    # the rate over the span the CPU was counted over (first record produced to last predicted)
    span_rate = run.get("span_records_per_s")
    return {"records_per_s": run.get("records_per_s"), "span_records_per_s": span_rate,
            "cpu_ms_per_record": per_record,
            "cpu_ms_per_record_total": total or None, "machine_limit": machine,
            "classifiers_limit": replicas_limit, "cpu_limit": limit,
            "binding": None if limit is None else ("the machine's CPUs" if limit == machine
                                                   else "a core per classifier thread"),
            "of_cpu_limit": ratio(span_rate, limit)}


def turn_split(run: dict[str, Any] | None) -> dict[str, float | None]:
    """One turn of a stage's loop under backlog: processing, committing and waiting for input (s).

    A turn moves a mean batch in ``batch / records_per_s`` seconds; ``batch_s`` of it runs from
    the fetch to the commit (``commit_s`` of which is ``send_offsets`` + ``commit_transaction``);
    the rest the loop waited in ``poll`` for its next batch's first record.  With
    ``process_during_commit`` (``overlapped``) a batch's processing runs during the previous commit,
    so ``batch_s`` spans more than its turn: only the turn and the commit are told apart.
    """
    turns = (run or {}).get("turns") or {}
    rate, batch, busy, commit = ((run or {}).get("records_per_s"), turns.get("mean_batch"), turns.get("batch_s"),
                                 turns.get("commit_s"))
    if not rate or not batch or busy is None or commit is None:
        return {}
    turn = batch / rate
    if ((run or {}).get("settings") or {}).get("process_during_commit"):
        return {"turn_s": turn, "batch": batch, "process_s": None, "commit_s": commit, "wait_s": None,
                "overlapped": True}
    return {"turn_s": turn, "batch": batch, "process_s": max(busy - commit, 0.0), "commit_s": commit,
            "wait_s": max(turn - busy, 0.0), "overlapped": False}


def compute_ratios(results: dict[str, Any]) -> dict[str, Any]:
    stages = results.get("stages", {})
    identity = stages.get("identity")
    cpus = results.get("meta", {}).get("cpu_count")
    producer_cpu = (results.get("backlog") or {}).get("cpu_ms_per_record")
    pipeline = results.get("pipeline", {})
    out: dict[str, Any] = {key: stage_limits(stages.get(key), identity) for key, _ in STAGES if stages.get(key)}
    for key in ("one_classifier", "two_classifiers"):
        if pipeline.get(key):
            out[key] = pipeline_limit(pipeline[key], producer_cpu, cpus)
    before = results.get("filter_before")
    if before and stages.get("filter"):
        out["filter_before"] = stage_limits(before, identity)
    return out


def peak_rss_mb(results: dict[str, Any], role: str) -> float | None:
    """Largest peak RSS of any process of ``role`` over every run."""
    peaks = [mb for run in results.get("pipeline", {}).values() if isinstance(run, dict)
             for name, mb in run.get("peak_rss_mb", {}).items() if name.split("-")[0] == role]
    peaks += [run["peak_rss_mb"] for run in results.get("stages", {}).values()
              if isinstance(run, dict) and run.get("stage") == role and run.get("peak_rss_mb")]
    return max(peaks) if peaks else None


def compute_targets(results: dict[str, Any], scaling: dict[str, Any] | None = None) -> list[Target]:
    ratios = results.get("ratios") or compute_ratios(results)
    latency = results.get("pipeline", {}).get("latency", {}).get("latency_s", {})
    targets = [Target("1", f"{label}: records/s / the lower of its Kafka and CPU limits",
                      (ratios.get(key) or {}).get("of_binding"), WITHIN, "ratio", True) for key, label in STAGES]
    targets += [
        Target("2", "end to end / pipeline's CPU-bound limit, one classifier",
               (ratios.get("one_classifier") or {}).get("of_cpu_limit"), WITHIN, "ratio", True),
        Target("2", "end to end / pipeline's CPU-bound limit, two classifiers",
               (ratios.get("two_classifiers") or {}).get("of_cpu_limit"), WITHIN, "ratio", True),
        Target("3", "p99 produced → predicted at half load", latency.get("p99"), 0.25, "s", False),
        Target("4", "a lean bench", None, 0, "", True,
               status="done: knobs are parameters of runs (old values included), no copies of old code; "
                      "history in the commit messages"),
        _scaling_target(scaling),
        Target("—", "classifier peak RSS", peak_rss_mb(results, "classifier"), 600.0, "MB", False),
        Target("—", "filter peak RSS", peak_rss_mb(results, "filter"), 250.0, "MB", False),
    ]
    return targets


def _scaling_target(scaling: dict[str, Any] | None) -> Target:
    if not scaling or not scaling.get("chart_defaults"):
        return Target("5", "scaling on lag simulated (`ppg-mi bench scaling`)", None, 0, "", True,
                      status="not run: `ppg-mi bench scaling` writes its section below")
    defaults, best = scaling["chart_defaults"], scaling.get("recommended") or {}
    bound = scaling.get("bound_s")
    within = defaults.get("delay_quantile_s", math.inf) <= (bound or 0)
    status = (f"simulated: the chart's defaults give a p99 delay of {_num(defaults.get('delay_quantile_s'), 1)} s "
              f"({'within' if within else '**not within**'} {_num(bound, 0)} s)")
    if best and not within:
        status += f"; the section below recommends values giving {_num(best.get('delay_quantile_s'), 1)} s"
    return Target("5", "scaling on lag simulated (`ppg-mi bench scaling`)", None, 0, "", True, status=status)


def notes(results: dict[str, Any]) -> list[str]:
    """What the figures say about each goal: where a stage's turn goes, the best knob, before → after."""
    ratios, stages = results.get("ratios", {}), results.get("stages", {})
    out = []
    for key, label in STAGES:
        t, lim = turn_split(stages.get(key)), ratios.get(key) or {}
        if not t or lim.get("of_binding") is None:
            continue
        if t["overlapped"]:
            line = (f"{label}: {_pct(lim['of_binding'])} of its {lim['binding']} limit. A turn of {t['batch']:.0f} "
                    f"records is {_ms(t['turn_s'])} ms, {_ms(t['commit_s'])} ms of which the commit, while a worker "
                    f"thread processes the next batch (from when the transaction's messages are produced).")
        else:
            line = (f"{label}: {_pct(lim['of_binding'])} of its {lim['binding']} limit. A turn of {t['batch']:.0f} "
                    f"records is {_ms(t['process_s'])} ms of processing and producing, {_ms(t['commit_s'])} ms of "
                    f"committing and {_ms(t['wait_s'])} ms of waiting for input: the loop is serial, so the stage's "
                    f"CPU idles {_pct((t['commit_s'] + t['wait_s']) / t['turn_s'])} of the time.")
        knobs = [k for k in results.get("stage_knobs") or [] if k.get("stage") == key and k.get("knob_label")]
        if knobs:
            best = max(knobs, key=lambda k: k.get("records_per_s") or 0)
            line += (f" Best knob run: {best['knob_label']}, {_num(best.get('records_per_s'))} records/s "
                     f"({_pct(ratio(best.get('records_per_s'), best.get('records_per_cpu_s')))} of its CPU limit).")
        out.append(line)
    before, after = results.get("filter_before"), stages.get("filter")
    if before and after:
        out.append(f"Goal 1's fix, the same run: filter {_num(before.get('records_per_s'))} records/s with "
                   f"{before.get('knob_label')} → {_num(after.get('records_per_s'))} as configured.")
    pipeline = results.get("pipeline", {})
    for key, label in (("one_classifier", "one classifier"), ("two_classifiers", "two classifiers")):
        lim = ratios.get(key)
        if lim and lim.get("binding") and lim.get("of_cpu_limit") is not None:
            out.append(f"End to end, {label}: {_pct(lim.get('of_cpu_limit'))} of the limit set by {lim['binding']}.")
    latency = pipeline.get("latency")
    for key, run in pipeline.items():
        if key.startswith("latency:") and latency and "before" in run.get("knob_label", ""):
            out.append(f"Goal 3, the same run: p99 {_ms(run['latency_s'].get('p99'))} ms with {run['knob_label']} → "
                       f"{_ms(latency['latency_s'].get('p99'))} ms as configured.")
    return out


def finish(results: dict[str, Any], scaling: dict[str, Any] | None = None) -> dict[str, Any]:
    """Add the derived ratios, target verdicts and notes to ``results`` (in place) and return it."""
    results["ratios"] = compute_ratios(results)
    results["targets"] = [t.as_dict() for t in compute_targets(results, scaling)]
    results["notes"] = notes(results)
    return results


# --- rendering -----------------------------------------------------------------
def _num(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}"
    return str(value)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f} %"


def _ms(seconds: float | None, digits: int = 0) -> str:
    return "—" if seconds is None else f"{1000 * seconds:,.{digits}f}"


def _verdict(t: dict[str, Any]) -> str:
    if t.get("status"):
        return t["status"]
    return {True: "met", False: "**not met**", None: "not measured"}[t["met"]]


def _target_value(t: dict[str, Any]) -> str:
    if t.get("status"):
        return "—"
    if t["unit"] == "ratio":
        return f"{_pct(t['value'])} (≥ {_pct(t['threshold'])})"
    op = "≥" if t["higher_is_better"] else "≤"
    digits = 2 if t["unit"] == "s" else 0
    return f"{_num(t['value'], digits)} {t['unit']} ({op} {_num(t['threshold'], digits)} {t['unit']})"


def _machine_line(meta: dict[str, Any]) -> str:
    load = lambda key: " / ".join(f"{x:.2f}" for x in meta[key]) if meta.get(key) else "?"  # noqa: E731
    return (f"{'Quick smoke run' if meta.get('quick') else 'Full run'} of `ppg-mi bench`, started "
            f"{meta.get('started', '?')}, {_num(meta.get('duration_s'))} s; {meta.get('cpu_count', '?')} CPUs "
            f"({meta.get('cpu_model', '?')}), load average (1/5/15 min) {load('load_start')} at the start, "
            f"{load('load_end')} at the end; Kafka {meta.get('kafka_version', '?')}, records of "
            f"{_num(meta.get('record_bytes'))} bytes, {meta.get('partitions', '?')} partitions, batches of at most "
            f"{meta.get('batch_max_records', '?')} records.")


def _limits_table(results: dict[str, Any], add: Any) -> None:
    stages, ratios = results.get("stages", {}), results.get("ratios", {})
    backlog = results.get("backlog") or {}
    add("| process, alone on a backlog | records/s | CPU ms / record | CPU-bound limit (1 / CPU) | "
        "Kafka limit (identity stage) | of Kafka limit | of CPU limit | binding | broker CPU ms / record |")
    add("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
    if backlog:
        add(f"| producer (`ppg-mi produce`) | {_num(backlog.get('records_per_s'))} | "
            f"{_num(backlog.get('cpu_ms_per_record'), 3)} | {_num(backlog.get('records_per_cpu_s'))} | — | — | — | — | "
            f"{_num(backlog.get('broker_cpu_ms_per_record'), 3)} |")
    identity = stages.get("identity")
    if identity:
        add(f"| identity stage (same loop, processing costs nothing) | {_num(identity.get('records_per_s'))} | "
            f"{_num(identity.get('cpu_ms_per_record'), 3)} | {_num(identity.get('records_per_cpu_s'))} | "
            f"(itself) | — | {_pct(ratio(identity.get('records_per_s'), identity.get('records_per_cpu_s')))} | — | "
            f"{_num(identity.get('broker_cpu_ms_per_record'), 3)} |")
    rows = [(key, label) for key, label in STAGES]
    if results.get("filter_before"):
        rows.append(("filter_before", f"filter, before: {results['filter_before'].get('knob_label', '')}"))
    for key, label in rows:
        run = stages.get(key) if key != "filter_before" else results["filter_before"]
        lim = ratios.get(key) or {}
        if not run:
            continue
        add(f"| {label} | {_num(run.get('records_per_s'))} | {_num(run.get('cpu_ms_per_record'), 3)} | "
            f"{_num(lim.get('cpu_limit'))} | {_num(lim.get('kafka_limit'))} | {_pct(lim.get('of_kafka'))} | "
            f"{_pct(lim.get('of_cpu'))} | {lim.get('binding') or '—'}: **{_pct(lim.get('of_binding'))}** | "
            f"{_num(run.get('broker_cpu_ms_per_record'), 3)} |")
    pipe = [(k, label) for k, label in (("one_classifier", "one classifier"), ("two_classifiers", "two classifiers"))
            if ratios.get(k)]
    if pipe:
        add("")
        add(f"| end to end (producer → filter → classifier → predictions) | records/s steady / whole run | "
            f"CPU ms / record over the whole run, every "
            f"process | {results.get('meta', {}).get('cpu_count', '?')} CPUs / CPU per record | a core per "
            "classifier thread | of the lower |")
        add("| --- | ---: | --- | ---: | ---: | ---: |")
        for key, label in pipe:
            lim = ratios[key]
            parts = ", ".join(f"{name} {_num(v, 3)}" for name, v in sorted(lim["cpu_ms_per_record"].items())
                              if v is not None)
            add(f"| {label} | {_num(lim.get('records_per_s'))} / {_num(lim.get('span_records_per_s'))} | "
                f"{_num(lim.get('cpu_ms_per_record_total'), 3)} "
                f"({parts}) | {_num(lim.get('machine_limit'))} | {_num(lim.get('classifiers_limit'))} | "
                f"**{_pct(lim.get('of_cpu_limit'))}** |")


def _where_time_goes(results: dict[str, Any], add: Any) -> None:
    stages = results.get("stages", {})
    rows = [(key, label) for key, label in (("identity", "identity"), *STAGES) if turn_split(stages.get(key))]
    if rows:
        add("A stage's loop fetches a batch, processes it, commits its transaction and fetches again; with "
            "PPG_MI_PROCESS_DURING_COMMIT (the default) the next batch is fetched before the transaction begins "
            "and processed, once the transaction's messages are produced, while it commits; a turn's processing and "
            "waiting are then not told apart (—). "
            "Under backlog, one turn (ms):")
        add("")
        add("| stage | mean batch | turn | processing + producing | commit | waiting for input |")
        add("| --- | ---: | ---: | ---: | ---: | ---: |")
        for key, label in rows:
            t = turn_split(stages[key])
            add(f"| {label} | {_num(t['batch'])} | {_ms(t['turn_s'])} | {_ms(t['process_s']) if not t['overlapped'] else '—'} | "
                f"{_ms(t['commit_s'])} | {_ms(t['wait_s']) if not t['overlapped'] else '—'} |")
        add("")
    lat = results.get("pipeline", {}).get("latency")
    if lat:
        ls, seg, commit = lat.get("latency_s", {}), lat.get("latency_segments_s", {}), lat.get("commit_ms", {})
        p2f, f2p = seg.get("produced_to_filtered", {}), seg.get("filtered_to_predicted", {})
        add(f"At half load ({_num(lat.get('rate'))} records/s offered, one classifier), produced → predicted: "
            f"p50 {_ms(ls.get('p50'))} ms, p99 **{_ms(ls.get('p99'))} ms**. Of it, produced → the filter's stamp "
            f"p50 {_ms(p2f.get('p50'))} / p99 {_ms(p2f.get('p99'))} ms (the producer's linger, the filter's fetch "
            f"and processing); the filter's stamp → the classifier's p50 {_ms(f2p.get('p50'))} / p99 "
            f"{_ms(f2p.get('p99'))} ms (the filter's commit, {_num(commit.get('filter'))} ms a transaction, before "
            f"`read_committed` shows its records; the classifier's fetch, its wait for the batch in hand and its "
            f"model, mean batch {_num(lat.get('classifier_mean_batch'))}).")
        share = lat.get("cpu_share_in_window") or {}
        if share.get("machine") is not None:
            # a queue's wait grows as 1 / (1 - utilisation): how busy the CPUs were explains the tail
            parts = ", ".join(f"{name} {share[name]:.2f}" for name in ("producer", "filter", "classifier", "other")
                              if share.get(name) is not None)
            add("")
            add(f"CPUs busy meanwhile: {share['machine']:.2f} of {results.get('meta', {}).get('cpu_count', '?')} "
                f"({parts}; other: the broker, the bench's own reader and the kernel).")
        add("")


def _knob_tables(results: dict[str, Any], add: Any) -> None:
    knobs = results.get("stage_knobs") or []
    if knobs:
        add("### Stage knobs (each a setting of the same code; backlog drained alone)")
        add("")
        add("| stage | setting | records/s (each run) | CPU ms / record | of CPU limit | mean batch | commit (ms) | "
            "waiting (ms per turn) |")
        add("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for k in knobs:
            t = turn_split(k)
            each = " / ".join(_num(r) for r in k.get("each", []))
            add(f"| {k['stage']} | {k.get('knob_label') or _configured(k.get('settings'))} | {_num(k.get('records_per_s'))} "
                f"({each}) | {_num(k.get('cpu_ms_per_record'), 3)} | "
                f"{_pct(ratio(k.get('records_per_s'), k.get('records_per_cpu_s')))} | {_num(t.get('batch'))} | "
                f"{_ms(t.get('commit_s'))} | {_ms(t.get('wait_s'))} |")
        add("")
    lat = [(k, run) for k, run in results.get("pipeline", {}).items() if k.startswith("latency") and run]
    if len(lat) > 1:
        add("### Latency knobs (half load, one classifier)")
        add("")
        add("| setting | p50 (ms) | p99 (ms) | p99 → filter (ms) | p99 filter → classifier (ms) | commit filter / "
            "classifier (ms) | mean classifier batch |")
        add("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for _, run in lat:
            ls, seg, commit = run.get("latency_s", {}), run.get("latency_segments_s", {}), run.get("commit_ms", {})
            label = run.get("knob_label") or _configured({"fetch_wait_max_ms": results.get("meta", {}).get("fetch_wait_max_ms")})
            add(f"| {label} | {_ms(ls.get('p50'))} | {_ms(ls.get('p99'))} | "
                f"{_ms(seg.get('produced_to_filtered', {}).get('p99'))} | "
                f"{_ms(seg.get('filtered_to_predicted', {}).get('p99'))} | {_num(commit.get('filter'))} / "
                f"{_num(commit.get('classifier'))} | {_num(run.get('classifier_mean_batch'))} |")
        add("")


def _configured(settings: dict[str, Any] | None) -> str:
    """'as configured', with the values of the knobs the other rows change."""
    shown = ", ".join(f"PPG_MI_{k.upper()}={v}" for k, v in (settings or {}).items()
                      if v is not None and k in ("fetch_queue_backoff_ms", "queued_max_kbytes", "batch_max_records",
                                                 "fetch_wait_max_ms"))
    return f"as configured ({shown})" if shown else "as configured"


def _parts_alone(results: dict[str, Any], add: Any) -> None:
    limits = results.get("limits", {})
    add("| part | records/s | records per CPU-second | notes |")
    add("| --- | ---: | ---: | --- |")
    for key, label in (("kafka_producer", "Kafka ProducerPerformance"), ("kafka_consumer", "Kafka ConsumerPerformance")):
        e = limits.get(key)
        if e:
            add(f"| {label} | {_num(e.get('records_per_s'))} | — | {e.get('note', '')} |")
    for key, label in (("filter", "`preprocess_batch`"), ("model", "`model.predict_proba`")):
        for batch, b in (limits.get(key) or {}).get("batches", {}).items():
            add(f"| {label}, batch {batch} | {_num(b['records_per_s'])} | {_num(b['records_per_cpu_s'])} | "
                f"{b.get('records')} records in {_num(b.get('seconds'), 1)} s |")
    txn = (limits.get("transactions") or {}).get("configured")
    if txn:
        add(f"| transactions back to back (one record each) | {_num(1000 / txn['total_ms']['p50'])} | — | p50 "
            f"{_num(txn['total_ms']['p50'], 1)} ms (send_offsets {_num(txn['send_offsets_ms']['p50'], 1)}, commit "
            f"{_num(txn['commit_ms']['p50'], 1)}), p95 {_num(txn['total_ms']['p95'], 1)} ms |")
    codec = results.get("codec")
    if codec:
        add(f"| codec, encode + decode of one recording | {_num(1e6 / codec['encode_decode_us'])} | — | "
            f"{_num(codec['encode_us'], 2)} + {_num(codec['decode_us'], 2)} µs |")


def render_markdown(results: dict[str, Any]) -> str:
    meta = results.get("meta", {})
    lines: list[str] = []
    add = lines.append
    add("# Performance")
    add("")
    add("Written by `ppg-mi bench` (rerun it to refresh this page; the scaling section at the end by `ppg-mi bench "
        "scaling`). " + _machine_line(meta))
    if meta.get("load_note"):
        add("")
        add(meta["load_note"])
    add("")
    add("## Targets (issue #20)")
    add("")
    add("| goal | target | measured (goal) | verdict |")
    add("| --- | --- | --- | --- |")
    for t in results.get("targets", []):
        add(f"| {t.get('goal', '')} | {t['name']} | {_target_value(t)} | {_verdict(t)} |")
    add("")
    add("## Limits")
    add("")
    _limits_table(results, add)
    add("")
    add("## Where the time goes")
    add("")
    _where_time_goes(results, add)
    for note in results.get("notes", []):
        add(f"- {note}")
    if results.get("notes"):
        add("")
    add("## Details")
    add("")
    _knob_tables(results, add)
    add("### Parts alone")
    add("")
    _parts_alone(results, add)
    add("")
    profile = results.get("profile", {})
    for name, text in profile.items():
        add(f"`{name}` (pyinstrument, wall time):")
        add("")
        add("```")
        add(text.rstrip())
        add("```")
        add("")
    add("Rates are taken while the count of records done goes from 10 % to 90 % (start-up and the tail excluded); "
        "CPU seconds are read from `/proc` at the same moments. Rerun: `ppg-mi bench` (full), `ppg-mi bench "
        "--quick` (smoke), `ppg-mi bench --models DIR` (an existing model store).")
    add("")
    return "\n".join(lines)


def scaling_section(text: str) -> str:
    """The block `ppg-mi bench scaling` wrote into a page (markers included), or ''."""
    start = text.find(SCALING_BEGIN)
    end = text.find(SCALING_END, start)
    if start < 0 or end < 0:
        return ""
    return text[start:end + len(SCALING_END)]


def write_reports(results: dict[str, Any], json_path: str | Path, md_path: str | Path) -> None:
    """Write both reports; the Markdown page keeps the scaling section it already holds."""
    Path(json_path).parent.mkdir(parents=True, exist_ok=True)
    Path(json_path).write_text(json.dumps(results, indent=2, sort_keys=True, default=str) + "\n")
    md = Path(md_path)
    md.parent.mkdir(parents=True, exist_ok=True)
    kept = scaling_section(md.read_text()) if md.exists() else ""
    page = render_markdown(results)
    md.write_text(page + ("\n" + kept + "\n" if kept else ""))


def refresh_targets(json_path: str | Path, md_path: str | Path, scaling: dict[str, Any]) -> bool:
    """Re-derive the bench report's verdicts with new scaling figures (goal 5) and rewrite both reports.

    The bench's measurements stay as they were; only what is computed from them and from
    ``scaling`` changes.  Returns False when there is no bench report to refresh.
    """
    path = Path(json_path)
    if not path.exists():
        return False
    results = json.loads(path.read_text())
    write_reports(finish(results, scaling), path, md_path)
    return True

