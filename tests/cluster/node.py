"""A real single-node Kubernetes cluster on 127.0.0.1, for the cluster test tier.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and the kubelet are the binaries
``scripts/cluster/build.sh`` builds from the Go module proxy; the kubelet runs Debian's containerd
(its own config, socket, root and state in a temporary directory, so a system containerd is never
touched) with runc. Every server listens on 127.0.0.1 on a free port. There is no pod network,
kube-proxy or cluster DNS: pods that serve or reach anything run with ``hostNetwork: true``; any
other pod gets a network namespace of its own with ``lo`` only (Debian's CNI ``loopback`` plugin
and a tiny ``ppg-mi-isolated`` plugin that creates nothing and reports 127.0.0.1 as the pod IP). ``stop()`` kills every process it started (containers included), unmounts
everything under its directory, removes the cgroups the kubelet created and deletes the directory.

    cluster = SingleNodeCluster(workdir)
    cluster.start()
    cluster.import_image("image.tar")        # `podman save` / docker-archive or OCI archive
    core = cluster.core_v1()
    ...
    cluster.stop()
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import textwrap
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Callable

K8S_VERSION = os.environ.get("PPG_MI_K8S_VERSION", "v1.37.2")
PAUSE_IMAGE = "localhost/ppg-mi/pause:1"
NODE_NAME = "localhost"  # resolves to 127.0.0.1 everywhere: the API server reaches the kubelet by it
SERVICE_CIDR = "198.51.100.0/24"  # TEST-NET-2: documentation only; no kube-proxy, so no traffic
SERVICE_IP = "198.51.100.1"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "pause")
CGROUP_FS_TYPES = ("cgroup", "cgroup2")
# host paths the kubelet, containerd and its shims create whatever they are told (fixed in their
# code): removed at stop when empty and absent before start, deepest first
HOST_DIRS = ("/var/lib/kubelet/device-plugins", "/var/lib/kubelet", "/var/lib/cni/results", "/var/lib/cni",
             "/var/log/containers", "/run/containerd/s", "/run/containerd")
# host paths that only a wrong flag would create: reported as left behind if they appear
HOST_WATCH = ("/usr/libexec/kubernetes", "/etc/kubernetes", "/var/log/pods", "/opt/containerd",
              "/var/run/netns", "/run/containerd/runc", "/run/containerd/fifo")
# kernel settings the kubelet sets at start (protectKernelDefaults: false): restored at stop
KUBELET_SYSCTLS = ("vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops")


class ClusterError(RuntimeError):
    """The cluster could not be built, started or stopped cleanly."""


def cache_dir() -> Path:
    return Path(os.environ.get("PPG_MI_CACHE_DIR") or Path.home() / ".cache" / "ppg-mi") / "k8s" / K8S_VERSION


def binaries_missing() -> list[str]:
    bin_dir = cache_dir() / "bin"
    missing = [name for name in BINARIES if not os.access(bin_dir / name, os.X_OK)]
    if not (cache_dir() / "images" / "pause.tar").is_file():
        missing.append("images/pause.tar")
    return missing


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_ip() -> str:
    """The machine's first global non-loopback address: the kubelet refuses a loopback node IP.

    It is only the Node's status address (and a hostNetwork pod's podIP); nothing is sent to it:
    the kubelet listens on 127.0.0.1 and the API server reaches it by the node name, localhost.
    """
    out = subprocess.run(["ip", "-j", "addr", "show"], check=True, capture_output=True, text=True).stdout
    candidates: list[tuple[int, str]] = []
    for link in json.loads(out):
        if "LOOPBACK" in link.get("flags", []) or "UP" not in link.get("flags", []):
            continue
        for addr in link.get("addr_info", []):
            if addr.get("scope") == "global":
                candidates.append((0 if addr["family"] == "inet" else 1, addr["local"]))
    if not candidates:
        raise ClusterError("no global non-loopback address for the node's status (kubelet refuses loopback)")
    return sorted(candidates)[0][1]


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.25,
             on_timeout: Callable[[], str] | None = None):
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - polled conditions fail until they pass
            last_error = exc
        time.sleep(interval)
    detail = f" (last error: {last_error!r})" if last_error else ""
    extra = f"\n{on_timeout()}" if on_timeout else ""
    raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}{detail}{extra}")


def mounts() -> list[tuple[str, str]]:
    """(mount point, fs type) for every mount in this mount namespace, from /proc/self/mountinfo."""
    result = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            point = fields[4].encode().decode("unicode_escape")
            result.append((point, fields[sep + 1]))
    return result


def _iptables_chains() -> dict[tuple[str, str], set[str]]:
    """User chains per (command, table), to notice any the kubelet adds."""
    chains: dict[tuple[str, str], set[str]] = {}
    for cmd in ("iptables", "ip6tables"):
        if not shutil.which(cmd, path="/usr/sbin:/sbin:/usr/bin:/bin"):
            continue
        for table in ("filter", "nat", "mangle"):
            proc = subprocess.run([cmd, "-t", table, "-S"], capture_output=True, text=True)
            if proc.returncode == 0:
                chains[(cmd, table)] = {line.split()[1] for line in proc.stdout.splitlines()
                                        if line.startswith("-N ")}
    return chains


def _iptables_remove_chain(cmd: str, table: str, chain: str) -> None:
    rules = subprocess.run([cmd, "-t", table, "-S"], capture_output=True, text=True).stdout.splitlines()
    for rule in rules:
        parts = shlex.split(rule)
        if parts[:1] == ["-A"] and "-j" in parts and parts[parts.index("-j") + 1] == chain:
            subprocess.run([cmd, "-t", table, "-D", *parts[1:]], capture_output=True)
    subprocess.run([cmd, "-t", table, "-F", chain], capture_output=True)
    subprocess.run([cmd, "-t", table, "-X", chain], capture_output=True)


def _running(comm: str) -> bool:
    """Whether a live (not zombie) process has this command name."""
    for pid in _pids():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat.split("(", 1)[1].rsplit(")", 1)[0] == comm and stat.rsplit(")", 1)[1].split()[0] not in "ZX":
                return True
        except OSError:
            pass
    return False


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(roots: set[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid in _pids():
        parent = _ppid(pid)
        if parent is not None:
            children.setdefault(parent, []).append(pid)
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


class SingleNodeCluster:
    """etcd, the control plane, containerd and a kubelet on 127.0.0.1, in one temporary directory."""

    def __init__(self, workdir: Path | str | None = None, *, start_timeout: float = 180.0):
        self.bin = cache_dir() / "bin"
        self.pause_tar = cache_dir() / "images" / "pause.tar"
        # unix socket paths must stay under 108 bytes: keep the directory short
        self.dir = Path(tempfile.mkdtemp(prefix="ppgk8s-", dir=workdir or None))
        self.tag = uuid.uuid4().hex[:8]
        self.cgroup_root = f"/ppg-mi-{self.tag}"
        self.start_timeout = start_timeout
        self.procs: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}
        self.node_ip = ""
        self.timings: dict[str, float] = {}
        self._api = None
        self._stopped = False
        self._t0 = time.monotonic()

    # --- paths -------------------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        """Cluster-admin (system:masters) kubeconfig: for helm, kubectl and the Python client."""
        return self.dir / "admin.kubeconfig"

    @property
    def containerd_socket(self) -> Path:
        return self.dir / "containerd.sock"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    def log(self, name: str) -> Path:
        return self.dir / "logs" / f"{name}.log"

    def env(self) -> dict[str, str]:
        """Environment for helm/kubectl subprocesses talking to this cluster only."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        return env

    # --- start -------------------------------------------------------------------------------
    def start(self) -> "SingleNodeCluster":
        missing = binaries_missing()
        if missing:
            raise ClusterError(
                f"cluster binaries missing in {self.bin} ({', '.join(missing)}): "
                "run scripts/cluster/build.sh (and scripts/cluster/install-packages.sh)"
            )
        for tool in ("containerd", "containerd-shim-runc-v2", "ctr", "runc", "openssl"):
            if not shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
                raise ClusterError(f"{tool} not found: run scripts/cluster/install-packages.sh")
        if not Path("/usr/lib/cni/loopback").exists():
            raise ClusterError("/usr/lib/cni/loopback missing: run scripts/cluster/install-packages.sh")
        t0 = self._t0 = time.monotonic()
        self._host_before = {
            "dirs": {d for d in HOST_DIRS + HOST_WATCH if os.path.lexists(d)},
            "sysctls": {k: Path("/proc/sys", k).read_text() for k in KUBELET_SYSCTLS},
            "chains": _iptables_chains(),
        }
        self._write_state()
        try:
            (self.dir / "logs").mkdir()
            for name in ("etcd_client", "etcd_peer", "apiserver", "controller_manager", "scheduler",
                         "kubelet", "kubelet_healthz"):
                self.ports[name] = free_port()
            self.node_ip = node_ip()
            self._pki()
            self._start_etcd()
            self._start_apiserver()
            self._start_containerd()
            self._start_controller_manager()
            self._start_scheduler()
            self._start_kubelet()
            self._wait_node_ready()
        except BaseException:
            self.stop()
            raise
        self.timings["ready_s"] = time.monotonic() - t0
        return self

    def _write_state(self) -> None:
        """What a later clean_stale() needs if this process dies without stop()."""
        before = self._host_before
        state = {
            "owner": os.getpid(),
            "cgroup_root": self.cgroup_root,
            "dirs": sorted(before["dirs"]),
            "sysctls": before["sysctls"],
            "chains": {f"{cmd} {table}": sorted(c) for (cmd, table), c in before["chains"].items()},
        }
        (self.dir / "state.json").write_text(json.dumps(state))

    @classmethod
    def _adopt(cls, path: Path) -> "SingleNodeCluster":
        state = json.loads((path / "state.json").read_text())
        self = cls.__new__(cls)
        self.bin, self.pause_tar, self.dir = cache_dir() / "bin", cache_dir() / "images" / "pause.tar", path
        self.tag, self.cgroup_root = state["cgroup_root"].rsplit("-", 1)[-1], state["cgroup_root"]
        self.start_timeout, self.procs, self.ports, self.node_ip, self.timings = 0, {}, {}, "", {}
        self._api, self._stopped, self._t0 = None, False, time.monotonic()
        self._host_before = {
            "dirs": set(state["dirs"]),
            "sysctls": state["sysctls"],
            "chains": {tuple(k.split()): set(v) for k, v in state["chains"].items()},
        }
        return self

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.log(name), "ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=self.dir, env=env, start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def _tail(self, *names: str, lines: int = 25) -> str:
        out = []
        for name in names or tuple(self.procs):
            try:
                text = self.log(name).read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            out.append(f"--- {name} (last {len(text)} lines of {self.log(name)}) ---\n" + "\n".join(text))
        return "\n".join(out)

    def _check_alive(self, *names: str) -> None:
        for name in names:
            code = self.procs[name].poll()
            if code is not None:
                raise ClusterError(f"{name} exited with {code}\n{self._tail(name, lines=60)}")

    def _openssl(self, *args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=self.dir / "pki")

    def _pki(self) -> None:
        pki = self.dir / "pki"
        pki.mkdir(mode=0o700)
        self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                      "-keyout", "ca.key", "-out", "ca.crt", "-days", "30", "-subj", "/CN=ppg-mi-test-ca")
        self._openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "sa.key")
        self._openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub")
        localhost_sans = "DNS:localhost,IP:127.0.0.1"
        certs = {
            # name: (subject, extendedKeyUsage, subjectAltName)
            "apiserver": ("/CN=kube-apiserver", "serverAuth",
                          f"{localhost_sans},IP:{SERVICE_IP},DNS:kubernetes,DNS:kubernetes.default,"
                          "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"),
            "kubelet-serving": (f"/CN={NODE_NAME}", "serverAuth", f"{localhost_sans},IP:{self.node_ip}"),
            "admin": ("/O=system:masters/CN=ppg-mi-admin", "clientAuth", None),
            "apiserver-kubelet-client": ("/O=system:masters/CN=kube-apiserver-kubelet-client", "clientAuth", None),
            "controller-manager": ("/CN=system:kube-controller-manager", "clientAuth", None),
            "scheduler": ("/CN=system:kube-scheduler", "clientAuth", None),
            "kubelet": (f"/O=system:nodes/CN=system:node:{NODE_NAME}", "clientAuth", None),
            "front-proxy-client": ("/CN=front-proxy-client", "clientAuth", None),
        }
        for name, (subject, usage, sans) in certs.items():
            ext = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
                   f"extendedKeyUsage={usage}"]
            if sans:
                ext.append(f"subjectAltName={sans}")
            (pki / f"{name}.ext").write_text("\n".join(ext) + "\n")
            self._openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                          "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject)
            self._openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                          "-CAcreateserial", "-days", "30", "-out", f"{name}.crt", "-extfile", f"{name}.ext")
        for name in ("admin", "controller-manager", "scheduler", "kubelet"):
            self._write_kubeconfig(self.dir / f"{name}.kubeconfig", name)

    def _write_kubeconfig(self, path: Path, cert: str) -> None:
        pki = self.dir / "pki"
        path.write_text(textwrap.dedent(f"""\
            apiVersion: v1
            kind: Config
            clusters:
            - name: ppg-mi-test
              cluster:
                server: https://127.0.0.1:{self.ports['apiserver']}
                certificate-authority: {pki / 'ca.crt'}
            users:
            - name: {cert}
              user:
                client-certificate: {pki / f'{cert}.crt'}
                client-key: {pki / f'{cert}.key'}
            contexts:
            - name: ppg-mi-test
              context:
                cluster: ppg-mi-test
                user: {cert}
            current-context: ppg-mi-test
            """))
        path.chmod(0o600)

    def _start_etcd(self) -> None:
        client = f"http://127.0.0.1:{self.ports['etcd_client']}"
        peer = f"http://127.0.0.1:{self.ports['etcd_peer']}"
        self._spawn("etcd", [
            str(self.bin / "etcd"), "--name=node", f"--data-dir={self.dir / 'etcd'}",
            f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=node={peer}", "--initial-cluster-state=new",
            "--unsafe-no-fsync", "--log-level=warn",
        ])

        def healthy() -> bool:
            self._check_alive("etcd")
            with urllib.request.urlopen(f"{client}/health", timeout=2) as resp:
                return json.load(resp).get("health") == "true"

        wait_for(healthy, 30, "etcd /health", on_timeout=lambda: self._tail("etcd"))

    def _ssl_context(self) -> ssl.SSLContext:
        pki = self.dir / "pki"
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        return ctx

    def _start_apiserver(self) -> None:
        pki = self.dir / "pki"
        self._spawn("kube-apiserver", [
            str(self.bin / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.ports['etcd_client']}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={self.ports['apiserver']}",
            # the `kubernetes` Service would get 127.0.0.1 as its endpoint, which Endpoints refuse
            "--endpoint-reconciler-type=none",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            "--kubelet-preferred-address-types=Hostname",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            # the aggregation layer's front proxy: without it the controller manager and scheduler
            # log "missing content for CA bundle ... requestheader-client-ca-file" forever
            f"--requestheader-client-ca-file={pki / 'ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            "--profiling=false",
        ])

        def ready() -> bool:
            self._check_alive("kube-apiserver", "etcd")
            req = urllib.request.Request(f"{self.server}/readyz")
            with urllib.request.urlopen(req, timeout=3, context=self._ssl_context()) as resp:
                return resp.status == 200

        wait_for(ready, 90, "kube-apiserver /readyz", interval=0.5,
                 on_timeout=lambda: self._tail("kube-apiserver", "etcd"))
        self.timings["apiserver_ready_s"] = time.monotonic() - self._t0

    def _start_containerd(self) -> None:
        cd = self.dir / "containerd"
        for sub in ("root", "state", "runc", "opt"):
            (cd / sub).mkdir(parents=True)
        cni, cni_bin = self.dir / "cni", self.dir / "cni-bin"
        cni.mkdir()
        cni_bin.mkdir()
        # containerd always runs Debian's `loopback` plugin (the pod's lo), then the configured
        # network, which must name an eth0 with an address. `ppg-mi-isolated` creates nothing: the
        # pod keeps a network namespace with lo only (no route anywhere, not even to the node), and
        # reports 127.0.0.1, the address it really has. The node cannot reach such a pod: probes
        # other than exec would test the node's own loopback, so serving pods use hostNetwork.
        (cni_bin / "loopback").symlink_to("/usr/lib/cni/loopback")
        plugin = cni_bin / "ppg-mi-isolated"
        plugin.write_text(textwrap.dedent("""\
            #!/bin/sh
            # CNI plugin of the ppg-mi test cluster: a pod network namespace with lo only.
            cat >/dev/null
            case "$CNI_COMMAND" in
              ADD) printf '{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"%s"}],'\\
            '"ips":[{"address":"127.0.0.1/8","interface":0}]}' "$CNI_NETNS" ;;
              VERSION) printf '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}' ;;
              *) ;;
            esac
            """))
        plugin.chmod(0o755)
        (cni / "10-isolated.conf").write_text(
            json.dumps({"cniVersion": "1.0.0", "name": "isolated", "type": "ppg-mi-isolated"}) + "\n")
        config = cd / "config.toml"
        config.write_text(textwrap.dedent(f"""\
            version = 2
            root = "{cd / 'root'}"
            state = "{cd / 'state'}"
            disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                                "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                                "io.containerd.tracing.processor.v1.otlp"]

            [grpc]
              address = "{self.containerd_socket}"
            [ttrpc]
              address = ""
            [debug]
              address = ""
            [metrics]
              address = ""

            [plugins."io.containerd.internal.v1.opt"]
              path = "{cd / 'opt'}"
            [plugins."io.containerd.grpc.v1.cri"]
              sandbox_image = "{PAUSE_IMAGE}"
              restrict_oom_score_adj = true
              stream_server_address = "127.0.0.1"
              stream_server_port = "0"
              enable_selinux = false
              netns_mounts_under_state_dir = true
              [plugins."io.containerd.grpc.v1.cri".containerd]
                snapshotter = "overlayfs"
                default_runtime_name = "runc"
                [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
                  runtime_type = "io.containerd.runc.v2"
                  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
                    SystemdCgroup = false
                    Root = "{cd / 'runc'}"
              [plugins."io.containerd.grpc.v1.cri".cni]
                bin_dir = "{cni_bin}"
                conf_dir = "{cni}"
                max_conf_num = 1
            """))
        env = dict(os.environ)
        env["PATH"] = f"/usr/bin:/usr/sbin:/bin:/sbin:{env.get('PATH', '')}"
        self._spawn("containerd", ["containerd", f"--config={config}", "--log-level=warn"], env=env)
        wait_for(lambda: self._check_alive("containerd") or self.containerd_socket.is_socket(), 30,
                 "containerd socket", on_timeout=lambda: self._tail("containerd"))
        self.import_image(self.pause_tar)

    def ctr(self, *args: str, timeout: float = 600) -> str:
        """Run `ctr` against this cluster's containerd in the kubelet's namespace."""
        proc = subprocess.run(["ctr", f"--address={self.containerd_socket}", "--namespace=k8s.io", *args],
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise ClusterError(f"ctr {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def import_image(self, archive: Path | str) -> list[str]:
        """Import a docker-archive (`podman save`, `docker save`) or OCI archive into the node.

        Pods use the image by its tag with ``imagePullPolicy: Never`` (nothing can be pulled).
        Returns the image references the archive carried.
        """
        out = self.ctr("images", "import", str(archive))
        refs = [line.split()[1] for line in out.splitlines() if line.startswith("unpacking ")]
        return refs

    expose_image = import_image

    def _start_controller_manager(self) -> None:
        pki = self.dir / "pki"
        kc = self.dir / "controller-manager.kubeconfig"
        self._spawn("kube-controller-manager", [
            str(self.bin / "kube-controller-manager"),
            f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1", f"--secure-port={self.ports['controller_manager']}",
            f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
            "--use-service-account-credentials=true", "--leader-elect=false",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--flex-volume-plugin-dir={self.dir / 'volume-plugins'}",  # else /usr/libexec/kubernetes
            "--profiling=false",
        ])

    def _start_scheduler(self) -> None:
        kc = self.dir / "scheduler.kubeconfig"
        self._spawn("kube-scheduler", [
            str(self.bin / "kube-scheduler"),
            f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1", f"--secure-port={self.ports['scheduler']}", "--leader-elect=false",
            "--profiling=false",
        ])

    def _v1_cgroup_mounts(self) -> list[Path]:
        return [Path(point) for point, fstype in mounts() if fstype in CGROUP_FS_TYPES]

    def _make_cgroup_root(self) -> None:
        """The kubelet's --cgroup-root must exist in every hierarchy; a private one per cluster."""
        for mount in self._v1_cgroup_mounts():
            path = mount / self.cgroup_root.lstrip("/")
            path.mkdir(exist_ok=True)
            for knob in ("cpuset.cpus", "cpuset.mems"):
                if (path / knob).exists() and not (path / knob).read_text().strip():
                    (path / knob).write_text((mount / knob).read_text())

    def _start_kubelet(self) -> None:
        pki = self.dir / "pki"
        root = self.dir / "kubelet"
        root.mkdir()
        (self.dir / "pod-logs").mkdir()
        self._make_cgroup_root()
        config = self.dir / "kubelet-config.yaml"
        config.write_text(textwrap.dedent(f"""\
            apiVersion: kubelet.config.k8s.io/v1beta1
            kind: KubeletConfiguration
            failCgroupV1: false
            cgroupDriver: cgroupfs
            cgroupRoot: {self.cgroup_root}
            containerRuntimeEndpoint: unix://{self.containerd_socket}
            address: 127.0.0.1
            port: {self.ports['kubelet']}
            readOnlyPort: 0
            healthzBindAddress: 127.0.0.1
            healthzPort: {self.ports['kubelet_healthz']}
            tlsCertFile: {pki / 'kubelet-serving.crt'}
            tlsPrivateKeyFile: {pki / 'kubelet-serving.key'}
            authentication:
              anonymous:
                enabled: false
              webhook:
                enabled: true
              x509:
                clientCAFile: {pki / 'ca.crt'}
            authorization:
              mode: Webhook
            failSwapOn: false
            # not the host's firewall: no KUBE-FIREWALL / canary chains (nothing here needs them)
            makeIPTablesUtilChains: false
            volumePluginDir: {self.dir / 'volume-plugins'}
            podLogsDir: {self.dir / 'pod-logs'}
            serializeImagePulls: false
            evictionHard:
              memory.available: "100Mi"
              nodefs.available: "1%"
              imagefs.available: "1%"
            imageGCHighThresholdPercent: 100
            imageGCLowThresholdPercent: 99
            syncFrequency: 10s
            fileCheckFrequency: 10s
            nodeStatusUpdateFrequency: 5s
            """))
        self._spawn("kubelet", [
            str(self.bin / "kubelet"), f"--config={config}",
            f"--kubeconfig={self.dir / 'kubelet.kubeconfig'}",
            f"--root-dir={root}", f"--cert-dir={pki}",
            f"--hostname-override={NODE_NAME}", f"--node-ip={self.node_ip}",
        ])

    def _wait_node_ready(self) -> None:
        core = self.core_v1()

        def ready() -> bool:
            self._check_alive(*self.procs)
            node = core.read_node(NODE_NAME)
            return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])

        wait_for(ready, self.start_timeout, f"node {NODE_NAME} Ready", interval=0.5,
                 on_timeout=lambda: self._tail("kubelet", "containerd", "kube-controller-manager"))
        # pods cannot be created before the controller manager made the default ServiceAccount
        wait_for(lambda: core.read_namespaced_service_account("default", "default"), 60,
                 "the default ServiceAccount", on_timeout=lambda: self._tail("kube-controller-manager"))

    # --- clients -----------------------------------------------------------------------------
    def api_client(self):
        """A kubernetes.client.ApiClient for the admin kubeconfig (cached)."""
        if self._api is None:
            from kubernetes import config as k8s_config

            self._api = k8s_config.new_client_from_config(config_file=str(self.kubeconfig))
        return self._api

    def core_v1(self):
        from kubernetes import client

        return client.CoreV1Api(self.api_client())

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """kubectl against this cluster (built unless PPG_MI_K8S_KUBECTL=0): for debugging."""
        exe = self.bin / "kubectl"
        return subprocess.run([str(exe), f"--kubeconfig={self.kubeconfig}", *args],
                              capture_output=True, text=True, check=check)

    # --- accounting ----------------------------------------------------------------------------
    def owned_pids(self) -> set[int]:
        """Every live process of the cluster: the servers, containerd's shims and the containers."""
        roots = {p.pid for p in self.procs.values() if p.poll() is None}
        mine = str(self.dir) + "/"
        # shims carry `-address <our socket>`, the servers paths in our directory
        named = {pid for pid in _pids() if any(mine in arg for arg in _cmdline(pid))}
        pids = roots | named
        pids |= _descendants(pids)
        pids |= self._cgroup_pids()
        pids -= {os.getpid(), os.getppid()}
        return {p for p in pids if Path(f"/proc/{p}").exists()}

    def rss_bytes(self) -> dict[str, int]:
        """Resident memory per part (KiB*1024): the servers by name, 'containers' for shims and pods."""
        by_name = {name: _rss_kib(p.pid) * 1024 for name, p in self.procs.items() if p.poll() is None}
        named = {p.pid for p in self.procs.values()}
        by_name["containers"] = sum(_rss_kib(pid) for pid in self.owned_pids() - named) * 1024
        return by_name

    def _cgroup_dirs(self) -> list[Path]:
        """Our cgroup trees, deepest first."""
        found: list[Path] = []
        for mount in self._v1_cgroup_mounts():
            top = mount / self.cgroup_root.lstrip("/")
            if top.is_dir():
                found.extend(Path(d) for d, _, _ in os.walk(top))
        return sorted(found, key=lambda p: len(p.parts), reverse=True)

    def _cgroup_pids(self) -> set[int]:
        pids: set[int] = set()
        for d in self._cgroup_dirs():
            try:
                pids |= {int(x) for x in (d / "cgroup.procs").read_text().split()}
            except (OSError, ValueError):
                pass
        return pids

    # --- stop --------------------------------------------------------------------------------
    def _terminate(self, name: str, timeout: float = 15) -> None:
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def _remove_containers(self) -> None:
        """Kill and delete every container through containerd, so it unmounts their root filesystems."""
        if self.procs.get("containerd") is None or self.procs["containerd"].poll() is not None:
            return

        def tasks() -> list[str]:
            return [line.split()[0] for line in self.ctr("tasks", "ls", timeout=30).splitlines()[1:] if line.strip()]

        try:
            for task in tasks():
                try:
                    self.ctr("tasks", "kill", "--signal=SIGKILL", task, timeout=30)
                except ClusterError:
                    pass  # exited meanwhile
            # containerd's CRI plugin deletes the tasks of exited containers itself
            try:
                wait_for(lambda: not tasks(), 10, "containerd to delete the killed tasks", interval=0.1)
            except ClusterError:
                for task in tasks():
                    try:
                        self.ctr("tasks", "delete", "--force", task, timeout=30)
                    except ClusterError:
                        pass
            containers = self.ctr("containers", "ls", "--quiet", timeout=30).split()
            if containers:
                self.ctr("containers", "delete", *containers, timeout=60)
        except (ClusterError, subprocess.TimeoutExpired):
            pass  # the kill and unmount passes below still clean up

    def stop(self) -> dict[str, list[str]]:
        """Stop everything and remove every trace; returns what was left behind (all lists empty)."""
        if self._stopped:
            return {}
        self._stopped = True
        self._terminate("kubelet")
        self._remove_containers()
        self._terminate("containerd")
        for name in ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
            self._terminate(name)
        for name in self.procs:
            self._terminate(name, timeout=5)
        # shims (re-parented when containerd exits) and anything still in our cgroups
        def all_gone() -> bool:
            left = self.owned_pids()
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return not left

        try:
            wait_for(all_gone, 10, "the cluster's processes to be gone", interval=0.2)
        except ClusterError:
            pass  # reported by leftovers()
        self._remove_shim_sockets()
        self._remove_cni_results()
        self._unmount_all()
        self._remove_cgroups()
        self._remove_container_log_links()
        self._restore_host()
        if self._api is not None:
            self._api.close()
            self._api = None
        keep = os.environ.get("PPG_MI_CLUSTER_LOGS")  # a directory to keep the servers' logs in
        if keep and (self.dir / "logs").is_dir():
            shutil.copytree(self.dir / "logs", Path(keep) / self.dir.name, dirs_exist_ok=True)
        if not self._our_mounts():  # never delete through a mount point into what it shows
            shutil.rmtree(self.dir, ignore_errors=True)
        return self.leftovers()

    def _remove_shim_sockets(self) -> None:
        """containerd 1.6 puts its shims' sockets in /run/containerd/s whatever its state dir is,
        named sha256(<containerd address>/<namespace>/<id>); a killed shim leaves its socket."""
        tasks = self.dir / "containerd" / "state" / "io.containerd.runtime.v2.task"
        if not tasks.is_dir():
            return
        for ns in tasks.iterdir():
            for task in ns.iterdir():
                digest = hashlib.sha256(f"{self.containerd_socket}/{ns.name}/{task.name}".encode()).hexdigest()
                for name in (digest, f"{digest}.sock"):
                    Path("/run/containerd/s", name).unlink(missing_ok=True)

    def _sandbox_ids(self) -> set[str]:
        ids: set[str] = set()
        for base in ("root", "state"):
            sandboxes = self.dir / "containerd" / base / "io.containerd.grpc.v1.cri" / "sandboxes"
            if sandboxes.is_dir():
                ids |= {p.name for p in sandboxes.iterdir()}
        return ids

    def _remove_cni_results(self) -> None:
        """containerd 1.6 keeps CNI results in /var/lib/cni/results (libcni's fixed cache dir),
        one file per pod sandbox and network, removed only by a CNI DEL that killed pods never get."""
        results = Path("/var/lib/cni/results")
        ids = self._sandbox_ids()
        if not ids or not results.is_dir():
            return
        for f in results.iterdir():
            if any(f"-{sandbox}-" in f.name for sandbox in ids):
                f.unlink(missing_ok=True)

    def _our_mounts(self) -> list[str]:
        prefix = str(self.dir) + "/"
        return [p for p, _ in mounts() if p.startswith(prefix)]

    def _unmount_all(self) -> None:
        for _ in range(5):
            points = sorted(set(self._our_mounts()), key=len, reverse=True)
            if not points:
                return
            for point in points:
                if subprocess.run(["umount", point], capture_output=True).returncode != 0:
                    subprocess.run(["umount", "--lazy", point], capture_output=True)

    def _remove_cgroups(self) -> None:
        def removed() -> bool:
            dirs = self._cgroup_dirs()
            for d in dirs:
                try:
                    d.rmdir()
                except OSError:
                    pass
            return not dirs

        try:
            wait_for(removed, 15, "the cluster's cgroups to be removed", interval=0.2)
        except ClusterError:
            pass  # reported by leftovers()

    def _remove_container_log_links(self) -> None:
        """The kubelet links /var/log/containers/*.log to its pod logs (a fixed path it owns)."""
        links = Path("/var/log/containers")
        if not links.is_dir():
            return
        for link in links.iterdir():
            try:
                if link.is_symlink() and os.readlink(link).startswith(str(self.dir) + "/"):
                    link.unlink()
            except OSError:
                pass

    def _restore_host(self) -> None:
        before = getattr(self, "_host_before", None)
        if before is None:
            return
        # a kubelet of another cluster still running set them too: leave them to its own stop
        for key, value in ({} if _running("kubelet") else before["sysctls"]).items():
            path = Path("/proc/sys", key)
            try:
                if path.read_text() != value:
                    path.write_text(value)
            except OSError:
                pass
        # the kubelet's device-plugin socket has a fixed path and outlives it: ours if we made the
        # directory, and shared with any other kubelet still running
        sock = Path("/var/lib/kubelet/device-plugins/kubelet.sock")
        if str(sock.parent) not in before["dirs"] and sock.is_socket() and not _running("kubelet"):
            sock.unlink(missing_ok=True)
        for d in HOST_DIRS:  # deepest first; only empty ones, only those we made
            if d not in before["dirs"]:
                try:
                    os.rmdir(d)
                except OSError:
                    pass
        for (cmd, table), chains in _iptables_chains().items():
            for chain in sorted(chains - before["chains"].get((cmd, table), set())):
                _iptables_remove_chain(cmd, table, chain)

    def host_changes(self) -> list[str]:
        """Host state this cluster changed and did not restore (kernel settings, dirs, iptables)."""
        before = getattr(self, "_host_before", None)
        if before is None:
            return []
        # another cluster on this machine (a second test run) shares the kubelet's fixed directories
        # and kernel settings: they are its as much as ours until it stops
        shared = _running("kubelet")
        changes = [] if shared else [
            f"sysctl {k}: {v.strip()} -> {Path('/proc/sys', k).read_text().strip()}"
            for k, v in before["sysctls"].items() if Path("/proc/sys", k).read_text() != v]
        changes += [f"dir {d}" for d in (HOST_WATCH if shared else HOST_DIRS + HOST_WATCH)
                    if d not in before["dirs"] and os.path.lexists(d)]
        for (cmd, table), chains in _iptables_chains().items():
            changes += [f"{cmd} -t {table} chain {c}" for c in chains - before["chains"].get((cmd, table), set())]
        return changes

    def leftovers(self) -> dict[str, list[str]]:
        """Processes, mounts, cgroups and listening ports of this cluster still present."""
        sock = str(self.containerd_socket)
        procs = [f"{pid} {' '.join(_cmdline(pid))[:120]}" for pid in _pids()
                 if sock in " ".join(_cmdline(pid)) or str(self.dir) + "/" in " ".join(_cmdline(pid))]
        listening = []
        for port in self.ports.values():
            with socket.socket() as s:
                s.settimeout(0.5)
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    listening.append(f"127.0.0.1:{port}")
        return {
            "processes": procs,
            "mounts": self._our_mounts(),
            "cgroups": [str(d) for d in self._cgroup_dirs()],
            "ports": listening,
            "files": [str(self.dir)] if self.dir.exists() else [],
            "host": self.host_changes(),
        }

    def __enter__(self) -> "SingleNodeCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def clean_stale(parent: Path | str | None = None) -> list[Path]:
    """Stop and remove clusters whose owning process died without stop() (a killed test run)."""
    cleaned = []
    for path in sorted(Path(parent or tempfile.gettempdir()).glob("ppgk8s-*")):
        try:
            owner = json.loads((path / "state.json").read_text())["owner"]
        except (OSError, ValueError, KeyError):
            continue
        if owner == os.getpid() or Path(f"/proc/{owner}").exists():
            continue
        SingleNodeCluster._adopt(path).stop()
        cleaned.append(path)
    return cleaned


def main() -> None:
    """`python -m tests.cluster.node [--clean]`: start a cluster, print how to reach it, stop it on
    Ctrl-C; with --clean, only remove the clusters of killed runs."""
    import sys

    if "--clean" in sys.argv[1:]:
        print("cleaned:", [str(p) for p in clean_stale(os.environ.get("PPG_MI_CLUSTER_DIR") or None)])
        return
    cluster = SingleNodeCluster(os.environ.get("PPG_MI_CLUSTER_DIR") or None)
    stop = threading.Event()

    def _stop(*_):
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    cluster.start()
    rss = sum(cluster.rss_bytes().values()) / 2**20
    print(f"node Ready after {cluster.timings['ready_s']:.1f}s, {rss:.0f} MiB resident; "
          f"export KUBECONFIG={cluster.kubeconfig}  (Ctrl-C stops)", flush=True)
    while not stop.wait(1.0):  # woken by the signal handler; the timeout lets Python run it
        pass
    print("left behind:", cluster.stop(), flush=True)


if __name__ == "__main__":
    main()
