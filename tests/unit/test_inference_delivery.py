"""Delivery strategies' contract over the in-memory Kafka (tests/fakes.py): what is committed,
and when a batch fails."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from riverflow.consumers.inference.delivery import (
    AtLeastOnce,
    BatchFailed,
    RecordRefused,
    Transactional,
)
from riverflow.transport import Producer, TopicPartition
from riverflow.transport.errors import BrokerUnavailable, CommitFailed, RecordTooLarge, Timeout
from tests.fakes import FakeClients, FakeConsumer, FakeKafka
from tests.unit.kafka_fakes import Record

TP0, TP1 = TopicPartition("r", 0), TopicPartition("r", 1)
SOURCE = Record("r", 0, 5, b"{}")
GROUP = "g"


def cluster(output_limit: int | None = None) -> tuple[FakeKafka, FakeClients]:
    """Readings on two partitions, outputs on one (``output_limit``: its max.message.bytes)."""
    kafka = FakeKafka()
    clients = kafka.clients()
    admin = clients.admin()
    admin.create_topic("r", 2)
    limit = {} if output_limit is None else {"max.message.bytes": str(output_limit)}
    admin.create_topic("p", 1, limit)
    return kafka, clients


def transactional(clients: FakeClients, **options: Any) -> Callable[[], Producer]:
    def make() -> Producer:
        producer = clients.producer(transactional_id="t", **options)
        producer.init_transactions(1)
        return producer

    return make


def values(kafka: FakeKafka, committed_only: bool = True) -> list[bytes | None]:
    reader = kafka.clients().consumer(committed_only=committed_only)
    reader.assign([TopicPartition("p", 0)])
    return [r.value for rs in reader.poll_batch(0).values() for r in rs]


def committed(kafka: FakeKafka) -> dict[TopicPartition, int]:
    return kafka.offsets.get(GROUP, {})


def test_at_least_once_flushes_then_commits() -> None:
    kafka, clients = cluster()
    d = AtLeastOnce(clients.producer, clients.consumer(GROUP))
    d.begin()
    d.send("p", b"k", b"v", SOURCE)
    assert values(kafka) == []  # queued in the producer until the commit flushes it
    produced_ms = d.commit({TP0: 10, TP1: 4})
    assert values(kafka) == [b"v"] and committed(kafka) == {TP0: 10, TP1: 4}
    assert produced_ms > 0


def test_at_least_once_never_commits_a_batch_with_an_undelivered_send() -> None:
    kafka, clients = cluster(output_limit=100)
    d = AtLeastOnce(clients.producer, clients.consumer(GROUP))
    d.begin()
    d.send("p", b"k", b"x" * 200, SOURCE)
    with pytest.raises(BatchFailed, match="not delivered"):
        d.commit({TP0: 10})
    assert committed(kafka) == {}


def refusing(consumer: FakeConsumer, times: int) -> FakeConsumer:
    """``consumer`` whose next ``times`` commits fail as in a rebalance; it notes whether each
    commit that went through was asynchronous (``consumer.modes``)."""
    commit = consumer.commit
    left = [times]
    modes: list[bool] = []

    def refuse(offsets: Any, asynchronous: bool = False) -> None:
        if left[0]:
            left[0] -= 1
            raise CommitFailed("rebalance in progress", "REBALANCE_IN_PROGRESS")
        modes.append(asynchronous)
        commit(offsets, asynchronous)

    consumer.commit = refuse  # type: ignore[method-assign]
    consumer.modes = modes  # type: ignore[attr-defined]
    return consumer


def test_batches_commit_asynchronously_and_each_carries_every_owned_partition() -> None:
    """A failed commit (or a lost asynchronous one) is covered by the next batch's, also for a
    partition that got no new records; the listener takes a revoked partition's offsets."""
    kafka, clients = cluster()
    consumer = refusing(clients.consumer(GROUP), 1)
    d = AtLeastOnce(clients.producer, consumer)
    d.begin()
    d.commit({TP0: 10, TP1: 4})
    assert committed(kafka) == {}
    d.begin()
    d.commit({TP0: 20})
    assert committed(kafka) == {TP0: 20, TP1: 4}
    assert consumer.modes == [True]  # type: ignore[attr-defined]
    assert d.take_pending([TP1]) == {TP1: 4}  # the listener commits what it gives away
    d.begin()
    d.commit({TP0: 30})
    assert committed(kafka) == {TP0: 30, TP1: 4}
    assert d.take_pending([TP0, TP1]) == {TP0: 30}


