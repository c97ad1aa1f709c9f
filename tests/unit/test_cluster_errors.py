"""Errors of `ppg-mi cluster`: API failures mapped to one-line messages and exit codes; kubeconfig errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kubernetes.client.rest import ApiException
from urllib3.exceptions import MaxRetryError, NewConnectionError

from ppg_mi.cli import main
from ppg_mi.cluster import errors
from ppg_mi.cluster.api import connect
from ppg_mi.cluster.broker import release_settings
from ppg_mi.cluster.errors import ClusterCommandError, from_api_exception


@pytest.mark.parametrize("status, code, text", [
    (403, errors.FORBIDDEN, "forbidden: your credentials may not list pods in namespace ns (RBAC)"),
    (401, errors.FORBIDDEN, "not authenticated"),
    (404, errors.NOT_FOUND, "not found: could not list pods in namespace ns"),
    (500, errors.CHECK_FAILED, "could not list pods in namespace ns: 500 boom"),
])
def test_api_exceptions(status: int, code: int, text: str) -> None:
    err = from_api_exception(ApiException(status=status, reason="boom"), "list pods", "ns")
    assert err.exit_code == code and text in err.message and "\n" not in err.message


def test_unreachable_api_server() -> None:
    cause = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")
    err = from_api_exception(MaxRetryError(None, "/api", cause), "list deployments")
    assert err.exit_code == errors.UNREACHABLE and err.message.startswith("cannot reach the API server")
    assert "Connection refused" in err.message


def _kubeconfig(path: Path) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "dev", "context": {"cluster": "c", "user": "u", "namespace": "ppg-mi"}}],
        "current-context": "dev"}))
    return path


def test_connect_reads_context_and_namespace(tmp_path: Path) -> None:
    cluster = connect(str(_kubeconfig(tmp_path / "kc")))
    assert (cluster.context, cluster.namespace) == ("dev", "ppg-mi")
    assert connect(str(tmp_path / "kc"), namespace="other").namespace == "other"


def test_connect_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ClusterCommandError, match=r"context 'prod' is not in .*: use one of dev") as wrong:
        connect(str(_kubeconfig(tmp_path / "kc")), context="prod")
    assert wrong.value.exit_code == errors.NO_KUBECONFIG
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(ClusterCommandError, match="no kubeconfig") as missing:
        connect()
    assert missing.value.exit_code == errors.NO_KUBECONFIG


def test_cli_prints_one_line_and_the_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["cluster", "status", "--kubeconfig", str(tmp_path / "none")]) == errors.NO_KUBECONFIG
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: no kubeconfig")
    # an API server that is not there: exit 6 within seconds, no traceback
    assert main(["cluster", "status", "--kubeconfig", str(_kubeconfig(tmp_path / "kc"))]) == errors.UNREACHABLE
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach the API server") and err.count("\n") == 1


def test_release_settings_precedence() -> None:
    deployment = {"PPG_MI_KAFKA_BOOTSTRAP_SERVERS": "kafka.svc:9092", "PPG_MI_TOPIC_RAW": "raw-x",
                  "PPG_MI_TOPIC_PARTITIONS": "3"}
    s = release_settings(deployment, environ={})
    assert (s.bootstrap_servers, s.topic_raw, s.topic_partitions) == ("kafka.svc:9092", "raw-x", 3)
    s = release_settings(deployment, environ={"PPG_MI_TOPIC_RAW": "mine"})
    assert s.topic_raw == "mine"
    assert release_settings(deployment, "127.0.0.1:1", environ={}).bootstrap_servers == "127.0.0.1:1"
