"""The ``ppg-mi`` command: every role and tool of the project behind one entry point.

Settings come from ``PPG_MI_*`` environment variables (``ppg-mi config`` lists them);
flags override them for one invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

from . import __version__
from .config import ConfigError, Settings

EPILOG = """\
typical session:
  ppg-mi kafka up                          start a local single-node Kafka (127.0.0.1:9092)
  ppg-mi topics ensure                     create ppg.raw, ppg.filtered, ppg.predictions, ppg.dlq
  ppg-mi train --synthetic 400 --out models
  ppg-mi filter &  ppg-mi classify &       the two consuming stages
  ppg-mi produce --synthetic 1000          publish recordings
  ppg-mi dashboard                         watch the results
or all of it at once:  ppg-mi demo

Settings are PPG_MI_* environment variables; `ppg-mi config` lists them with their defaults.
"""


def _settings(args: argparse.Namespace, **overrides: object) -> Settings:
    return Settings.from_env(**{k: v for k, v in overrides.items() if v is not None})


# --- kafka ---------------------------------------------------------------------
def cmd_kafka(args: argparse.Namespace) -> int:
    from .local.kafka import LocalBroker, LocalKafkaError, ensure_jars, kafka_tool

    settings = _settings(args)
    if args.action == "tool":
        if not args.tool_args:
            print("usage: ppg-mi kafka tool <main class> [args...], e.g. "
                  "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand --describe --all-groups "
                  f"--bootstrap-server {settings.bootstrap_servers}", file=sys.stderr)
            return 2
        return subprocess.call(kafka_tool(settings, *args.tool_args))
    if settings.kafka_bootstrap_servers and args.action in ("up", "down"):
        print(f"PPG_MI_KAFKA_BOOTSTRAP_SERVERS={settings.kafka_bootstrap_servers} names a broker: "
              "none is started or stopped here", file=sys.stderr)
        return 0
    broker = LocalBroker.for_settings(settings)
    try:
        if args.action == "fetch":
            print(ensure_jars(settings, quiet=False))
        elif args.action == "up":
            print(f"fetching Kafka {settings.kafka_version} jars if needed (cache: {settings.kafka_home})",
                  file=sys.stderr)
            ensure_jars(settings)
            broker.start()
            print(f"Kafka {settings.kafka_version} is up at {broker.bootstrap} (log: {broker.log_file})")
        elif args.action == "down":
            stopped = broker.stop()
            print(f"stopped the broker at {broker.bootstrap}" if stopped else "no local broker was running")
        elif args.action == "status":
            if broker.running():
                print(f"running at {broker.bootstrap}, pid {broker.pid()}, log {broker.log_file}")
            else:
                print(f"not running (expected at {broker.bootstrap})")
                return 1
    except LocalKafkaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


# --- topics ---------------------------------------------------------------------
def cmd_topics(args: argparse.Namespace) -> int:
    from .streaming.topics import ensure_topics

    settings = _settings(args, topic_partitions=args.partitions)
    for result in ensure_topics(settings):
        print(f"{result.name}: {'created' if result.created else 'exists'} ({result.partitions} partitions)")
    return 0


# --- data -----------------------------------------------------------------------
def cmd_data(args: argparse.Namespace) -> int:
    from .data import SyntheticConfig, generate, read_csv, write_csv
    from .data.kaggle import report_errors

    settings = _settings(args)
    if args.action == "synth":
        cfg = SyntheticConfig(records=args.records, samples=args.samples or settings.samples_per_record,
                              sampling_rate_hz=settings.sampling_rate_hz, mi_fraction=args.mi_fraction,
                              difficulty=args.difficulty, seed=args.seed)
        dataset = generate(cfg)
        write_csv(dataset, args.out)
        n_mi = sum(label == "MI" for label in dataset.labels)
        print(f"wrote {len(dataset)} recordings ({n_mi} MI, {len(dataset) - n_mi} Normal) of "
              f"{cfg.samples} samples to {args.out}")
        return 0
    dataset = read_csv(args.file, args.samples)
    print(f"{args.file}: {len(dataset)} valid recordings, {len(dataset.errors)} invalid rows"
          f"{'' if dataset.labelled else ' (unlabelled)'}")
    report_errors(dataset.errors, sys.stdout)
    return 1 if dataset.errors else 0


def _dataset(args: argparse.Namespace, settings: Settings):  # noqa: ANN202
    from .data import SyntheticConfig, generate, read_csv
    from .data.kaggle import report_errors

    if args.data:
        dataset = read_csv(args.data, settings.samples_per_record)
        if dataset.errors:
            print(f"{args.data}: {len(dataset.errors)} invalid rows were not used:", file=sys.stderr)
            report_errors(dataset.errors)
        return dataset
    return generate(SyntheticConfig(records=args.synthetic, samples=settings.samples_per_record,
                                    sampling_rate_hz=settings.sampling_rate_hz, difficulty=args.difficulty,
                                    seed=args.seed, id_prefix=f"synth{args.seed}"))


# --- services ---------------------------------------------------------------------
def cmd_produce(args: argparse.Namespace) -> int:
    from .services import producer

    settings = _settings(args, producer_rate=args.rate, producer_shard=args.shard)
    return producer.run(settings, _dataset(args, settings), settings.producer_shard, args.realtime)


def cmd_filter(args: argparse.Namespace) -> int:
    from .services import filter as filter_service

    return filter_service.run(_settings(args))


def cmd_classify(args: argparse.Namespace) -> int:
    from .model import ModelError
    from .services import classifier

    try:
        return classifier.run(_settings(args, models_dir=args.models))
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def cmd_dashboard(args: argparse.Namespace) -> int:
    from .services import dashboard

    return dashboard.run(_settings(args, dashboard_port=args.port))


# --- model -------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from training.train import TrainConfig, train

    from .config import parse_target_sensitivity
    from .model.checkpoint import operating_point
    from .model.numba_cache import use_numba_cache
    from .observability.logs import configure
    from .signal import BandPass

    settings = _settings(args)
    use_numba_cache(settings.numba_cache_dir, settings.numba_cache_seed_dir)
    configure(settings.log_level, settings.log_format)
    dataset = _dataset(args, settings)
    # --target-sensitivity overrides PPG_MI_TARGET_SENSITIVITY; both: 0 or empty = no operating point
    raw_target = settings.target_sensitivity if args.target_sensitivity is None else args.target_sensitivity
    try:
        target = parse_target_sensitivity(raw_target)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cfg = TrainConfig(kind=args.kind or settings.model_kind, seed=args.seed, folds=args.folds,
                      test_size=args.test_size, target_sensitivity=target)
    path, card = train(dataset, BandPass.from_settings(settings), cfg, args.out, make_current=not args.no_current)
    print(json.dumps({"checkpoint": str(path), "version": card["version"],
                      "operating_point": operating_point(card), "held_out": card["metrics"]["held_out"]}, indent=2))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .data import read_csv
    from .model import ModelStore, load_checkpoint
    import numpy as np

    from .model.metrics import POSITIVE, calibration_metrics, classification_metrics
    from .model.numba_cache import use_numba_cache
    from .signal import BandPass, preprocess_batch

    settings = _settings(args)
    use_numba_cache(settings.numba_cache_dir, settings.numba_cache_seed_dir)
    model_dir = Path(args.model)
    if not (model_dir / "model-card.json").exists() and (model_dir / "current").exists():
        model_dir = ModelStore(model_dir).current_path()
    checkpoint = load_checkpoint(model_dir, BandPass.from_settings(settings))
    dataset = read_csv(args.data)
    if not dataset.labelled:
        print("error: evaluation needs a labelled CSV (a Label column)", file=sys.stderr)
        return 2
    x = preprocess_batch(dataset.samples, BandPass.from_settings(settings))
    # the decision the classifier service makes: the model's operating point, else the argmax
    proba, pred = checkpoint.decide(x)
    mi = proba[:, checkpoint.classes.index(POSITIVE)]
    result = classification_metrics(dataset.labels, list(pred), mi)
    result.update(calibration_metrics(np.asarray(dataset.labels, dtype=object) == POSITIVE, mi))
    result["threshold"] = checkpoint.threshold
    result["model_version"] = checkpoint.version
    result["invalid_rows"] = len(dataset.errors)
    print(json.dumps(result))
    return 0


# --- misc -----------------------------------------------------------------------------
def cmd_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    for name, default, meaning in Settings.describe():
        current = settings.as_env()[name]
        mark = "" if current == default else f"   (now: {current})"
        print(f"{name}={default}{mark}\n    {meaning}")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from .observability.probe import status

    settings = _settings(args)
    port = settings.metrics_port
    if settings.metrics_port_file:
        try:
            port = int(Path(settings.metrics_port_file).read_text())
        except (OSError, ValueError) as exc:
            print(f"{args.path}: no port in {settings.metrics_port_file} yet ({exc})")
            return 1
    host = "127.0.0.1" if settings.metrics_host in ("", "0.0.0.0", "::") else settings.metrics_host
    code, body = status(host, port, args.path, timeout=args.timeout)
    # the whole exposition for /metrics; the health endpoints' reasons are short
    print(f"{args.path}: {code or 'no answer'} {body.strip() if args.path == '/metrics' else body.strip()[:300]}")
    return 0 if code == 200 else 1


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import BenchOptions, run_bench

    results = run_bench(BenchOptions(records=args.records, quick=args.quick, out_json=args.out_json,
                                     out_md=args.out_md, models=args.models), _settings(args))
    for t in results["targets"]:
        state = {True: "met", False: "NOT MET", None: "not measured"}[t["met"]]
        print(f"{t['name']}: {t['value']} {t['unit']} (goal {t['threshold']}): {state}")
    return 0


def cmd_observability(args: argparse.Namespace) -> int:
    from .observability.generate import generate

    for path in generate(Path(args.chart)):
        print(f"wrote {path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .local.demo import run_demo

    return run_demo(_settings(args), records=args.records, rate=args.rate, dashboard=not args.no_dashboard,
                    exit_when_done=args.exit_when_done)


# --- cluster ----------------------------------------------------------------------------
def cmd_cluster(args: argparse.Namespace) -> int:
    """``ppg-mi cluster status|scale|check``: one line on stderr and an exit code for every error."""
    from .cluster.api import connect
    from .cluster.errors import ClusterCommandError

    def progress(line: str) -> None:
        end = "\r" if sys.stderr.isatty() else "\n"
        print(line.ljust(60) if end == "\r" else line, end=end, file=sys.stderr, flush=True)

    try:
        cluster = connect(args.kubeconfig, args.context, args.namespace)
        if args.action == "status":
            from .cluster.status import collect, format_table, to_json

            status = collect(cluster, args.release, args.bootstrap, models=not args.no_models)
            print(to_json(status) if args.json else format_table(status))
            return 0
        if args.action == "scale":
            from .cluster.scale import scale

            done = scale(cluster, args.release, args.component, args.replicas, resume=args.resume,
                         wait=not args.no_wait, timeout=args.timeout, bootstrap=args.bootstrap, progress=progress)
            if sys.stderr.isatty() and not args.no_wait and done.replicas is not None:
                print(file=sys.stderr)
            what = f"scaled to {done.replicas}" if done.replicas is not None else "handed back to KEDA"
            ready = "" if args.no_wait or done.replicas is None else " (ready)"
            print(f"{args.component}: {what}{ready}")
            for note in done.notes:
                print(f"  {note}")
            return 0
        from .cluster.check import run_check

        result = run_check(cluster, args.release, canary=not args.no_canary, deadline_s=args.timeout,
                           bootstrap=args.bootstrap, progress=progress)
        for line in result.lines:
            print(line)
        for problem in result.problems:
            print(f"FAILED: {problem}")
        print("check passed" if result.ok else "check failed")
        return 0 if result.ok else 1
    except ClusterCommandError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code


def cmd_bench_scaling(args: argparse.Namespace) -> int:
    from .bench.scaling_study import main as scaling_main

    return scaling_main(args)


def _bench_scaling_parser(bench: argparse.ArgumentParser) -> None:
    """``ppg-mi bench scaling``: its arguments here, so that building the parser imports nothing heavy."""
    s = bench.add_subparsers(dest="bench_action", metavar="{scaling}").add_parser(
        "scaling", help="simulate KEDA + the HPA scaling filter and classifier on lag; search the chart values",
        description="Simulate, second by second and without Kafka or a cluster, KEDA's kafka scaler and the HPA "
                    "driving the filter and classifier replicas of helm/ppg-mi on an arrival ramp of patients: the "
                    "scaler's metric (total lag, commit markers included, capped at partitions x lagThreshold), "
                    "activation, the HPA's ceil(lag / lagThreshold) with its 10 % tolerance, 15 s syncs, "
                    "stabilisation windows and rate policies, pod start-up, partition rebalances, maxReplicas <= "
                    "partitions. Searches partitions, both lagThresholds and the scale-down window for the cheapest "
                    "values (replica-seconds) keeping the delay under the bound, and checks the chart's defaults.",
        epilog="Per-replica rates and in-stage times come from --performance-json (written by `ppg-mi bench`) when it "
               "has them, else from the figures of docs/performance.md and issue #20 (the command prints which). "
               "Writes PNG plots to --out-dir, the figures to --out-json and its own section of --out-md (between "
               "marker comments; the rest of the file is kept). About a minute; --quick searches a smaller grid. "
               "Example: ppg-mi bench scaling --patients 50000 --delay-bound 10",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.set_defaults(func=cmd_bench_scaling)
    s.add_argument("--patients", type=int, default=100_000, help="patients at the peak")
    s.add_argument("--window", type=float, default=20.0, help="seconds between two recordings of a patient")
    s.add_argument("--ramp-up", type=int, default=300, help="seconds over which the patients join")
    s.add_argument("--hold", type=int, default=600, help="seconds all of them stay")
    s.add_argument("--ramp-down", type=int, default=300, help="seconds over which they leave")
    s.add_argument("--delay-bound", type=float, default=5.0, help="bound on produced -> predicted, seconds")
    s.add_argument("--quantile", type=float, default=0.99, help="quantile of the delay held to the bound")
    s.add_argument("--filter-rate", type=float, help="records/s of one filter replica (default: measured)")
    s.add_argument("--classifier-rate", type=float, help="records/s of one classifier replica (default: measured)")
    s.add_argument("--filter-startup", type=int, default=7, help="seconds from pod creation to consuming (measured)")
    s.add_argument("--classifier-startup", type=int, default=22,
                   help="seconds from pod creation to consuming: model load and numba compile (measured)")
    s.add_argument("--rebalance", type=int, default=3, help="seconds a partition that changes owner is idle")
    s.add_argument("--performance-json", default="docs/performance.json", help="the bench's report")
    s.add_argument("--chart", default="helm/ppg-mi", help="chart whose shipped values are checked")
    s.add_argument("--out-dir", default="docs/img", help="directory of the plots")
    s.add_argument("--out-json", default="docs/scaling.json", help="the figures as JSON")
    s.add_argument("--out-md", default="docs/performance.md", help="Markdown file whose scaling section is rewritten")
    s.add_argument("--quick", action="store_true", help="a smaller grid")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ppg-mi",
        description="Streaming myocardial-infarction detection from PPG recordings over Apache Kafka.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ppg-mi {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str, **kw) -> argparse.ArgumentParser:  # noqa: ANN003
        p = sub.add_parser(name, help=help, description=help, **kw)
        p.set_defaults(func=func)
        return p

    p = add("kafka", cmd_kafka, "Run the local single-node Kafka (KRaft) from Maven Central jars.")
    p.add_argument("action", choices=["up", "down", "status", "fetch", "tool"],
                   help="up: fetch jars if needed, format once, start and wait; down: stop; status; "
                        "fetch: only download the jars; tool: run one of Kafka's own tools (class + args)")
    p.add_argument("tool_args", nargs=argparse.REMAINDER, help="for `tool`: main class and its arguments")

    p = add("topics", cmd_topics, "Create the pipeline's topics if missing (idempotent).")
    p.add_argument("action", choices=["ensure"])
    p.add_argument("--partitions", type=int, help="partitions of new topics (PPG_MI_TOPIC_PARTITIONS)")

    p = add("data", cmd_data, "Make or check datasets in the Kaggle PPG CSV layout.")
    dsub = p.add_subparsers(dest="action", required=True)
    s = dsub.add_parser("synth", help="write a synthetic labelled dataset")
    s.add_argument("--records", type=int, required=True, help="number of recordings")
    s.add_argument("--out", required=True, help="CSV file to write")
    s.add_argument("--samples", type=int, help="samples per recording (PPG_MI_SAMPLES_PER_RECORD)")
    s.add_argument("--difficulty", type=float, default=0.3, help="0 separable ... 1 identical classes")
    s.add_argument("--mi-fraction", type=float, default=0.5, help="share of MI recordings")
    s.add_argument("--seed", type=int, default=0)
    v = dsub.add_parser("validate", help="report a CSV's invalid rows with their line numbers")
    v.add_argument("file")
    v.add_argument("--samples", type=int, help="required samples per row (default: the header's count)")

    def data_source(p: argparse.ArgumentParser) -> None:
        g = p.add_mutually_exclusive_group(required=True)
        g.add_argument("--data", help="CSV in the Kaggle layout")
        g.add_argument("--synthetic", type=int, metavar="N", help="generate N synthetic recordings")
        p.add_argument("--difficulty", type=float, default=0.3, help="synthetic data difficulty (0..1)")
        p.add_argument("--seed", type=int, default=0, help="random seed")

    p = add("produce", cmd_produce, "Publish one ppg.raw message per recording (idempotent, acks=all).")
    data_source(p)
    p.add_argument("--shard", help="i/N: send every N-th recording starting at i (PPG_MI_PRODUCER_SHARD)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=float, help="records per second, 0 = as fast as possible")
    pace.add_argument("--realtime", action="store_true",
                      help="one recording per recording-duration (samples / sampling rate)")

    add("filter", cmd_filter, "Run the filter stage: ppg.raw → band-pass + z-score → ppg.filtered.")

    p = add("classify", cmd_classify, "Run the classifier stage: ppg.filtered → model → ppg.predictions.")
    p.add_argument("--models", help="model store directory (PPG_MI_MODELS_DIR)")

    p = add("dashboard", cmd_dashboard, "Serve the live Streamlit dashboard.")
    p.add_argument("--port", type=int, help="HTTP port (PPG_MI_DASHBOARD_PORT)")

    p = add("train", cmd_train, "Train a model on labelled recordings and write a checkpoint.")
    data_source(p)
    p.add_argument("--out", required=True, help="model store directory; the checkpoint becomes `current`")
    p.add_argument("--kind", help="estimator (PPG_MI_MODEL_KIND); see docs/model.md")
    p.add_argument("--folds", type=int, default=5, help="stratified k-fold evaluation (0 to skip)")
    p.add_argument("--test-size", type=float, default=0.2, help="held-out share")
    p.add_argument("--target-sensitivity", metavar="P",
                   help="MI sensitivity to set the operating point for (PPG_MI_TARGET_SENSITIVITY, default 0.95): "
                        "the MI score is calibrated on out-of-fold scores and the decision threshold is the highest "
                        "calibrated MI probability that still catches this share of MI recordings on held-out folds; "
                        "the classifier and `ppg-mi evaluate` decide with it. A higher P misses fewer MIs and raises "
                        "more false alarms. 0 or '': no operating point (argmax of the kind's own scores). Costs "
                        "folds+1 fits instead of one per model fitted")
    p.add_argument("--no-current", action="store_true", help="do not point `current` at the new checkpoint")

    p = add("evaluate", cmd_evaluate, "Evaluate a checkpoint on a labelled CSV; prints one JSON object.")
    p.add_argument("--model", required=True, help="checkpoint directory or model store")
    p.add_argument("--data", required=True, help="labelled CSV in the Kaggle layout")

    add("config", cmd_config, "List every PPG_MI_* setting with its default and meaning.")

    p = add("probe", cmd_probe, "Ask this container's service one of its endpoints; exit 0 on HTTP 200.",
            epilog="The exec probe of pods that share the host network, where replicas cannot each have a "
                   "fixed port: the service binds a free port and writes it to PPG_MI_METRICS_PORT_FILE, "
                   "which this command reads (else it asks PPG_MI_METRICS_PORT). Example: ppg-mi probe /readyz")
    p.add_argument("path", choices=["/healthz", "/readyz", "/metrics"], help="endpoint to ask")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer")

    p = add("cluster", cmd_cluster, "Watch, scale and check a release on Kubernetes (through the API, no kubectl).",
            epilog="Exit codes: 0 ok, 1 check failed, 3 no kubeconfig or unknown context, 4 release not found, "
                   "5 forbidden by RBAC, 6 API server unreachable, 7 refused (nothing changed), 8 timed out. "
                   "See docs/kubernetes.md, section 8.")
    csub = p.add_subparsers(dest="action", required=True)

    def cluster_flags(c: argparse.ArgumentParser) -> None:
        c.add_argument("--release", default="ppg", help="helm release name (default: ppg)")
        c.add_argument("--namespace", "-n", help="namespace (default: the context's, in a pod its own)")
        c.add_argument("--context", help="kubeconfig context (default: the current one)")
        c.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
        c.add_argument("--bootstrap", help="broker address reachable from here (default: PPG_MI_KAFKA_BOOTSTRAP_SERVERS, "
                                           "else the one the release's pods use)")

    c = csub.add_parser("status", help="the release's StatefulSets, Deployments, Jobs, autoscalers, pods, PVCs, lag and models")
    cluster_flags(c)
    c.add_argument("--json", action="store_true", help="one JSON object instead of tables")
    c.add_argument("--no-models", action="store_true", help="do not ask each classifier pod its model (pods/exec)")
    c = csub.add_parser("scale", help="hold filter or classifier at N replicas (KEDA paused) or --resume KEDA")
    cluster_flags(c)
    c.add_argument("component", choices=["classifier", "filter"])
    c.add_argument("replicas", type=int, nargs="?", help="replicas; at most the input topic's partitions")
    c.add_argument("--resume", action="store_true", help="remove KEDA's pause annotation: KEDA scales again")
    c.add_argument("--no-wait", action="store_true", help="return once the change is made")
    c.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the pods to be ready")
    c = csub.add_parser("check", help="objects ready and a canary recording predicted (the helm test pod runs this)")
    cluster_flags(c)
    c.add_argument("--no-canary", action="store_true", help="check the objects only")
    c.add_argument("--timeout", type=float, default=120.0, help="seconds for the whole check (canary included)")

    p = add("observability", cmd_observability,
            "Generate the Grafana dashboards and Prometheus alerting rules of the chart.")
    p.add_argument("action", choices=["generate"])
    p.add_argument("--chart", default="helm/ppg-mi", help="chart directory to write files/ under")

    p = add("bench", cmd_bench, "Benchmark the pipeline against the limits of its parts; writes docs/performance.*",
            epilog="Uses the broker of PPG_MI_KAFKA_BOOTSTRAP_SERVERS, the running local one, or starts its own on "
                   "a free port. Measures the parts alone (Kafka's perf tools, back-to-back transactions, the filter "
                   "and the model), each stage alone on a backlog against the identity stage (the same loop with "
                   "processing that costs nothing) and its CPU-bound limit, with knobs of the fetch and the batch as "
                   "parameters, then the pipeline as real processes: one and two classifiers against the whole "
                   "pipeline's CPU-bound limit, and latency at half load; every configuration runs twice, "
                   "interleaved (once with --quick), and the best run is reported. Keeps the section of "
                   "`ppg-mi bench scaling` in the page. About 10 minutes on 2 CPUs; quote figures of a quiet machine.")
    p.add_argument("--records", type=int, help="records per end-to-end run (default 80000, 600 with --quick)")
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run of a minute or two")
    p.add_argument("--out-json", default="docs/performance.json", help="JSON report path")
    p.add_argument("--out-md", default="docs/performance.md", help="Markdown report path")
    p.add_argument("--models", help="serve this model store's current model instead of training one")
    _bench_scaling_parser(p)

    p = add("demo", cmd_demo, "Start Kafka, train a model if none, run every stage and the dashboard.")
    p.add_argument("--records", type=int, default=2000, help="synthetic recordings to stream")
    p.add_argument("--rate", type=float, default=50.0, help="records per second (0 = as fast as possible)")
    p.add_argument("--no-dashboard", action="store_true", help="do not start the dashboard")
    p.add_argument("--exit-when-done", action="store_true",
                   help="stop everything once every record is predicted (for scripts and CI)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (`ppg-mi config | head`): stop quietly, as a tool killed by SIGPIPE
        # would, and keep the interpreter's final flush from failing on the closed pipe again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:  # the last line of defence: a clear message, not a traceback
        from .data import DatasetError
        from .model import ModelError
        from .streaming.exceptions import StreamingError

        if isinstance(exc, (DatasetError, ModelError, StreamingError, ValueError)):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        raise
