"""Pure parts of `ppg-mi cluster status` and `check`: rendering, model version parsing, verdicts."""

from __future__ import annotations

import json

from ppg_mi.cluster.check import object_problems
from ppg_mi.cluster.status import (Autoscaler, Claim, JobState, PodState, ReleaseStatus, Workload, format_table,
                                   parse_model_version, table, to_json)


def _status() -> ReleaseStatus:
    return ReleaseStatus(
        "ppg", "ppg-mi", "kind-ppg",
        workloads=[Workload("ppg-ppg-mi-classifier", "classifier", "StatefulSet", 3, 3, 3, "keda", 3, 1),
                   Workload("ppg-ppg-mi-dashboard", "dashboard", "Deployment", 1, 0, 1),
                   Workload("ppg-ppg-mi-filter", "filter", "StatefulSet", 2, 2, 2, "hpa", None, None)],
        jobs=[JobState("ppg-ppg-mi-training-r1", "training", 1, 1, 0, 0, "Complete")],
        autoscalers=[Autoscaler("ScaledObject", "ppg-ppg-mi-classifier", "ppg-ppg-mi-classifier", 1, 6, 3)],
        pods=[PodState("ppg-ppg-mi-classifier-0", "classifier", "Running", True, 0, "v20261130-1"),
              PodState("ppg-ppg-mi-dashboard-x", "dashboard", "Pending", False, 2)],
        claims=[Claim("ppg-ppg-mi-models", "Bound", "1Gi")],
        broker="reachable at 127.0.0.1:9092", notes=["KEDA is paused"])


def test_table_aligns_columns_and_shows_none_as_dash() -> None:
    text = table(["A", "LONGER"], [["xxxx", None], ["y", 12]])
    assert text.splitlines() == ["A     LONGER", "xxxx  -", "y     12"]


def test_format_table_has_a_section_per_kind_and_the_cells_people_read() -> None:
    text = format_table(_status())
    assert text.startswith("release ppg, namespace ppg-mi, context kind-ppg")
    lines = text.splitlines()
    classifier = next(line for line in lines if line.startswith("ppg-ppg-mi-classifier ") and "classifier" in line
                      and "KEDA" in line)
    assert "3/3" in classifier and "KEDA (paused at 3)" in classifier and classifier.split()[-1] == "1"
    assert classifier.split()[1] == "StatefulSet"
    filter_line = next(line for line in lines if line.startswith("ppg-ppg-mi-filter"))
    assert "HPA" in filter_line and filter_line.rstrip().endswith("-")
    assert any(line.startswith("ppg-ppg-mi-classifier-0") and line.endswith("v20261130-1") for line in lines)
    assert any(line.startswith("ppg-ppg-mi-dashboard-x") and " no " in line for line in lines)
    assert "ppg-ppg-mi-training-r1  training   Complete  1/1" in text
    assert lines[-2:] == ["broker: reachable at 127.0.0.1:9092", "note: KEDA is paused"]
    for header in ("WORKLOAD", "AUTOSCALER", "JOB", "POD", "PVC"):
        assert any(line.startswith(header) for line in lines), header


def test_json_is_the_whole_status() -> None:
    got = json.loads(to_json(_status()))
    assert got["workloads"][0] == {"name": "ppg-ppg-mi-classifier", "component": "classifier",
                                   "kind": "StatefulSet", "desired": 3, "ready": 3, "updated": 3, "autoscaler": "keda", "paused_replicas": 3, "lag": 1}
    assert got["pods"][0]["model"] == "v20261130-1" and got["pods"][1]["model"] is None
    assert set(got) == {"release", "namespace", "context", "workloads", "jobs", "autoscalers", "pods", "claims",
                        "broker", "notes"}


def test_model_version_from_the_probe_output() -> None:
    body = ('/readyz: 200 {"ok": true, "broker": {"ok": true, "detail": "1 broker(s)"}, "model": {"ok": true, '
            '"detail": "20261130T223500-minirocket-ab12 loaded and warm"}, "partitions": {"ok": true}}')
    assert parse_model_version(body) == "20261130T223500-minirocket-ab12"
    loading = '/readyz: 503 {"ok": false, "model": {"ok": false, "detail": "loading and warming up the model"}}'
    assert parse_model_version(loading) == "loading"
    assert parse_model_version("/readyz: no answer") == "unknown (no model check)"
    assert parse_model_version("") == "unknown (no model check)"


def test_check_verdict_names_what_is_not_ready() -> None:
    status = _status()
    assert object_problems(status) == ["Deployment ppg-ppg-mi-dashboard: 0/1 replicas ready"]
    status.jobs.append(JobState("ppg-ppg-mi-producer-r1", "producer", 2, 1, 4, 0, "Failed"))
    status.claims.append(Claim("other", "Pending", ""))
    status.workloads[1].ready = 1
    assert object_problems(status) == ["Job ppg-ppg-mi-producer-r1 failed (4 failed pods)",
                                       "PersistentVolumeClaim other is Pending"]
    assert object_problems(ReleaseStatus("ppg", "ns", "c")) == ["the release has no Deployment or StatefulSet"]
