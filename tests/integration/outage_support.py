"""Broker outages for integration and chaos tests: a broker of the test's own that can be
SIGKILLed and restarted on the same port and data directory, and riverflow processes whose
logs and metrics a test reads while it happens."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from riverflow.errors import BrokerError
from riverflow.local_kafka import LocalKafka
from riverflow.scrape import Page
from tests.integration.kit import Stack, free_port


def free_port_pair() -> int:
    """A free port whose successor is free too: a broker's client and controller ports."""
    while True:
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


class OwnBroker:
    """A broker for one test module only (the session's broker is shared by every test), on
    free ports, that the test may SIGKILL and restart with its data."""

    def __init__(self, home: Path) -> None:
        self.kafka = LocalKafka(free_port_pair(), home)

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap

    def start(self) -> str:
        """Start (or restart, on the same port and data) and return once it answers."""
        return self.kafka.start()

    def kill(self) -> None:
        """SIGKILL the broker and wait until it is gone: no shutdown, as in a crash."""
        pid = self.kafka.pid()
        assert pid is not None, "the broker is not running"
        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):  # started by this process: reap it
            os.waitpid(pid, 0)
        deadline = time.monotonic() + 30
        while self.kafka.pid() is not None:
            assert time.monotonic() < deadline, f"broker pid {pid} survived SIGKILL"
            time.sleep(0.05)

    def stop(self) -> None:
        self.kafka.stop()


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnBroker]:
    broker = OwnBroker(tmp_path_factory.mktemp("own-kafka"))
    try:
        broker.start()
    except BrokerError as exc:
        pytest.fail(f"the test's own Kafka broker did not start: {exc}")
    try:
        yield broker
    finally:
        broker.stop()


class Process:
    """``riverflow ARGS`` in the background: its stderr in a file, its metrics on a free port
    (``metrics=False`` for commands without a metrics page)."""

    def __init__(
        self,
        stack: Stack,
        log: Path,
        *args: str,
        metrics: bool = True,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port() if metrics else None
        self.log = log
        argv = [*args, "--metrics-port", str(self.port)] if metrics else list(args)
        self.proc: subprocess.Popen[str] = stack.start(
            *argv, extra_env=extra_env, log_path=str(log)
        )

    def page(self) -> Page:
        """The metrics page; empty when it does not answer."""
        assert self.port is not None
        return Page.fetch([f"http://127.0.0.1:{self.port}/metrics"], timeout_s=2)

    def value(self, name: str) -> float | None:
        samples = self.page().select(name)
        return float(samples[0][1]) if samples else None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, and the exit code of a clean stop."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
