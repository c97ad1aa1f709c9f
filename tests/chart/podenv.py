"""A container's environment as the kubelet would build it, for running rendered pods locally.

Implements the parts of Kubernetes' env semantics the chart uses: plain values with ``$(VAR)``
references to variables defined earlier in the list (``$$`` escapes a ``$``), ``fieldRef`` to the
pod's name, namespace and annotations (the downward API), and ``secretKeyRef`` through a callback.
"""

from __future__ import annotations

import re
from typing import Callable

_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_ANNOTATION = re.compile(r"^metadata\.annotations\['([^']+)'\]$")


def expand(value: str, defined: dict[str, str]) -> str:
    """Kubernetes' dependent-variable expansion: unknown references stay as written."""

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        return defined.get(m.group(1), m.group(0))

    return _REF.sub(sub, value)


def resolve_env(container: dict, *, pod_name: str, namespace: str = "test",
                annotations: dict[str, str] | None = None,
                secrets: Callable[[str, str], str] | None = None) -> dict[str, str]:
    """``name → value`` of ``container``'s env, in order, references resolved."""
    annotations = {"batch.kubernetes.io/job-completion-index": "0", **(annotations or {})}
    out: dict[str, str] = {}
    for entry in container.get("env", []):
        name = entry["name"]
        if "value" in entry:
            out[name] = expand(str(entry["value"]), out)
            continue
        source = entry["valueFrom"]
        if "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            if path == "metadata.name":
                out[name] = pod_name
            elif path == "metadata.namespace":
                out[name] = namespace
            elif m := _ANNOTATION.match(path):
                out[name] = annotations[m.group(1)]
            else:
                raise AssertionError(f"{name}: fieldRef {path} is not supported by this resolver")
        elif "secretKeyRef" in source:
            if secrets is None:
                raise AssertionError(f"{name} comes from Secret {source['secretKeyRef']['name']}: no secrets here")
            out[name] = secrets(source["secretKeyRef"]["name"], source["secretKeyRef"]["key"])
        else:
            raise AssertionError(f"{name}: unsupported valueFrom {sorted(source)}")
    return out
