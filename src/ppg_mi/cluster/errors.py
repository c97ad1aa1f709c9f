"""Errors of ``ppg-mi cluster`` a user can act on: one line each, with an exit code.

Exit codes
----------
1  the check failed (``cluster check``) or an unexpected API answer
2  usage (argparse)
3  no kubeconfig, or the context it names does not exist
4  the release (or one of its components) was not found in the namespace
5  forbidden by RBAC (HTTP 403) or not authenticated (401)
6  the API server cannot be reached
7  the request was refused before anything changed (e.g. more replicas than partitions)
8  timed out waiting for the cluster to reach the requested state
"""

from __future__ import annotations

from dataclasses import dataclass

CHECK_FAILED = 1
NO_KUBECONFIG = 3
NOT_FOUND = 4
FORBIDDEN = 5
UNREACHABLE = 6
REFUSED = 7
TIMEOUT = 8


@dataclass
class ClusterCommandError(Exception):
    """An error with a one-line message for people and an exit code for scripts.

    Parameters
    ----------
    message
        One line saying what went wrong and what to do about it.
    exit_code
        One of the module's exit codes.
    """

    message: str
    exit_code: int = CHECK_FAILED

    def __str__(self) -> str:
        return self.message


def _first_line(text: object, limit: int = 200) -> str:
    line = str(text or "").strip().splitlines()[0] if str(text or "").strip() else ""
    return line[:limit]


def from_api_exception(exc: BaseException, doing: str, namespace: str = "") -> ClusterCommandError:
    """Map an exception of the kubernetes client to a :class:`ClusterCommandError`.

    Parameters
    ----------
    exc
        A ``kubernetes.client.ApiException``, a urllib3 connection error or a kubeconfig error.
    doing
        What was being done, as the verb phrase of the message (e.g. ``"list deployments"``).
    namespace
        The namespace concerned, named in the messages where it helps.
    """
    status = getattr(exc, "status", None)
    where = f" in namespace {namespace}" if namespace else ""
    if status == 403:
        return ClusterCommandError(
            f"forbidden: your credentials may not {doing}{where} (RBAC); ask for a Role granting it", FORBIDDEN)
    if status == 401:
        return ClusterCommandError(
            "not authenticated: the API server refused the kubeconfig's credentials (expired token?)", FORBIDDEN)
    if status == 404:
        return ClusterCommandError(f"not found: could not {doing}{where}", NOT_FOUND)
    name = type(exc).__name__
    if name in ("MaxRetryError", "NewConnectionError", "ConnectionRefusedError", "ProtocolError",
                "ConnectTimeoutError", "ReadTimeoutError", "SSLError", "TimeoutError") or isinstance(exc, OSError):
        return ClusterCommandError(f"cannot reach the API server to {doing}: {_first_line(_reason(exc))}",
                                   UNREACHABLE)
    if name == "ConfigException":
        return ClusterCommandError(f"kubeconfig: {_first_line(exc)}", NO_KUBECONFIG)
    reason = getattr(exc, "reason", None) or exc
    return ClusterCommandError(f"could not {doing}{where}: {status or ''} {_first_line(reason)}".replace("  ", " "),
                               CHECK_FAILED)


def _reason(exc: BaseException) -> object:
    # urllib3's MaxRetryError wraps the real cause in .reason
    reason = getattr(exc, "reason", None)
    return reason if reason is not None else exc
