"""Run a rendered pod's container from the project image with podman, as the kubelet would run it.

Taken from the manifest: the command (the image's entrypoint replaced, as Kubernetes does) and
arguments, the environment, the user, group and fsGroup, the read-only root filesystem, the dropped
capabilities, no privilege escalation, the memory limit and every volume mount (read-only where the
manifest says so). podman is told not to add its own tmpfs mounts to a read-only container, so a
path the chart forgot to mount stays unwritable, as it is on a node. Mapped as in ``LocalPod``:
volumes to host directories, container ports to free local ports (the pod shares the host network,
as on a single node without a pod network), and the broker address to the tests' broker.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

from ..chart.localpod import LocalPod

_MEMORY_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}


def memory_bytes(quantity: str) -> int:
    for suffix, factor in _MEMORY_UNITS.items():
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(quantity)


class ContainerPod(LocalPod):
    def __init__(self, obj: dict, pod_spec: dict, *, image: str, podman: list[str], **kwargs) -> None:
        self.image = image
        self.podman = podman
        self.container_name = f"ppg-mi-test-{uuid.uuid4().hex[:10]}"
        super().__init__(obj, pod_spec, **kwargs)

    def security(self) -> dict:
        """The effective security context: the container's settings over the pod's."""
        return {**self.pod_spec.get("securityContext", {}), **self.container.get("securityContext", {})}

    def _launch(self, command: list[str], args: list[str], *, cwd: Path) -> subprocess.Popen:
        sc = self.security()
        uid, gid = sc.get("runAsUser"), sc.get("runAsGroup")
        assert uid is not None, f"{self.name}: no runAsUser; the pod would run as the image's user"
        if sc.get("runAsNonRoot"):
            assert uid != 0, f"{self.name}: runAsNonRoot with runAsUser 0 is refused by the kubelet"
        argv = [*self.podman, "run", "--rm", "--name", self.container_name, "--network=host",
                "--user", f"{uid}:{gid if gid is not None else uid}", "--entrypoint", command[0]]
        if sc.get("fsGroup") is not None:
            argv += ["--group-add", str(sc["fsGroup"])]
        if sc.get("readOnlyRootFilesystem"):
            argv += ["--read-only", "--read-only-tmpfs=false"]
        if sc.get("allowPrivilegeEscalation") is False:
            argv += ["--security-opt=no-new-privileges"]
        for cap in sc.get("capabilities", {}).get("drop", []):
            argv += ["--cap-drop", cap]
        if sc.get("privileged"):
            argv += ["--privileged"]
        limit = self.container.get("resources", {}).get("limits", {}).get("memory")
        if limit:
            argv += ["--memory", str(memory_bytes(limit))]
        for mount_path, host in self.mounts.items():
            mode = "ro" if mount_path in self.read_only_mounts else "rw"
            argv += ["-v", f"{host}:{mount_path}:{mode}"]
        for key, value in self.pod_env.items():
            argv += ["-e", f"{key}={value}"]
        self.env = dict(self.pod_env)
        self.argv = [*argv, self.image, *command[1:], *args]
        return subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def exec(self, command: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
        """``podman exec``: the command in the running container, as the kubelet runs an exec probe."""
        return subprocess.run([*self.podman, "exec", self.container_name, *command], capture_output=True,
                              text=True, timeout=timeout)

    def host_path(self, mount_path: str) -> Path:
        return self.mounts[mount_path]

    def terminate(self) -> int:
        """SIGTERM to the container's main process, as the kubelet sends it; exit within the grace period."""
        if self.proc.poll() is None:
            subprocess.run([*self.podman, "kill", "--signal", "TERM", self.container_name],
                           capture_output=True, timeout=30)
        try:
            return self.proc.wait(self.grace)
        except subprocess.TimeoutExpired:
            self.close()
            raise AssertionError(f"{self.name} did not stop within terminationGracePeriodSeconds={self.grace}")

    def close(self) -> None:
        if self.proc.poll() is None:
            subprocess.run([*self.podman, "rm", "--force", "--time", "0", self.container_name],
                           capture_output=True, timeout=60)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
