"""A single-node Apache Kafka (KRaft) for laptops and tests, run from Maven Central jars.

The jars are fetched once by ``mvn dependency:copy-dependencies`` from the pom shipped
beside this module into ``<cache_dir>/kafka-<version>/libs`` and reused afterwards.
A broker's state (data, log, pid, ports) lives in one directory; the storage is
formatted once with ``--standalone`` before the first start, as KRaft requires.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..config import Settings

POM = Path(__file__).with_name("kafka-pom.xml")


class LocalKafkaError(RuntimeError):
    """The local broker could not be fetched, formatted, started or stopped."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def ensure_jars(settings: Settings, quiet: bool = True) -> Path:
    """Return the directory of Kafka's jars, fetching them with Maven the first time."""
    libs = settings.kafka_home / "libs"
    marker = libs / f"kafka_2.13-{settings.kafka_version}.jar"
    if marker.is_file():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalKafkaError("Maven (`mvn`) is needed once to fetch Kafka's jars, and it is not on PATH")
    libs.mkdir(parents=True, exist_ok=True)
    cmd = [mvn, "-B", "-f", str(POM), "dependency:copy-dependencies",
           f"-DoutputDirectory={libs}", f"-Dkafka.version={settings.kafka_version}"]
    if quiet:
        cmd.insert(1, "-q")
    result = subprocess.run(cmd, capture_output=quiet, text=True)
    if result.returncode != 0 or not marker.is_file():
        detail = (result.stdout or "")[-2000:] + (result.stderr or "")[-2000:] if quiet else ""
        raise LocalKafkaError(f"fetching Kafka {settings.kafka_version} jars failed:\n{detail}")
    return libs


def java_command(settings: Settings) -> str:
    if settings.java_home:
        return str(Path(settings.java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise LocalKafkaError("no `java` on PATH; set PPG_MI_JAVA_HOME to a JDK 17+")
    return java


def kafka_tool(settings: Settings, main_class: str, *args: str, heap: str = "256m") -> list[str]:
    """Command line running one of Kafka's own tools (``org.apache.kafka.tools.*``) from the jars."""
    libs = ensure_jars(settings)
    return [java_command(settings), f"-Xmx{heap}", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-cp", str(libs / "*"), main_class, *args]


@dataclass
class LocalBroker:
    """One KRaft node (broker and controller) whose state lives in ``state_dir``."""

    settings: Settings
    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 9092

    @classmethod
    def for_settings(cls, settings: Settings) -> "LocalBroker":
        state = Path(settings.cache_dir) / "brokers" / f"{settings.kafka_local_host}-{settings.kafka_local_port}"
        return cls(settings, state, settings.kafka_local_host, settings.kafka_local_port)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "broker.log"

    @property
    def _pid_file(self) -> Path:
        return self.state_dir / "broker.pid"

    @property
    def _meta_file(self) -> Path:
        return self.state_dir / "ports.json"

    def pid(self) -> int | None:
        try:
            pid = int(self._pid_file.read_text())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return pid

    def running(self) -> bool:
        return self.pid() is not None and port_open(self.host, self.port)

    def _controller_port(self) -> tuple[int, str]:
        # The controller's address is written into the formatted metadata, so it is chosen
        # once per state directory and kept.
        if self._meta_file.is_file():
            meta = json.loads(self._meta_file.read_text())
            return int(meta["controller_port"]), meta["cluster_id"]
        meta = {"controller_port": free_port(self.host), "cluster_id": _cluster_id()}
        self._meta_file.write_text(json.dumps(meta))
        return meta["controller_port"], meta["cluster_id"]

    def _write_properties(self, controller_port: int) -> Path:
        data = self.state_dir / "data"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{self.host}:{controller_port}",
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(data),
            "num.partitions": str(self.settings.topic_partitions),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "6",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "6",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # A controlled shutdown moves leadership away; with one node there is nowhere to go,
            # so every partition goes leaderless while the broker still runs, and Kafka's
            # transaction-marker sender then skips those partitions as "likely deleted" yet records
            # the transaction as complete: a commit the client saw succeed is later aborted by the
            # producer's next abort (docs/reliability.md, "Broker restart").  Without it, markers
            # still pending at shutdown are resent from the transaction log on restart.
            "controlled.shutdown.enable": "false",
            "auto.create.topics.enable": "false",
            "log.segment.bytes": str(64 * 1024 * 1024),
            "log.retention.hours": "24",
            "transaction.abort.timed.out.transaction.cleanup.interval.ms": "5000",
            "transaction.remove.expired.transaction.cleanup.interval.ms": "60000",
        }
        path = self.state_dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        return path

    def _java(self, heap: str) -> list[str]:
        libs = ensure_jars(self.settings)
        return [java_command(self.settings), f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseSerialGC",
                "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                "-Dorg.slf4j.simpleLogger.showDateTime=true",
                "-cp", str(libs / "*")]

    def start(self, timeout: float = 90.0) -> None:
        """Format the storage if needed, start the broker and wait until it answers."""
        if self.running():
            return
        if port_open(self.host, self.port):
            raise LocalKafkaError(
                f"{self.bootstrap} is taken by another process; set PPG_MI_KAFKA_LOCAL_PORT to a free port "
                "or PPG_MI_KAFKA_BOOTSTRAP_SERVERS to use that broker"
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        controller_port, cluster_id = self._controller_port()
        props = self._write_properties(controller_port)
        if not (self.state_dir / "data" / "meta.properties").is_file():
            fmt = subprocess.run(
                [*self._java("256m"), "kafka.tools.StorageTool", "format", "--standalone",
                 "-t", cluster_id, "-c", str(props)],
                capture_output=True, text=True,
            )
            if fmt.returncode != 0:
                raise LocalKafkaError(f"formatting the KRaft storage failed:\n{fmt.stdout}{fmt.stderr}")
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                [*self._java(self.settings.kafka_local_heap), "kafka.Kafka", str(props)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self._pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise LocalKafkaError(f"the broker exited with {proc.returncode}; see {self.log_file}:\n"
                                      + _tail(self.log_file))
            if port_open(self.host, self.port) and _broker_answers(self.bootstrap):
                return
            time.sleep(0.25)
        self.stop()
        raise LocalKafkaError(f"the broker did not answer within {timeout:.0f}s; see {self.log_file}")

    def stop(self, timeout: float = 30.0, kill: bool = False) -> bool:
        """Stop the broker (SIGTERM, then SIGKILL after ``timeout``); False if none ran."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() is None or _reaped(pid):
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
        self._pid_file.unlink(missing_ok=True)
        return True

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.state_dir, ignore_errors=True)


def _reaped(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    except ChildProcessError:
        return False


def _broker_answers(bootstrap: str) -> bool:
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(timeout=2)
        return True
    except Exception:
        return False


def _cluster_id() -> str:
    import base64

    # an id starting with "-" would be read by the storage tool as an option
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