def test_at_least_once_close_commits_what_is_pending_and_closes_the_producer() -> None:
    kafka, clients = cluster()
    d = AtLeastOnce(clients.producer, refusing(clients.consumer(GROUP), 1))
    d.begin()
    d.commit({TP0: 7})
    d.close(1.0)
    assert committed(kafka) == {TP0: 7} and getattr(d.producer, "closed", False)


def test_transactional_commits_offsets_inside_the_transaction() -> None:
    kafka, clients = cluster()
    consumer = refusing(clients.consumer(GROUP), 100)  # never through the consumer
    d = Transactional(transactional(clients), consumer)
    d.begin()
    d.send("p", b"k", b"v", SOURCE)
    assert values(kafka, committed_only=False) == []  # still queued
    d.commit({TP1: 3, TP0: 9})
    assert values(kafka) == [b"v"]
    assert committed(kafka) == {TP0: 9, TP1: 3}
    assert d.take_pending([TP0]) == {}


def test_a_flush_waits_for_a_broker_that_is_away_until_a_stop_gives_the_batch_up() -> None:
    kafka, clients = cluster()
    asked = [0]

    def comes_back() -> bool:  # asked once per flush slice without the broker
        asked[0] += 1
        if asked[0] == 3:
            kafka.down = False
        return False

    d = AtLeastOnce(clients.producer, clients.consumer(GROUP), stop_requested=comes_back)
    d.begin()
    d.send("p", b"k", b"v", SOURCE)
    kafka.down = True
    d.commit({TP0: 5})
    assert asked[0] == 3 and committed(kafka) == {TP0: 5} and values(kafka) == [b"v"]

    stopped = AtLeastOnce(clients.producer, clients.consumer(GROUP), stop_requested=lambda: True)
    stopped.begin()
    stopped.send("p", b"k", b"w", SOURCE)
    kafka.down = True
    with pytest.raises(BatchFailed, match="stopping"):
        stopped.commit({TP0: 9})
    assert committed(kafka) == {TP0: 5}


def test_a_failed_transaction_goes_with_its_producer_and_the_next_batch_reconnects() -> None:
    kafka, clients = cluster(output_limit=100)
    make = transactional(clients)
    away = [BrokerUnavailable("no broker"), BrokerUnavailable("no broker")]
    made: list[Producer] = []

    def connect() -> Producer:
        if made and away:
            raise away.pop()
        made.append(make())
        return made[-1]

    d = Transactional(connect, clients.consumer(GROUP))
    d.begin()
    d.send("p", b"k", b"x" * 200, SOURCE)  # the topic refuses it: the transaction fails
    with pytest.raises(BatchFailed):
        d.commit({TP0: 1})
    assert d.abort() == [SOURCE]
    d.abort()  # idempotent: nothing open any more
    assert getattr(made[0], "closed", False)
    for _ in away[:]:  # the broker is away: each batch fails before it starts
        with pytest.raises(BatchFailed, match="no producer yet"):
            d.begin()
    d.begin()
    d.send("p", b"k", b"v", SOURCE)
    d.commit({TP0: 1})
    assert len(made) == 2 and values(kafka) == [b"v"] and committed(kafka) == {TP0: 1}
    assert values(kafka, committed_only=False) == [b"v"]  # the refused output never got in


@pytest.mark.parametrize("strategy", ["at-least-once", "exactly-once"])
def test_a_send_the_client_refuses_for_its_size_names_its_record(strategy: str) -> None:
    _, clients = cluster()
    options = {"max_request_bytes": 100}
    if strategy == "exactly-once":
        d: Any = Transactional(transactional(clients, **options), clients.consumer(GROUP))
    else:
        d = AtLeastOnce(lambda: clients.producer(**options), clients.consumer(GROUP))
    first = d.producer
    d.begin()
    d.send("p", b"k", b"v", Record("r", 0, 1, b"{}"))
    with pytest.raises(RecordRefused) as info:
        d.send("p", b"k", b"x" * 101, SOURCE)
    assert info.value.record is SOURCE and isinstance(info.value.error, RecordTooLarge)
    assert d.abort() == []  # the client refused before sending: the producer is unharmed
    assert d.producer is first


