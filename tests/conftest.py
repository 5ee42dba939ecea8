"""The real broker for integration and chaos tests: started once per session unless one is
configured.

Set RIVERFLOW_BOOTSTRAP_SERVERS to use a running broker; otherwise a local Apache Kafka starts
on RIVERFLOW_TEST_KAFKA_PORT (default 19092) with fresh storage. A broker that cannot start is a
test failure, never a skip.

``--cpu-load N`` (or RIVERFLOW_TEST_CPU_LOAD=N) keeps N busy-loop processes running for the
whole session, so the tests are seen to hold on a loaded machine: ``python -m pytest --cpu-load
2`` keeps both cores of a two-core runner busy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from riverflow.errors import BrokerError, RiverflowError
from riverflow.local_kafka import LocalKafka
from riverflow.local_prometheus import LocalPrometheus
from tests.integration.kit import Stack, Workers, free_port, make_stack
from tests.integration.learner_support import learners  # noqa: F401 - a fixture for learner tests
from tests.integration.outage_support import own_broker  # noqa: F401 - a broker a test may kill

# Spins until stopped, or until its parent (pytest) is gone, even if pytest was killed.
BUSY_LOOP = """
import os, sys
parent = int(sys.argv[1])
while os.getppid() == parent:
    for _ in range(1_000_000):
        pass
"""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cpu-load",
        type=int,
        default=int(os.environ.get("RIVERFLOW_TEST_CPU_LOAD") or 0),
        metavar="N",
        help="run N busy-loop processes during the session (env RIVERFLOW_TEST_CPU_LOAD)",
    )
    parser.addoption(
        "--kafka-client",
        choices=["kafka-python", "confluent"],
        default=os.environ.get("RIVERFLOW_TEST_KAFKA_CLIENT") or "kafka-python",
        help="the transport of the integration and chaos tests: their helpers and every "
        "riverflow process they start (env RIVERFLOW_TEST_KAFKA_CLIENT, default kafka-python)",
    )


def pytest_report_header(config: pytest.Config) -> list[str]:
    n = config.getoption("--cpu-load")
    lines = [f"cpu load: {n} busy-loop processes"] if n else []
    return [*lines, f"integration tests on the {config.getoption('--kafka-client')} transport"]


@pytest.fixture(autouse=True)
def kafka_client(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The transport an integration test runs on, through RIVERFLOW_KAFKA_CLIENT: its stack's
    settings read it, and the stack passes it to the processes it starts. Unit tests keep the
    environment as it is."""
    client = str(request.config.getoption("--kafka-client"))
    if request.node.get_closest_marker("integration") is not None:
        monkeypatch.setenv("RIVERFLOW_KAFKA_CLIENT", client)
    return client


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs the broker is marked ``integration``, so ``-m "not integration"`` is
    the fast suite: a module under tests/integration or tests/chaos without the mark is refused."""
    for item in items:
        broker_dir = item.path.parent.name in ("integration", "chaos")
        if broker_dir and item.get_closest_marker("integration") is None:
            raise pytest.UsageError(
                f"{item.nodeid}: a module in tests/{item.path.parent.name} needs "
                "`pytestmark = pytest.mark.integration`"
            )


@pytest.fixture(scope="session", autouse=True)
def cpu_load(request: pytest.FixtureRequest) -> Iterator[None]:
    procs = [
        subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(os.getpid())])
        for _ in range(request.config.getoption("--cpu-load"))
    ]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("RIVERFLOW_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    port = int(os.environ.get("RIVERFLOW_TEST_KAFKA_PORT", "19092"))
    broker = LocalKafka(port, Path(tmp_path_factory.mktemp("kafka")))
    try:
        bootstrap = broker.start()
    except BrokerError as exc:
        pytest.fail(f"the local Kafka broker for integration tests did not start: {exc}")
    try:
        yield bootstrap
    finally:
        broker.stop()


@pytest.fixture
def stack(kafka_bootstrap: str) -> Callable[..., Stack]:
    """Factory: ``stack(partitions=3, **settings)`` makes fresh uuid-named topics."""

    def make(partitions: int = 3, **overrides: Any) -> Stack:
        return make_stack(kafka_bootstrap, partitions, **overrides)

    return make


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[LocalPrometheus]:
    """A Prometheus of this machine with the repo's config and rules; targets set by the test."""
    if shutil.which("prometheus") is None:
        pytest.fail("prometheus is not installed: `apt-get install prometheus` provides it")
    local = LocalPrometheus(tmp_path / "prometheus", free_port())
    try:
        local.start()
    except RiverflowError as exc:
        pytest.fail(f"Prometheus did not start: {exc}")
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    """Starts riverflow processes for one test and kills whatever still runs when it ends."""
    started = Workers(tmp_path)
    try:
        yield started
    finally:
        started.close()
