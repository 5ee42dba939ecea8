"""Each transport against the real broker: every contract check (tests/transport_contract.py),
and what only real clients show (one partitioner for both, a clear error without a broker)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from riverflow.settings import load_settings
from riverflow.transport import TopicPartition, clients_for
from riverflow.transport.errors import BrokerUnavailable
from tests.integration.kit import free_port
from tests.transport_contract import CHECK_IDS, CHECKS, Env

pytestmark = pytest.mark.integration
TRANSPORTS = ["kafka-python", "confluent"]


@pytest.fixture(params=TRANSPORTS)
def env(request: pytest.FixtureRequest, kafka_bootstrap: str) -> Iterator[Env]:
    settings = load_settings(bootstrap_servers=kafka_bootstrap, kafka_client=request.param)
    clients = clients_for(settings)
    admin = clients.admin()
    try:
        yield Env(clients, admin, timeout_s=60.0)
    finally:
        admin.close()


@pytest.mark.parametrize("check", CHECKS, ids=CHECK_IDS)
def test_transport_keeps_the_contract(env: Env, check: Callable[[Env], None]) -> None:
    check(env)


def test_a_key_lands_on_the_same_partition_whichever_transport_wrote_it(
    kafka_bootstrap: str,
) -> None:
    envs = [
        clients_for(load_settings(bootstrap_servers=kafka_bootstrap, kafka_client=name))
        for name in TRANSPORTS
    ]
    admin = envs[0].admin()
    topic = f"contract-{uuid.uuid4().hex[:10]}"
    admin.create_topic(topic, 6)
    keys = [f"sensor-{i}".encode() for i in range(40)]
    for clients in envs:
        producer = clients.producer()
        for key in keys:
            producer.send(topic, key, clients.name.encode())
        assert producer.flush(30) == 0
        producer.close(30)
    reader = Env(envs[0], admin)
    consumer = envs[0].consumer()
    consumer.assign([TopicPartition(topic, p) for p in range(6)])
    records = reader.read([consumer], lambda rs: len(rs) >= 2 * len(keys))
    consumer.close(10)
    admin.close()
    partitions: dict[bytes | None, set[int]] = {}
    for r in records:
        partitions.setdefault(r.key, set()).add(r.partition)
    assert len(partitions) == len(keys) and all(len(p) == 1 for p in partitions.values())
    assert len({p for ps in partitions.values() for p in ps}) > 1


@pytest.mark.parametrize("name", TRANSPORTS)
def test_no_broker_is_a_clear_error(name: str) -> None:
    settings = load_settings(
        bootstrap_servers=f"127.0.0.1:{free_port()}", kafka_client=name, bootstrap_timeout_s=1
    )
    with pytest.raises(BrokerUnavailable, match="no Kafka broker answers"):
        clients_for(settings).consumer("g")
