"""In-memory stand-ins for kafka-python clients, for unit tests of pure logic around them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition
from kafka.errors import CommitFailedError, KafkaError


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
    headers: list[Any] = field(default_factory=list)

    def send(self, topic: str, key: bytes, value: bytes, headers: Any = None) -> FakeFuture:
        self.sent.append((topic, key, value))
        self.headers.append(headers)
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
