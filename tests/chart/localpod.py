"""Run a rendered pod's container as a local process, wired the way the kubelet would wire it.

What is taken from the manifest unchanged: the command and arguments, every environment variable
(``$(VAR)`` references and downward-API fields resolved), the container ports and the probes.
What is mapped, as a pod's own network and volumes would isolate it: each volume becomes a
temporary directory (a PVC is one directory shared by every pod naming the claim), each container
port becomes a free local port, and the broker address becomes the test session's broker.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from ppg_mi.local.kafka import free_port

from .chartlib import REPO
from .podenv import resolve_env

ENTRYPOINT = "ppg-mi"
BIND_ADDRESSES = ("PPG_MI_METRICS_HOST", "PPG_MI_DASHBOARD_HOST")


def image_env(dockerfile: Path = REPO / "images" / "Dockerfile") -> dict[str, str]:
    """The ENV of the Dockerfile's last stage (what every container starts with)."""
    lines, joined = dockerfile.read_text().splitlines(), []
    buf = ""
    for line in lines:
        if line.strip().startswith("#"):
            continue
        buf += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            joined.append(buf.strip())
            buf = ""
    env: dict[str, str] = {}
    for instruction in joined:
        if instruction.upper().startswith("FROM "):
            env = {}
        elif instruction.upper().startswith("ENV "):
            for pair in shlex.split(instruction[4:]):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


class LocalPod:
    """A rendered pod's first container as a local process (``python -m ppg_mi``)."""

    def __init__(self, obj: dict, pod_spec: dict, *, pod_name: str, bootstrap: str, root: Path,
                 claims_root: Path, annotations: dict[str, str] | None = None) -> None:
        self.obj = obj
        self.name = pod_name
        self.pod_spec = pod_spec
        self.container = pod_spec["containers"][0]
        self.grace = pod_spec.get("terminationGracePeriodSeconds", 30)
        root.mkdir(parents=True, exist_ok=True)
        volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
        self.mounts: dict[str, Path] = {}
        self.read_only_mounts: set[str] = set()
        for mount in self.container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if "persistentVolumeClaim" in volume:
                host = claims_root / volume["persistentVolumeClaim"]["claimName"]
            elif "emptyDir" in volume:
                host = root / "volumes" / mount["name"]
            else:
                raise AssertionError(f"{pod_name}: volume {mount['name']} ({sorted(volume)}) has no local mapping")
            if not host.exists():
                host.mkdir(parents=True)
                # the kubelet creates an emptyDir (and a fresh hostPath claim here) world-writable
                host.chmod(0o777)
            self.mounts[mount["mountPath"]] = host
            if mount.get("readOnly"):
                self.read_only_mounts.add(mount["mountPath"])
        self.ports = {p["name"]: (p["containerPort"], free_port()) for p in self.container.get("ports", [])}
        by_number = {str(c): str(h) for c, h in self.ports.values()}
        self.pod_env = resolve_env(self.container, pod_name=pod_name, annotations=annotations)
        for key, value in list(self.pod_env.items()):
            if key == "PPG_MI_KAFKA_BOOTSTRAP_SERVERS":
                self.pod_env[key] = bootstrap
            elif key in BIND_ADDRESSES and value == "0.0.0.0" and not pod_spec.get("hostNetwork"):
                # every interface of the pod's own network; here the host's network is shared
                self.pod_env[key] = "127.0.0.1"
            elif key.endswith("_PORT") and value in by_number:
                self.pod_env[key] = by_number[value]
        command = self.container["command"]
        assert command[0] == ENTRYPOINT, f"{pod_name}: command {command} does not run the image's entrypoint"
        self.log_path = root / f"{pod_name}.log"
        self._log = self.log_path.open("ab")
        self.proc = self._launch(command, self.container.get("args", []), cwd=root)

    def _launch(self, command: list[str], args: list[str], *, cwd: Path) -> subprocess.Popen:
        env = {key: self._host_path(value) for key, value in {**image_env(), **self.pod_env}.items()}
        env["PATH"] = os.environ["PATH"]
        self.env = env
        # `ppg-mi` is the console script of the package; the module form runs the same main()
        self.argv = [sys.executable, "-m", "ppg_mi", *command[1:], *args]
        return subprocess.Popen(self.argv, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                cwd=env.get("HOME", str(cwd)))

    def _host_path(self, value: str) -> str:
        for mount, host in self.mounts.items():
            if value == mount or value.startswith(mount.rstrip("/") + "/"):
                return str(host) + value[len(mount.rstrip("/")):]
        return value

    def host_path(self, mount_path: str) -> Path:
        return self.mounts[mount_path]

    def port(self, name_or_number: str | int) -> int:
        for name, (container_port, host_port) in self.ports.items():
            if name_or_number in (name, container_port):
                return host_port
        raise AssertionError(f"{self.name}: no container port {name_or_number!r}")

    def get(self, port: str | int, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port(port)}{path}", timeout=3) as r:
                return r.status, r.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")
        except OSError:
            return 0, ""

    def probes(self) -> dict[str, dict]:
        """The container's probes by kind (startupProbe, livenessProbe, readinessProbe)."""
        return {k: self.container[k] for k in ("startupProbe", "livenessProbe", "readinessProbe") if k in self.container}

    def probe_ok(self, kind: str) -> bool:
        probe = self.container[kind]
        if "exec" in probe:
            return self.exec(probe["exec"]["command"], timeout=probe.get("timeoutSeconds", 1) + 10).returncode == 0
        return self.get(probe["httpGet"]["port"], probe["httpGet"]["path"])[0] == 200

    def exec(self, command: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
        """Run ``command`` as the kubelet runs an exec probe: in the container, with its environment."""
        assert command[0] == ENTRYPOINT, f"{self.name}: exec {command} does not run the image's entrypoint"
        return subprocess.run([sys.executable, "-m", "ppg_mi", *command[1:]], env=self.env, capture_output=True,
                              text=True, timeout=timeout, cwd=self.env.get("HOME"))

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
        return True

    def terminate(self) -> int:
        """SIGTERM, as the kubelet sends it; the process must exit within the grace period."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(self.grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"{self.name} did not stop within terminationGracePeriodSeconds={self.grace}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()
