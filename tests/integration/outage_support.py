"""Broker outages for integration and chaos tests: a broker of the test's own that can be
SIGKILLed and restarted on the same port and data directory (the processes under test are
:class:`tests.integration.kit.WorkerProcess`)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from riverflow.errors import BrokerError
from riverflow.local_kafka import LocalKafka
from tests.integration.kit import free_port, wait_until


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
        wait_until(lambda: self.kafka.pid() is None, 30, f"broker pid {pid} to die", 0.05)

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
