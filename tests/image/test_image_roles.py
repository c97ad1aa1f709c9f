"""Every role of the chart, run from the project image the way the rendered chart runs it.

The training Job writes the model onto the claim, the filter and classifier StatefulSets take the
producer Job's recordings to ``ppg.predictions`` exactly once, the dashboard serves its page and
probes, and SIGTERM ends each container with status 0: all under the chart's user, read-only root
filesystem, dropped capabilities and volume mounts, against the tests' broker on the host network.
Negative controls prove that a chart the image does not support fails here.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from collections import Counter
from pathlib import Path

import pytest

from ppg_mi.config import Settings
from ppg_mi.streaming.codec import decode_prediction

from ..chart import chartlib as cl
from ..chart import rendered
from ..helpers import read_topic, wait_for
from ..conftest import ProjectImage
from .containerpod import ContainerPod

pytestmark = [pytest.mark.image, pytest.mark.chart, pytest.mark.integration, pytest.mark.e2e]


def _values(tag: str, seed: int, records: int, **overrides: dict) -> dict:
    """The pipeline as a single node without a pod network runs it: on the host network (the broker
    is the tests' one on 127.0.0.1), each process on a free port, probed by `ppg-mi probe`."""
    values = rendered.pipeline_values(tag, seed, records)
    values["training"] = {"synthetic": 60, "seed": seed % 1000, "folds": 0}
    values["hostNetwork"] = {"enabled": True, "address": "127.0.0.1"}
    values["monitoring"] = {"podMonitors": {"enabled": False}}
    values.update(overrides)
    return values


#: each file of a numba cache (the directory in argv[1]), its digest and modification time: a kernel
#: compiled anew is written anew, even when its bytes come out the same
_LISTING = ("import hashlib, json, pathlib, sys; root = pathlib.Path(sys.argv[1]); "
            "print(json.dumps({str(f.relative_to(root)): [hashlib.sha256(f.read_bytes()).hexdigest(), "
            "f.stat().st_mtime_ns] for f in root.rglob('*') if f.is_file()}))")


def _numba_cache(pod: ContainerPod, variable: str) -> dict[str, list]:
    """:data:`_LISTING` of the directory the container's ``variable`` names, read inside the container."""
    done = pod.exec(["sh", "-c", f'exec python -c "{_LISTING}" "${variable}"'])
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _component(objects: list[dict], component: str) -> dict:
    (obj,) = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet", "Job")
              and cl.pod_labels(o)["app.kubernetes.io/component"] == component]
    return obj


def _claim_dir(claims: Path, obj: dict, volume: str, owner: int) -> Path:
    """The claim's directory as a hostPath PersistentVolume provides it: owned by the image's user
    (hostPath ignores fsGroup, docs/kubernetes.md), not writable by anyone else."""
    name = next(v["persistentVolumeClaim"]["claimName"] for v in cl.pod_spec(obj)["volumes"] if v["name"] == volume)
    path = claims / name
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, owner, owner)
    path.chmod(0o755)
    return path