@pytest.mark.parametrize("strategy", ["at-least-once", "exactly-once"])
def test_outputs_the_broker_refuses_are_suspects_and_the_producer_is_replaced(
    strategy: str,
) -> None:
    kafka, clients = cluster(output_limit=100)
    made: list[Producer] = []
    make = transactional(clients) if strategy == "exactly-once" else clients.producer

    def tracked() -> Producer:
        made.append(make())
        return made[-1]

    strategies = {"exactly-once": Transactional, "at-least-once": AtLeastOnce}
    d: Any = strategies[strategy](tracked, clients.consumer(GROUP))
    good, big = Record("r", 0, 0, b"{}"), Record("r", 0, 1, b"{}")
    d.begin()
    d.send("p", b"k", b"v", good)
    d.send("p", b"k", b"x" * 200, big)
    with pytest.raises(BatchFailed, match="not delivered"):
        d.commit({TP0: 2})
    assert d.abort() == [big]
    assert getattr(made[0], "closed", False)

    # Sent alone, the good one goes through and the culprit is named.
    d.begin()  # with a new producer
    assert d.producer is made[1]
    d.send("p", b"k", b"v", good, alone=True)
    with pytest.raises(RecordRefused) as info:
        d.send("p", b"k", b"x" * 200, big, alone=True)
    assert info.value.record is big and isinstance(info.value.error, RecordTooLarge)


def test_a_transaction_with_an_undelivered_output_is_not_committed() -> None:
    kafka, clients = cluster(output_limit=100)
    d = Transactional(transactional(clients), clients.consumer(GROUP))
    d.begin()
    d.send("p", b"k", b"v", SOURCE)
    d.send("p", b"k", b"x" * 200, SOURCE)
    with pytest.raises(BatchFailed, match="not delivered"):
        d.commit({TP0: 1})
    assert committed(kafka) == {} and values(kafka) == []


def unconfirmed(make: Callable[[], Producer], went_through: bool) -> Callable[[], Producer]:
    """Producers of which the first one's commit gets no answer, after it reached the broker
    (``went_through``) or before."""
    made: list[Producer] = []

    def connect() -> Producer:
        producer = make()
        if not made:
            commit = producer.commit_transaction

            def no_answer(timeout_s: float) -> None:
                if went_through:
                    commit(timeout_s)
                raise Timeout("the transaction's commit was not confirmed within 30s")

            producer.commit_transaction = no_answer  # type: ignore[method-assign]
        made.append(producer)
        return producer

    return connect


@pytest.mark.parametrize("went_through", [True, False], ids=["committed", "not-committed"])
def test_after_a_commit_that_was_not_confirmed_what_it_committed_is_not_done_again(
    went_through: bool,
) -> None:
    kafka, clients = cluster()
    consumer = clients.consumer(GROUP)
    consumer.assign([TP0, TP1])
    d = Transactional(unconfirmed(transactional(clients), went_through), consumer)
    tp0 = [Record("r", 0, 0, b"{}"), Record("r", 0, 1, b"{}")]
    batch = {TP0: tp0, TP1: [Record("r", 1, 0, b"{}")]}
    assert d.unfinished(batch) is batch
    d.begin()
    d.send("p", b"k", b"v", SOURCE)
    with pytest.raises(BatchFailed, match="not confirmed"):
        d.commit({TP0: 2, TP1: 1})
    d.abort()
    for tp in batch:  # the worker re-reads the failed batch; its next poll brings TP0 only
        consumer.seek(tp, 0)
    # Settled by the replacement producer, then read from the group's committed offsets.
    left = d.unfinished({TP0: tp0})
    if went_through:
        assert left == {} and committed(kafka) == {TP0: 2, TP1: 1}
        assert consumer.position(TP1) == 1  # sought past what was done
        assert values(kafka) == [b"v"]
    else:
        assert left == {TP0: tp0} and committed(kafka) == {}
        assert consumer.position(TP1) == 0
        assert values(kafka) == []
    assert d.unfinished(batch) is batch  # no longer in doubt
