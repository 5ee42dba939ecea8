"""A real, single-node Apache Kafka (KRaft combined mode) on 127.0.0.1 for dev, tests and CI.

The broker's jars come from Maven Central through ``mvn`` and the pinned ``broker/pom.xml``,
cached under the user's cache directory, so only the first start downloads anything.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from riverflow.errors import BrokerError

log = logging.getLogger(__name__)

HERE = Path(__file__).parent / "broker"
POM = HERE / "pom.xml"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0

SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data_dir}/log
num.partitions=1
# One node: every internal topic has one replica, transactions included.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Consumers join at once instead of waiting 3 s for others (tests start many groups).
group.initial.rebalance.delay.ms=0
# Room for model snapshots on the compacted models topic.
message.max.bytes=16777216
replica.fetch.max.bytes=16777216
"""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "riverflow"


def default_data_dir(port: int) -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "riverflow" / f"kafka-{port}"


def kafka_version() -> str:
    text = POM.read_text()
    return text.split("<kafka.version>", 1)[1].split("<", 1)[0]


def _require(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise BrokerError(f"`{tool}` is not on PATH: {hint}")
    return path


def ensure_jars() -> Path:
    """Return the folder of the broker's jars, fetching them with mvn on first use."""
    libs = cache_dir() / f"kafka-{kafka_version()}" / "libs"
    done = libs / ".complete"
    if done.exists():
        return libs
    mvn = _require("mvn", "install Maven 3 (e.g. `apt-get install maven`) to fetch Kafka's jars")
    log.info("fetching Apache Kafka %s jars with Maven into %s", kafka_version(), libs)
    libs.mkdir(parents=True, exist_ok=True)
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={libs}",
        "-DincludeScope=runtime",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-20:]
        raise BrokerError("mvn could not fetch Kafka's jars:\n" + "\n".join(tail))
    done.touch()
    return libs


@dataclass(frozen=True)
class LocalKafka:
    """One local broker: its port and data directory (logs, pid file, storage)."""

    port: int = 9092
    data_dir: Path | None = None

    @property
    def home(self) -> Path:
        return self.data_dir or default_data_dir(self.port)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def controller_port(self) -> int:
        return self.port + 1

    @property
    def pid_file(self) -> Path:
        return self.home / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "broker.log"

    def pid(self) -> int | None:
        """The recorded pid if that process is still alive."""
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        except PermissionError:
            pass
        return pid

    def answers(self, timeout_s: float = 2.0) -> bool:
        """True when the broker answers a metadata request."""
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout_s):
                pass
            client = KafkaAdminClient(
                bootstrap_servers=self.bootstrap, request_timeout_ms=int(timeout_s * 1000)
            )
        except (OSError, KafkaError):
            return False
        try:
            client.list_topics()
            return True
        except KafkaError:
            return False
        finally:
            client.close()

    def _java(self) -> str:
        return _require("java", "install Java 17+ (e.g. `apt-get install openjdk-17-jre`)")

    def _write_config(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        config = self.home / "server.properties"
        config.write_text(
            SERVER_PROPERTIES.format(
                port=self.port, controller_port=self.controller_port, data_dir=self.home
            )
        )
        return config

    def _format(self, java: str, classpath: str, config: Path) -> None:
        if (self.home / "log" / "meta.properties").exists():
            return
        cluster_id = _kafka_uuid()
        cmd = [
            java,
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={cluster_id}",  # "=": a random id may start with "-"
            "-c",
            str(config),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise BrokerError("formatting Kafka storage failed:\n" + result.stdout + result.stderr)

    def start(self, timeout_s: float = START_TIMEOUT_S) -> str:
        """Start the broker in the background (or find it running); return its bootstrap."""
        if self.pid() is not None and self.answers():
            return self.bootstrap
        if _port_in_use(self.port):
            if self.answers():
                return self.bootstrap  # someone else's broker; use it as it is
            raise BrokerError(f"port {self.port} is taken by something that is not Kafka")
        java = self._java()
        libs = ensure_jars()
        classpath = f"{libs}/*"
        config = self._write_config()
        self._format(java, classpath, config)
        cmd = [
            java,
            "-Xms256m",
            "-Xmx1g",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={HERE / 'log4j2.properties'}",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(config),
        ]
        with open(self.log_file, "ab") as out:
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in the caller's terminal must not hit it
            )
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BrokerError(f"Kafka exited with code {proc.returncode}:\n{self.log_tail()}")
            if self.answers(timeout_s=1.0):
                return self.bootstrap
            time.sleep(0.25)
        self.stop()
        raise BrokerError(f"Kafka did not answer within {timeout_s:.0f}s:\n{self.log_tail()}")

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> bool:
        """Stop the recorded broker gracefully (SIGTERM, then SIGKILL); False if none ran."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not _alive(pid):
                break
            time.sleep(0.1)
        else:
            log.warning("Kafka (pid %d) ignored SIGTERM for %.0fs; killing it", pid, timeout_s)
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no broker log)"


def _alive(pid: int) -> bool:
    # Reap it if it is our child, so a zombie does not look alive.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _kafka_uuid() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding."""
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
