"""Rendering the chart with the real ``helm`` and validating objects offline.

Everything here is plain functions used by the chart tests: where helm and the shared
schemas are, ``helm template`` into Python objects, strict validation of core kinds
(``kubernetes-validate``) and of custom resources (the ``openAPIV3Schema`` of the CRD
version each object names, loaded from ``../shared/crds/`` at test time).
"""

from __future__ import annotations

import copy
import functools
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterable, Iterator

import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "ppg-mi"
# the Kubernetes version the chart is rendered and validated for (kubernetes-validate's schemas)
KUBE_VERSION = "1.35.0"
RELEASE = "ppg"
NAMESPACE = "ppg-mi"


class MissingTool(RuntimeError):
    """A tool or data directory the chart tests need is not installed."""


def helm_binary() -> str:
    """The pinned helm of scripts/bootstrap.sh (cache), else the one on PATH."""
    cache = Path(os.environ.get("PPG_MI_CACHE_DIR") or Path.home() / ".cache" / "ppg-mi")
    for candidate in (cache / "bin" / "helm", shutil.which("helm")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise MissingTool(f"helm not found in {cache / 'bin'} nor on PATH: run `make setup` (scripts/bootstrap.sh "
                      "builds the pinned helm with `go install`)")


def shared_dir() -> Path:
    """The project's shared data (CRDs, skaffold schema): $PPG_MI_SHARED_DIR or <repo>/../shared."""
    candidates = [Path(os.environ["PPG_MI_SHARED_DIR"])] if os.environ.get("PPG_MI_SHARED_DIR") else [
        REPO.parent / "shared", Path("/work/shared")]  # beside the checkout, or the workplace's copy
    path = next((c for c in candidates if (c / "crds").is_dir()), candidates[0])
    if not (path / "crds").is_dir():
        raise MissingTool(f"shared schemas not found at {path} (expected crds/ and schemas/ there); "
                          "set PPG_MI_SHARED_DIR to the directory that holds them")
    return path


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([helm_binary(), *args], capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def write_values(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def render(values_files: Iterable[Path] = (), *, release: str = RELEASE, namespace: str = NAMESPACE,
           check: bool = True, extra: Iterable[str] = ()) -> list[dict] | subprocess.CompletedProcess:
    """``helm template`` the chart; the list of rendered objects (test hooks included)."""
    args = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION]
    for f in values_files:
        args += ["-f", str(f)]
    result = helm(*args, *extra, check=check)
    if not check:
        return result
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


# --- querying rendered objects -------------------------------------------------------------------
def of_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def by_name(objects: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_spec(obj: dict) -> dict | None:
    if obj["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        return obj["spec"]["template"]["spec"]
    if obj["kind"] == "Pod":
        return obj["spec"]
    return None


def workloads(objects: list[dict]) -> Iterator[tuple[dict, dict]]:
    for obj in objects:
        spec = pod_spec(obj)
        if spec is not None:
            yield obj, spec


def pod_labels(obj: dict) -> dict:
    return obj["metadata"]["labels"] if obj["kind"] == "Pod" else obj["spec"]["template"]["metadata"]["labels"]


def env_map(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# --- validation ------------------------------------------------------------------------------------
def validate_core(obj: dict) -> None:
    """Strict validation (unknown fields fail) of a built-in kind against KUBE_VERSION's schema."""
    import kubernetes_validate

    kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def _strict(schema: Any) -> Any:
    """Reject unknown fields the way `kubectl apply --validate=strict` does for CRD objects.

    A structural CRD schema prunes unknown fields instead of rejecting them; a misspelt field would
    silently vanish on the cluster. Here every object schema with declared properties (and not marked
    to keep unknown fields) gets ``additionalProperties: false``.
    """
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.lru_cache(maxsize=None)
def crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) → strict openAPIV3Schema of every served version of the shared CRDs."""
    found: dict[tuple[str, str], dict] = {}
    for path in sorted((shared_dir() / "crds").glob("*/*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            group = doc["spec"]["group"]
            kind = doc["spec"]["names"]["kind"]
            for version in doc["spec"]["versions"]:
                if version.get("served"):
                    schema = version["schema"]["openAPIV3Schema"]
                    found[(f"{group}/{version['name']}", kind)] = _strict(copy.deepcopy(schema))
    if not found:
        raise MissingTool(f"no CustomResourceDefinitions under {shared_dir() / 'crds'}")
    return found


DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def validate_custom(obj: dict) -> None:
    key = (obj["apiVersion"], obj["kind"])
    schemas = crd_schemas()
    if key not in schemas:
        served = sorted(f"{a} {k}" for a, k in schemas)
        raise AssertionError(f"{key} is not served by any shared CRD (served: {served})")
    jsonschema.Draft7Validator(schemas[key]).validate(obj)
    meta = obj["metadata"]
    # what the API server checks of every object's metadata
    assert DNS_SUBDOMAIN.match(meta["name"]) and len(meta["name"]) <= 253, f"bad name {meta['name']!r}"
    for k, v in (meta.get("labels") or {}).items():
        assert LABEL_VALUE.match(str(v)) and len(str(v)) <= 63, f"bad label value {k}={v!r}"


def is_custom(obj: dict) -> bool:
    group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
    return group.endswith((".strimzi.io", "keda.sh", "monitoring.coreos.com")) or group in (
        "kafka.strimzi.io", "keda.sh", "monitoring.coreos.com")


def validate_object(obj: dict) -> None:
    if is_custom(obj):
        validate_custom(obj)
    else:
        validate_core(obj)