def test_image_runs_every_role_under_the_chart_settings(kafka_bootstrap: str, project_image: ProjectImage,
                                                         tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    seed = random.randrange(1000, 10**6)
    records = 32
    objects = cl.render([cl.write_values(tmp_path / "values.yaml", _values(tag, seed, records))])
    rendered.create_topics(objects, kafka_bootstrap)
    rendered.warm_group_coordinator(kafka_bootstrap, f"raw-{tag}")
    claims = tmp_path / "claims"
    training = _component(objects, "training")
    models = _claim_dir(claims, training, "models", project_image.uid)

    def run(obj: dict, name: str, **kwargs) -> ContainerPod:
        pod = ContainerPod(obj, cl.pod_spec(obj), image=project_image.name, podman=project_image.podman,
                           pod_name=name, bootstrap=kafka_bootstrap, root=tmp_path / name, claims_root=claims,
                           **kwargs)
        pods.append(pod)
        return pod

    pods: list[ContainerPod] = []
    try:
        trainer = run(training, f"{training['metadata']['name']}-t4x9q")
        assert trainer.proc.wait(600) == 0, trainer.log()
        version = (models / "current").read_text().strip()
        assert (models / version).is_dir(), f"`current` names {version}, which the Job did not write"

        services = [run(_component(objects, c), f"{_component(objects, c)['metadata']['name']}-5d9c7-{c[:2]}0")
                    for c in ("filter", "classifier", "dashboard")]
        for pod in services:
            wait_for(lambda: pod.alive() and pod.probe_ok("readinessProbe"), 240, interval=1, what=f"{pod.name} ready")
        classifier = services[1]
        compiled_ahead = _numba_cache(classifier, "PPG_MI_NUMBA_CACHE_SEED_DIR")
        assert compiled_ahead, "the image holds no numba cache compiled ahead (PPG_MI_NUMBA_CACHE_SEED_DIR)"
        assert _numba_cache(classifier, "PPG_MI_NUMBA_CACHE_DIR") == compiled_ahead, \
            "the classifier compiled kernels anew instead of loading those its image compiled ahead"

        job = _component(objects, "producer")
        shards = [run(job, f"{job['metadata']['name']}-{i}-x7k2p",
                      annotations={"batch.kubernetes.io/job-completion-index": str(i)})
                  for i in range(job["spec"]["completions"])]
        for shard in shards:
            assert shard.proc.wait(180) == 0, shard.log()

        settings = Settings.from_env({}, kafka_bootstrap_servers=kafka_bootstrap,
                                     topic_raw=f"raw-{tag}", topic_predictions=f"predictions-{tag}")
        raw = read_topic(settings, settings.topic_raw, records, timeout=60)
        predictions = read_topic(settings, settings.topic_predictions, records, timeout=240)

        dashboard = services[2]
        for pod in services:
            pod.alive()
            rendered.check_endpoints(pod, objects)
        status, page = dashboard.get("http", "/")
        assert status == 200 and "<html" in page.lower(), f"dashboard page answered {status}"
        for pod in services:
            assert pod.terminate() == 0, f"{pod.name} after SIGTERM:\n{pod.log()}"
    finally:
        for pod in pods:
            pod.close()

    expected = {f"synth{seed}-{i}" for i in range(records)}
    assert sorted(r.key for r in raw) == sorted(expected), "each shard sent its part, together all, once"
    counts = Counter(p.key for p in predictions)
    assert set(counts) == expected and set(counts.values()) == {1}, "every record predicted exactly once"
    assert {decode_prediction(p.value).model_version for p in predictions} == {version}


def test_image_refuses_a_user_its_volumes_do_not_belong_to(kafka_bootstrap: str, project_image: ProjectImage,
                                                           tmp_path: Path) -> None:
    """Negative control: the chart's user changed (securityContext), the claim still the image user's."""
    other = project_image.uid + 1
    values = _values(uuid.uuid4().hex[:8], 1, 4, securityContext={"runAsUser": other, "runAsGroup": other,
                                                                   "fsGroup": other})
    objects = cl.render([cl.write_values(tmp_path / "values.yaml", values)])
    training = _component(objects, "training")
    claims = tmp_path / "claims"
    models = _claim_dir(claims, training, "models", project_image.uid)
    pod = ContainerPod(training, cl.pod_spec(training), image=project_image.name, podman=project_image.podman,
                       pod_name="training-other-user", bootstrap=kafka_bootstrap, root=tmp_path / "pod",
                       claims_root=claims)
    try:
        code = pod.proc.wait(600)
    finally:
        pod.close()
    assert code != 0 and "Permission denied" in pod.log(), f"exit {code}:\n{pod.log()}"
    assert not (models / "current").exists()


def test_image_refuses_a_cache_volume_mounted_elsewhere(kafka_bootstrap: str, project_image: ProjectImage,
                                                        tmp_path: Path) -> None:
    """Negative control: the classifier's numba cache volume mounted away from PPG_MI_NUMBA_CACHE_DIR.

    On the read-only root the configured directory cannot be written: the pod must stop with a
    clear error instead of compiling into whatever else happens to be writable.
    """
    objects = cl.render([cl.write_values(tmp_path / "values.yaml", _values(uuid.uuid4().hex[:8], 1, 4))])
    rendered.create_topics(objects, kafka_bootstrap)
    classifier = _component(objects, "classifier")
    spec = cl.pod_spec(classifier)
    (cache,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "numba-cache"]
    cache["mountPath"] = "/var/cache/numba"
    pod = ContainerPod(classifier, spec, image=project_image.name, podman=project_image.podman,
                       pod_name="classifier-cache-elsewhere", bootstrap=kafka_bootstrap, root=tmp_path / "pod",
                       claims_root=tmp_path / "claims")
    try:
        code = pod.proc.wait(120)
    finally:
        pod.close()
    assert code == 2, f"exit {code}:\n{pod.log()}"
    assert "PPG_MI_NUMBA_CACHE_DIR=/var/cache/ppg-mi/numba is not writable" in pod.log()
