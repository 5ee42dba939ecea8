"""In-memory stand-ins for kafka-python clients, for unit tests of pure logic around them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition
from kafka.errors import (
    CommitFailedError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
)


@dataclass
class FakeFuture:
    exception: Exception | None = None

    def failed(self) -> bool:
        return self.exception is not None


@dataclass
class FakeProducer:
    """Records what is sent. Like kafka-python 3.0: a value over ``client_limit`` bytes is
    refused by send() itself; one over ``broker_limit`` fails its future, and so does every
    later send of this producer, with the same error (the idempotent producer's fatal state)."""

    fail_sends: bool = False
    fail_commit: bool = False
    flush_timeouts: int = 0  # flushes that time out first (the broker away)
    client_limit: int = 10**9
    broker_limit: int = 10**9
    calls: list[str] = field(default_factory=list)
    sent: list[tuple[str, bytes | None, bytes | None]] = field(default_factory=list)
    headers: list[Any] = field(default_factory=list)
    fatal: Exception | None = None

    def send(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Any = None
    ) -> FakeFuture:
        if key is None and value is None:
            raise ValueError("Need at least one: key or value")
        size = len(value or b"")
        if size > self.client_limit:
            raise MessageSizeTooLargeError(f"The message is {size} bytes when serialized")
        if self.fatal is None and size > self.broker_limit:
            self.fatal = MessageSizeTooLargeError()
        if self.fatal is not None:
            return FakeFuture(self.fatal)
        self.sent.append((topic, key, value))
        self.headers.append(headers)
        return FakeFuture(KafkaError("broker gone") if self.fail_sends else None)

    def delivered(self, topic: str) -> list[tuple[bytes | None, bytes | None, dict[str, bytes]]]:
        """(key, value, headers) of every record this producer got into ``topic``."""
        return [
            (k, v, dict(h or []))
            for (t, k, v), h in zip(self.sent, self.headers, strict=True)
            if t == topic
        ]

    def flush(self, timeout: float | None = None) -> None:
        if self.flush_timeouts:
            self.flush_timeouts -= 1
            raise KafkaTimeoutError("Timeout waiting for future")
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
    seeks: list[tuple[TopicPartition, int]] = field(default_factory=list)
    assigned: set[TopicPartition] = field(
        default_factory=lambda: {TopicPartition("r", p) for p in range(4)}
    )

    def commit(self, offsets: dict[TopicPartition, Any], timeout_ms: int | None = None) -> None:
        if self.fail_commits:
            self.fail_commits -= 1
            raise CommitFailedError("rebalance in progress")
        self.committed.update({tp: o.offset for tp, o in offsets.items()})

    def group_metadata(self) -> str:
        return "group"

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))


@dataclass
class Record:
    """What the workers read from a kafka-python ConsumerRecord."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = b"k"
    headers: list[Any] = field(default_factory=list)
