"""Delivery strategies' contract, with fake clients: what is committed, and when a batch fails."""

from __future__ import annotations

import pytest
from kafka import OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from consumers.delivery import AtLeastOnce, BatchFailed, RecordRefused, Transactional
from tests.unit.kafka_fakes import FakeConsumer, FakeProducer, Record

TP0, TP1 = TopicPartition("r", 0), TopicPartition("r", 1)
SOURCE = Record("r", 0, 5, b"{}")


def offsets(**by_partition: int) -> dict[TopicPartition, OffsetAndMetadata]:
    return {
        TopicPartition("r", int(p[1:])): OffsetAndMetadata(o, "", -1)
        for p, o in by_partition.items()
    }


def test_at_least_once_flushes_then_commits() -> None:
    prod, cons = FakeProducer(), FakeConsumer()
    d = AtLeastOnce(lambda: prod, cons)
    d.begin()
    d.send("p", b"k", b"v", SOURCE)
    produced_ms = d.commit(offsets(p0=10, p1=4))
    assert prod.calls == ["flush"] and cons.committed == {TP0: 10, TP1: 4}
    assert produced_ms > 0


def test_at_least_once_never_commits_a_batch_with_an_undelivered_send() -> None:
    prod, cons = FakeProducer(fail_sends=True), FakeConsumer()
    d = AtLeastOnce(lambda: prod, cons)
    d.begin()
    d.send("p", b"k", b"v", SOURCE)
    with pytest.raises(BatchFailed, match="not delivered"):
        d.commit(offsets(p0=10))
    assert cons.committed == {}


def test_a_failed_commit_stays_pending_until_the_next_batch_or_revocation() -> None:
    prod, cons = FakeProducer(), FakeConsumer(fail_commits=1)
    d = AtLeastOnce(lambda: prod, cons)
    d.begin()
    d.commit(offsets(p0=10, p1=4))
    assert cons.committed == {}
    assert d.take_pending([TP1]) == offsets(p1=4)  # the listener commits what it gives away
    d.begin()
    d.commit(offsets(p0=20))
    assert cons.committed == {TP0: 20}
    assert d.take_pending([TP0, TP1]) == {}


def test_at_least_once_close_commits_what_is_pending() -> None:
    prod, cons = FakeProducer(), FakeConsumer(fail_commits=1)
    d = AtLeastOnce(lambda: prod, cons)
    d.begin()
    d.commit(offsets(p0=7))
    d.close(1.0)
    assert cons.committed == {TP0: 7} and prod.calls[-1] == "close"


def test_transactional_commits_offsets_inside_the_transaction() -> None:
    prod, cons = FakeProducer(), FakeConsumer()
    d = Transactional(lambda: prod, cons)
    d.begin()
    d.send("p", b"k", b"v", SOURCE)
    d.commit(offsets(p1=3, p0=9))
    assert prod.calls == ["begin", "flush", "offsets [(0, 9), (1, 3)]", "commit"]
    assert cons.committed == {}  # never through the consumer
    assert d.take_pending([TP0]) == {}


def test_a_flush_waits_for_a_broker_that_is_away_until_a_stop_gives_the_batch_up() -> None:
    prod, cons = FakeProducer(flush_timeouts=3), FakeConsumer()
    d = AtLeastOnce(lambda: prod, cons)
    d.begin()
    d.commit(offsets(p0=5))  # three slices without the broker, then it is back
    assert prod.calls == ["flush"] and cons.committed == {TP0: 5}
    prod.flush_timeouts = 3
    stopped = AtLeastOnce(lambda: prod, cons, stop_requested=lambda: True)
    stopped.begin()
    with pytest.raises(BatchFailed, match="stopping"):
        stopped.commit(offsets(p0=9))
    assert cons.committed == {TP0: 5}


def test_a_failed_transaction_goes_with_its_producer_and_the_next_batch_reconnects() -> None:
    first, cons = FakeProducer(fail_commit=True), FakeConsumer()
    away = [KafkaTimeoutError("no broker"), KafkaTimeoutError("no broker")]
    made: list[FakeProducer] = []

    def connect() -> FakeProducer:
        if not made:
            made.append(first)
        elif away:
            raise away.pop()
        else:
            made.append(FakeProducer())
        return made[-1]

    d = Transactional(connect, cons)
    d.begin()
    with pytest.raises(BatchFailed, match="fenced"):
        d.commit(offsets(p0=1))
    d.abort()
    d.abort()  # idempotent: nothing open any more
    # Never abort_transaction(): it can fail, or wait for a broker that is away.
    assert first.calls == ["begin", "flush", "offsets [(0, 1)]", "close"]
    for _ in away[:]:  # the broker is away: each batch fails before it starts
        with pytest.raises(BatchFailed, match="no producer yet"):
            d.begin()
    d.begin()
    d.commit(offsets(p0=1))
    assert len(made) == 2 and made[1].calls == ["begin", "flush", "offsets [(0, 1)]", "commit"]


@pytest.mark.parametrize("strategy", [AtLeastOnce, Transactional])
def test_a_send_the_client_refuses_for_its_size_names_its_record(strategy: type) -> None:
    prod = FakeProducer(client_limit=100)
    d = strategy(lambda: prod, FakeConsumer())
    d.begin()
    d.send("p", b"k", b"v", Record("r", 0, 1, b"{}"))
    with pytest.raises(RecordRefused) as info:
        d.send("p", b"k", b"x" * 101, SOURCE)
    assert info.value.record is SOURCE and isinstance(info.value.error, MessageSizeTooLargeError)
    assert d.abort() == []  # the client refused before sending: the producer is unharmed
    assert d.producer is prod


@pytest.mark.parametrize("strategy", [AtLeastOnce, Transactional])
def test_outputs_the_broker_refuses_are_suspects_and_the_producer_is_replaced(
    strategy: type,
) -> None:
    made = [FakeProducer(broker_limit=100), FakeProducer(broker_limit=100)]
    producers = iter(made)
    d = strategy(lambda: next(producers), FakeConsumer())
    good, big, after = (Record("r", 0, i, b"{}") for i in range(3))
    d.begin()
    d.send("p", b"k", b"v", good)
    d.send("p", b"k", b"x" * 101, big)
    d.send("p", b"k", b"v", after)  # fails too, with the same error: a collateral
    with pytest.raises(BatchFailed, match="not delivered"):
        d.commit(offsets(p0=3))
    assert d.abort() == [big, after]
    assert "close" in made[0].calls

    # Sent alone, the collateral goes through and the culprit is named.
    d.begin()  # with a new producer
    assert d.producer is made[1]
    d.send("p", b"k", b"v", after, alone=True)
    with pytest.raises(RecordRefused) as info:
        d.send("p", b"k", b"x" * 101, big, alone=True)
    assert info.value.record is big
    assert made[1].delivered("p") == [(b"k", b"v", {})]


def test_a_transaction_with_an_undelivered_output_is_not_committed() -> None:
    prod = FakeProducer(fail_sends=True)
    d = Transactional(lambda: prod, FakeConsumer())
    d.begin()
    d.send("p", b"k", b"v", SOURCE)
    with pytest.raises(BatchFailed, match="not delivered"):
        d.commit(offsets(p0=1))
    assert "commit" not in prod.calls
