"""Helpers for integration tests: run the CLI as a user would, read topics back."""

from __future__ import annotations

import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from riverflow.scrape import Page
from riverflow.settings import Settings, load_settings
from riverflow.topics import create_topics
from riverflow.transport import clients_for, topic_partitions


def wait_until(
    check: Callable[[], Any],
    timeout: float = 60,
    what: str | Callable[[], str] = "condition",
    interval: float = 0.2,
) -> Any:
    """Call ``check`` until it returns something truthy, and return that; fail after
    ``timeout`` seconds saying ``what`` never happened (a callable is asked then, so the message
    can show the state at that moment). Every test waits with this, never with a fixed sleep:
    on a loaded machine things take longer, not a different path. ``check`` may raise to fail
    at once (a process that exited). ``interval`` 0 suits a check that blocks by itself."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {said}")
        time.sleep(interval)


def _ephemeral_low() -> int:
    """Where the kernel's range for the local ports of outgoing connections begins."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports nobody listens on (all held open until chosen, so none repeats),
    below the ephemeral range: a port from that range can be taken by any outgoing connection
    (a Kafka client's) between this choice and the bind of the process it is given to."""
    rng = random.SystemRandom()
    below = _ephemeral_low() - 16  # room for a run of consecutive ports (free_port_run)
    sockets: list[socket.socket] = []
    try:
        while len(sockets) < n:
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", rng.randrange(10_000, below)))
            except OSError:
                s.close()
                continue
            sockets.append(s)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


W = TypeVar("W", bound="WorkerProcess")


@dataclass
class Stack:
    """Fresh uuid-named topics on the test broker, and the env that points riverflow at them."""

    settings: Settings
    env: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> bytes | None:
        """The signing key its processes share (None for a stack made without one)."""
        secret = self.settings.model_signing_key
        return secret.get_secret_value().encode() if secret else None

    def run(
        self,
        *args: str,
        timeout: float = 300,
        check: bool = True,
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``riverflow ARGS`` to completion in a subprocess."""
        result = subprocess.run(
            [sys.executable, "-m", "riverflow", *args],
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"riverflow {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
            )
        return result

    def start(
        self, *args: str, extra_env: dict[str, str] | None = None, log_path: str | None = None
    ) -> subprocess.Popen[str]:
        """Start ``riverflow ARGS`` in the background (stderr to ``log_path`` when given)."""
        err: Any = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115
        return subprocess.Popen(
            [sys.executable, "-m", "riverflow", *args],
            env={**self.env, **(extra_env or {})},
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
        )

    def read(self, topic: str, *, expect: int | None = None, timeout: float = 60) -> list[Any]:
        """Every record of ``topic`` (see :func:`read_topic`)."""
        return read_topic(self.settings, topic, expect=expect, timeout=timeout)


def value(page: Page, name: str, **labels: str) -> float | None:
    """The sample called ``name`` (or ``name_total``) with ``labels``."""
    samples = page.select(name, **labels) or page.select(name + "_total", **labels)
    return float(samples[0][1]) if samples else None


class WorkerProcess:
    """``riverflow COMMAND ARGS`` in the background: its stderr in a log file, its metrics on a
    free port (``metrics=False`` for commands without a metrics page, such as simulate)."""

    def __init__(
        self,
        stack: Stack,
        tmp: Path,
        command: str,
        *args: str,
        env: dict[str, str] | None = None,
        metrics: bool = True,
    ) -> None:
        self.command = command
        self.port = free_port() if metrics else None
        self.log = tmp / f"{command}-{uuid.uuid4().hex[:6]}.log"
        argv = [command, "--metrics-port", str(self.port), *args] if metrics else [command, *args]
        self.proc: subprocess.Popen[str] = stack.start(*argv, extra_env=env, log_path=str(self.log))

    def page(self) -> Page:
        """The metrics page; empty when it does not answer."""
        assert self.port is not None, f"{self.command} runs without metrics"
        return Page.fetch([f"http://127.0.0.1:{self.port}/metrics"], timeout_s=2)

    def value(self, name: str, **labels: str) -> float | None:
        return value(self.page(), name, **labels)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_for(self, check: Callable[[Page], bool], timeout: float = 60) -> Page:
        """The first metrics page that passes ``check``; fails if the process exits first."""

        def passed() -> Page | None:
            page = self.page()
            if page.samples and check(page):
                return page
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.command} exited {self.proc.returncode}:\n{self.text()[-4000:]}"
                )
            return None

        page: Page = wait_until(
            passed, timeout, lambda: f"{self.command}'s metrics:\n{self.text()[-4000:]}"
        )
        return page

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait for a clean exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


class Workers:
    """The processes one test starts; whatever still runs when the test ends is killed."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[WorkerProcess] = []

    def spawn(
        self,
        stack: Stack,
        command: str,
        *args: str,
        env: dict[str, str] | None = None,
        metrics: bool = True,
    ) -> WorkerProcess:
        return self.add(WorkerProcess(stack, self.tmp, command, *args, env=env, metrics=metrics))

    def add(self, worker: W) -> W:
        self.started.append(worker)
        return worker

    def close(self) -> None:
        for worker in self.started:
            worker.kill()


def read_topic(
    settings: Settings,
    topic: str,
    *,
    expect: int | None = None,
    timeout: float = 60,
    committed_only: bool = True,
) -> list[Any]:
    """Every record of ``topic`` from the start: until ``expect`` are read (writers may still
    be at work), or else up to the end offsets at the call (its writers are done; a pause in
    the reading, slow on a loaded machine, does not cut it short). ``timeout`` bounds both."""
    consumer = clients_for(settings).consumer(committed_only=committed_only)
    try:
        parts = topic_partitions(consumer, topic)
        consumer.assign(parts)
        for tp, offset in consumer.beginning_offsets(parts).items():
            consumer.seek(tp, offset)
        ends = consumer.end_offsets(parts)  # the last stable offsets when read_committed
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if expect is None and all(
                (consumer.position(tp, 5.0) or 0) >= ends[tp] for tp in parts
            ):
                break
            for recs in consumer.poll_batch(0.5).values():
                records.extend(recs)
            if expect is not None and len(records) >= expect:
                break
        return records
    finally:
        consumer.close(10)


def make_stack(bootstrap: str, partitions: int = 3, **overrides: Any) -> Stack:
    """Fresh topics; every stack signs its snapshots with a random key unless the test says
    ``model_signing_key=None``."""
    overrides.setdefault("model_signing_key", secrets.token_hex(32))
    overrides = {k: v for k, v in overrides.items() if v is not None}
    uid = uuid.uuid4().hex[:10]
    names = {
        "readings_topic": f"readings-{uid}",
        "feedback_topic": f"feedback-{uid}",
        "predictions_topic": f"predictions-{uid}",
        "models_topic": f"models-{uid}",
        "models_history_topic": f"models-history-{uid}",
        "dead_letters_topic": f"dead-letters-{uid}",
    }
    settings = load_settings(
        bootstrap_servers=bootstrap, partitions=partitions, **names, **overrides
    )
    create_topics(settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIVERFLOW_")}
    env["RIVERFLOW_BOOTSTRAP_SERVERS"] = bootstrap
    env["RIVERFLOW_KAFKA_CLIENT"] = settings.kafka_client  # the suite runs on either transport
    env["RIVERFLOW_PARTITIONS"] = str(partitions)
    for key, value in {**names, **overrides}.items():
        env[f"RIVERFLOW_{key.upper()}"] = str(value)
    return Stack(settings, env)
