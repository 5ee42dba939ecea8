"""Delivery strategies' contract, with fake clients: what is committed, and when a batch fails."""

from __future__ import annotations

import pytest
from kafka import OffsetAndMetadata, TopicPartition

from consumers.delivery import AtLeastOnce, BatchFailed, Transactional
from tests.unit.kafka_fakes import FakeConsumer, FakeProducer

TP0, TP1 = TopicPartition("r", 0), TopicPartition("r", 1)


def offsets(**by_partition: int) -> dict[TopicPartition, OffsetAndMetadata]:
    return {
        TopicPartition("r", int(p[1:])): OffsetAndMetadata(o, "", -1)
        for p, o in by_partition.items()
    }


def test_at_least_once_flushes_then_commits() -> None:
    prod, cons = FakeProducer(), FakeConsumer()
    d = AtLeastOnce(prod, cons)
    d.begin()
    d.send("p", b"k", b"v")
    produced_ms = d.commit(offsets(p0=10, p1=4))
    assert prod.calls == ["flush"] and cons.committed == {TP0: 10, TP1: 4}
    assert produced_ms > 0


def test_at_least_once_never_commits_a_batch_with_an_undelivered_send() -> None:
    prod, cons = FakeProducer(fail_sends=True), FakeConsumer()
    d = AtLeastOnce(prod, cons)
    d.begin()
    d.send("p", b"k", b"v")
    with pytest.raises(BatchFailed, match="not delivered"):
        d.commit(offsets(p0=10))
    assert cons.committed == {}


def test_a_failed_commit_stays_pending_until_the_next_batch_or_revocation() -> None:
    prod, cons = FakeProducer(), FakeConsumer(fail_commits=1)
    d = AtLeastOnce(prod, cons)
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
    d = AtLeastOnce(prod, cons)
    d.begin()
    d.commit(offsets(p0=7))
    d.close(1.0)
    assert cons.committed == {TP0: 7} and prod.calls[-1] == "close"


def test_transactional_commits_offsets_inside_the_transaction() -> None:
    prod, cons = FakeProducer(), FakeConsumer()
    d = Transactional(prod, cons)
    d.begin()
    d.send("p", b"k", b"v")
    d.commit(offsets(p1=3, p0=9))
    assert prod.calls == ["begin", "offsets [(0, 9), (1, 3)]", "commit"]
    assert cons.committed == {}  # never through the consumer
    assert d.take_pending([TP0]) == {}


def test_a_failed_transaction_raises_batch_failed_and_aborts() -> None:
    prod, cons = FakeProducer(fail_commit=True), FakeConsumer()
    d = Transactional(prod, cons)
    d.begin()
    with pytest.raises(BatchFailed, match="fenced"):
        d.commit(offsets(p0=1))
    d.abort()
    d.abort()  # idempotent: nothing open any more
    assert prod.calls.count("abort") == 1
