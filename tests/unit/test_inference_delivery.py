"""Delivery strategies' contract, with fake clients: what is committed, and when a batch fails."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from kafka import OffsetAndMetadata, TopicPartition
from kafka.errors import CommitFailedError, KafkaError

from consumers.delivery import AtLeastOnce, BatchFailed, Transactional

TP0, TP1 = TopicPartition("r", 0), TopicPartition("r", 1)


@dataclass
class FakeFuture:
    exception: Exception | None = None

    def failed(self) -> bool:
        return self.exception is not None


@dataclass
class FakeProducer:
    fail_sends: bool = False
    fail_commit: bool = False
    calls: list[str] = field(default_factory=list)
    sent: list[tuple[str, bytes, bytes]] = field(default_factory=list)

    def send(self, topic: str, key: bytes, value: bytes, headers: Any = None) -> FakeFuture:
        self.sent.append((topic, key, value))
        return FakeFuture(KafkaError("broker gone") if self.fail_sends else None)

    def flush(self, timeout: float | None = None) -> None:
        self.calls.append("flush")

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def send_offsets_to_transaction(self, offsets: Any, group: Any) -> None:
        self.calls.append(
            f"offsets {sorted((tp.partition, o.offset) for tp, o in offsets.items())}"
        )

    def commit_transaction(self) -> None:
        if self.fail_commit:
            raise KafkaError("coordinator fenced us")
        self.calls.append("commit")

    def abort_transaction(self) -> None:
        self.calls.append("abort")

    def close(self, timeout: float | None = None) -> None:
        self.calls.append("close")


@dataclass
class FakeConsumer:
    fail_commits: int = 0
    committed: dict[TopicPartition, int] = field(default_factory=dict)

    def commit(self, offsets: dict[TopicPartition, Any], timeout_ms: int | None = None) -> None:
        if self.fail_commits:
            self.fail_commits -= 1
            raise CommitFailedError("rebalance in progress")
        self.committed.update({tp: o.offset for tp, o in offsets.items()})

    def group_metadata(self) -> str:
        return "group"


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
