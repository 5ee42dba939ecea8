"""An in-memory Kafka behind the transport contract (:mod:`riverflow.transport.base`), for unit
tests of the workers' loops. It keeps what the contract promises and tests are likely to lean on:

- partition logs whose offsets have gaps where real Kafka writes transaction markers;
- read_committed: records of an open transaction hold back later ones (the last stable offset),
  aborted ones are never returned;
- consumer groups whose rebalances run inside the members' ``poll_batch``: a partition moves to
  its new owner only after the old one revoked it (and committed what ``on_revoked`` returned);
  :meth:`FakeKafka.evict` makes a member's next poll report its partitions lost;
- deliveries that settle, and call ``on_delivery``, in ``flush`` (or a transaction's commit);
- transactional ids with epochs: ``init_transactions`` aborts the previous producer's open
  transaction and fences it;
- Kafka's record-size refusals: by the client (``send`` raises) and by the topic (delivery fails;
  in a transaction, the commit then raises AbortableTransactionError).

It is held to the same assertions as the real transports (``tests/transport_contract.py``).
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from riverflow.transport.base import (
    Batch,
    DeliveryCallback,
    Headers,
    Message,
    RebalanceListener,
    Record,
    TopicPartition,
)
from riverflow.transport.errors import (
    AbortableTransactionError,
    BrokerUnavailable,
    CommitFailed,
    Fenced,
    RecordTooLarge,
    TopicExists,
    TopicMissing,
    TransportError,
)

DEFAULT_MAX_MESSAGE_BYTES = 1_048_588


@dataclass
class _Entry:
    message: Message | None  # None: a transaction marker
    state: str = "committed"  # committed, open or aborted
    writer: FakeProducer | None = None  # of an open or aborted record


@dataclass
class _Group:
    members: list[FakeConsumer] = field(default_factory=list)
    owners: dict[TopicPartition, FakeConsumer] = field(default_factory=dict)
    generation: int = 0


class FakeKafka:
    """One in-memory cluster; make its clients with :meth:`clients`."""

    def __init__(self) -> None:
        self.logs: dict[str, list[list[_Entry]]] = {}
        self.configs: dict[str, dict[str, str]] = {}
        self.offsets: dict[str, dict[TopicPartition, int]] = {}  # committed, per group
        self.groups: dict[str, _Group] = {}
        self.epochs: dict[str, int] = {}  # transactional id -> current epoch
        self.open: dict[str, FakeProducer] = {}  # transactional id -> producer mid-transaction
        self.down = False  # an outage: nothing is fetched or delivered, clients not connected
        self._clock = itertools.count(1_700_000_000_000)

    def clients(self, max_poll_records: int = 500) -> FakeClients:
        return FakeClients(self, max_poll_records)

    # -- the cluster's side ----------------------------------------------------------------

    def log(self, tp: TopicPartition) -> list[_Entry]:
        partitions = self.logs.get(tp.topic)
        if partitions is None or not 0 <= tp.partition < len(partitions):
            raise TopicMissing(f"unknown topic or partition {tp}", "UNKNOWN_TOPIC_OR_PART")
        return partitions[tp.partition]

    def stable_end(self, tp: TopicPartition) -> int:
        """The last stable offset: the first offset of an open transaction, else the end."""
        entries = self.log(tp)
        return next((i for i, e in enumerate(entries) if e.state == "open"), len(entries))

    def append(
        self, tp: TopicPartition, message: Message, writer: FakeProducer | None = None
    ) -> int:
        """Append a record; one of ``writer``'s open transaction when given."""
        entries = self.log(tp)
        offset = len(entries)
        stamped = message._replace(offset=offset, timestamp=next(self._clock))
        entries.append(_Entry(stamped, "open" if writer else "committed", writer))
        return offset

    def partition_for(self, topic: str, key: bytes | None, counter: int) -> int:
        n = len(self.logs[topic])
        return (zlib.crc32(key) if key is not None else counter) % n

    def evict(self, consumer: FakeConsumer) -> None:
        """As a session timeout: the member's partitions are reported lost at its next poll."""
        consumer.evicted = True

    def group(self, group_id: str) -> _Group:
        return self.groups.setdefault(group_id, _Group())

    def rebalance(self, group: _Group) -> None:
        """Target assignment: each subscribed topic's partitions, round robin over the members
        in join order. Members apply it in their next poll."""
        group.generation += 1
        members = group.members
        if not members:
            return
        topics = sorted({t for m in members for t in m.topics})
        partitions = [
            TopicPartition(t, p) for t in topics if t in self.logs for p in range(len(self.logs[t]))
        ]
        for member in members:
            member.target = set()
        for i, tp in enumerate(partitions):
            members[i % len(members)].target.add(tp)


class FakeClients:
    name = "fake"

    def __init__(self, kafka: FakeKafka, max_poll_records: int) -> None:
        self.kafka = kafka
        self.max_poll_records = max_poll_records

    def consumer(
        self,
        group_id: str | None = None,
        *,
        cooperative: bool = False,
        session_timeout_ms: int | None = None,
        heartbeat_interval_ms: int | None = None,
        max_record_bytes: int | None = None,
        committed_only: bool = True,
    ) -> FakeConsumer:
        return FakeConsumer(
            self.kafka, group_id, cooperative, committed_only, self.max_poll_records
        )

    def producer(
        self,
        *,
        transactional_id: str | None = None,
        transaction_timeout_ms: int | None = None,
        max_request_bytes: int | None = None,
        linger_ms: int | None = None,
        max_block_s: float | None = None,
    ) -> FakeProducer:
        return FakeProducer(self.kafka, transactional_id, max_request_bytes or 4 * 1024 * 1024)

    def admin(self) -> FakeAdmin:
        return FakeAdmin(self.kafka)


class FakeConsumer:
    def __init__(
        self,
        kafka: FakeKafka,
        group_id: str | None,
        cooperative: bool,
        committed_only: bool,
        max_records: int,
    ) -> None:
        self.kafka = kafka
        self.group_id = group_id
        self.cooperative = cooperative
        self.committed_only = committed_only
        self.max_records = max_records
        self.topics: list[str] = []
        self.listener: RebalanceListener | None = None
        self.owned: set[TopicPartition] = set()
        self.target: set[TopicPartition] = set()
        self.generation = 0
        self.evicted = False
        self.positions: dict[TopicPartition, int] = {}
        self.paused: set[TopicPartition] = set()
        self.fetched: set[TopicPartition] = set()
        self.closed = False

    # -- membership ------------------------------------------------------------------------

    def subscribe(self, topics: Sequence[str], listener: RebalanceListener | None = None) -> None:
        assert self.group_id is not None, "subscribe needs a group"
        self.topics, self.listener = list(topics), listener
        group = self.kafka.group(self.group_id)
        group.members.append(self)
        self.kafka.rebalance(group)

    def _join(self) -> None:
        """Apply the group's latest assignment, as a real client does inside poll."""
        if self.group_id is None or not self.topics:
            return
        group = self.kafka.group(self.group_id)
        if self.evicted:
            self.evicted = False
            lost, self.owned = self.owned, set()
            for tp in lost:
                group.owners.pop(tp, None)
                self._drop(tp)
            if lost and self.listener is not None:
                self.listener.on_lost(lost)
            self.kafka.rebalance(group)
        if self.generation != group.generation:
            self.generation = group.generation
            # Eager assignors take everything back at a rebalance; cooperative ones what moves.
            revoked = self.owned - self.target if self.cooperative else set(self.owned)
            if revoked:
                self._revoke(revoked)
        # A partition moves only once its previous owner gave it up.
        free = {tp for tp in self.target - self.owned if tp not in group.owners}
        if free:
            self.owned |= free
            for tp in free:
                group.owners[tp] = self
            if self.listener is not None:
                self.listener.on_assigned(free)

    def _revoke(self, partitions: set[TopicPartition]) -> None:
        assert self.group_id is not None
        group = self.kafka.group(self.group_id)
        offsets = self.listener.on_revoked(set(partitions)) if self.listener else None
        if offsets:
            self.kafka.offsets.setdefault(self.group_id, {}).update(offsets)
        self.owned -= partitions
        for tp in partitions:
            if group.owners.get(tp) is self:
                del group.owners[tp]
            self._drop(tp)

    def _drop(self, tp: TopicPartition) -> None:
        self.positions.pop(tp, None)
        self.paused.discard(tp)
        self.fetched.discard(tp)

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        wanted = set(partitions)
        for tp in self.owned - wanted:
            self._drop(tp)
        for tp in wanted:
            self.kafka.log(tp)
        self.owned = wanted

    def assignment(self) -> set[TopicPartition]:
        return set(self.owned)

    # -- reading ---------------------------------------------------------------------------

    def _start(self, tp: TopicPartition) -> int:
        position = self.positions.get(tp)
        if position is None:
            committed = self.kafka.offsets.get(self.group_id or "", {}).get(tp)
            position = 0 if committed is None else committed
            self.positions[tp] = position
        return position

    def _end(self, tp: TopicPartition) -> int:
        return self.kafka.stable_end(tp) if self.committed_only else len(self.kafka.log(tp))

    def poll_batch(self, timeout_s: float, max_records: int | None = None) -> Batch:
        if self.kafka.down:
            return {}
        self._join()
        room = max_records or self.max_records
        batch: Batch = {}
        for tp in sorted(self.owned - self.paused):
            position, end = self._start(tp), self._end(tp)
            entries = self.kafka.log(tp)
            records: list[Record] = []
            while position < end and len(records) < room:
                entry = entries[position]
                position += 1
                if entry.message is not None and (
                    entry.state == "committed" or not self.committed_only
                ):
                    records.append(entry.message)
            self.positions[tp] = position
            self.fetched.add(tp)
            if records:
                batch[tp] = records
                room -= len(records)
            if room == 0:
                break
        return batch

    # -- offsets ---------------------------------------------------------------------------

    def commit(self, offsets: Mapping[TopicPartition, int], asynchronous: bool = False) -> None:
        assert self.group_id is not None, "an assign-only reader commits nothing"
        if self.topics and not set(offsets) <= self.owned:
            error = CommitFailed("partitions not owned: the group rebalanced", "ILLEGAL_GENERATION")
            if asynchronous:
                return  # logged by a real client; a later commit covers it
            raise error
        self.kafka.offsets.setdefault(self.group_id, {}).update(offsets)

    def position(self, partition: TopicPartition, timeout_s: float = 0.1) -> int | None:
        return self._start(partition) if partition in self.owned else None

    def committed(
        self, partitions: Collection[TopicPartition], timeout_s: float = 10.0
    ) -> dict[TopicPartition, int | None]:
        stored = self.kafka.offsets.get(self.group_id or "", {})
        return {tp: stored.get(tp) for tp in partitions}

    def beginning_offsets(
        self, partitions: Collection[TopicPartition], timeout_s: float = 10.0
    ) -> dict[TopicPartition, int]:
        for tp in partitions:
            self.kafka.log(tp)
        return dict.fromkeys(partitions, 0)

    def end_offsets(
        self, partitions: Collection[TopicPartition], timeout_s: float = 10.0
    ) -> dict[TopicPartition, int]:
        return {tp: self._end(tp) for tp in partitions}

    def highwater(self, partition: TopicPartition) -> int | None:
        return self._end(partition) if partition in self.fetched else None

    def seek(self, partition: TopicPartition, offset: int) -> None:
        assert partition in self.owned, f"{partition} is not assigned"
        self.positions[partition] = offset

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        self.paused |= set(partitions)

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self.paused -= set(partitions)

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(len(self.kafka.logs.get(topic, []))))

    def group_metadata(self) -> Any:
        return (self.group_id, self.generation, self)

    def connected(self) -> bool:
        return not self.kafka.down

    def close(self, timeout_s: float) -> None:
        if self.group_id is not None and self.topics:
            group = self.kafka.group(self.group_id)
            self._revoke(set(self.owned))
            if self in group.members:
                group.members.remove(self)
            self.kafka.rebalance(group)
        self.closed = True


class FakeProducer:
    def __init__(self, kafka: FakeKafka, transactional_id: str | None, max_request: int) -> None:
        self.kafka = kafka
        self.transactional_id = transactional_id
        self.max_request = max_request
        self.epoch = -1
        self.queued: list[tuple[Message, DeliveryCallback | None]] = []
        self.in_transaction = False
        self.written: list[TopicPartition] = []  # this transaction's partitions
        self.txn_offsets: dict[str, dict[TopicPartition, int]] = {}
        self.txn_failed: TransportError | None = None
        self.undelivered: list[TransportError] = []  # failures without an on_delivery
        self._counter = itertools.count()
        self.closed = False

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        size = len(key or b"") + len(value or b"")
        if size > self.max_request:
            raise RecordTooLarge(f"the record is {size} bytes", "MSG_SIZE_TOO_LARGE")
        if self.transactional_id is not None and not self.in_transaction:
            raise TransportError("send outside a transaction", "_STATE")
        partition = self.kafka.partition_for(topic, key, next(self._counter))
        message = Message(topic, partition, -1, key, value, list(headers or []), 0)
        self.queued.append((message, on_delivery))

    def flush(self, timeout_s: float) -> int:
        if self.kafka.down:
            return len(self.queued)
        queued, self.queued = self.queued, []
        for message, on_delivery in queued:
            error = self._deliver(message)
            if on_delivery is not None:
                on_delivery(error)
            elif error is not None:
                self.undelivered.append(error)
        return 0

    def _deliver(self, message: Message) -> TransportError | None:
        limit = int(
            self.kafka.configs.get(message.topic, {}).get(
                "max.message.bytes", DEFAULT_MAX_MESSAGE_BYTES
            )
        )
        size = len(message.key or b"") + len(message.value or b"")
        if size > limit:
            error = RecordTooLarge(f"the record is {size} bytes", "MSG_SIZE_TOO_LARGE")
            if self.in_transaction:
                self.txn_failed = error
            return error
        tp = TopicPartition(message.topic, message.partition)
        self.kafka.append(tp, message, self if self.in_transaction else None)
        if self.in_transaction:
            self.written.append(tp)
        return None

    # -- transactions ----------------------------------------------------------------------

    def _check_epoch(self) -> None:
        assert self.transactional_id is not None
        if self.kafka.epochs.get(self.transactional_id) != self.epoch:
            raise Fenced("a newer producer took over the transactional id", "_FENCED")

    def init_transactions(self, timeout_s: float) -> None:
        tid = self.transactional_id
        assert tid is not None
        previous = self.kafka.open.pop(tid, None)
        if previous is not None:  # the broker aborts it; the previous producer is not told
            previous._settle("aborted")
        self.epoch = self.kafka.epochs[tid] = self.kafka.epochs.get(tid, -1) + 1

    def begin_transaction(self) -> None:
        self._check_epoch()
        assert not self.in_transaction, "a transaction is open already"
        self.in_transaction = True
        self.kafka.open[self.transactional_id or ""] = self

    def send_offsets_to_transaction(
        self, offsets: Mapping[TopicPartition, int], group_metadata: Any, timeout_s: float
    ) -> None:
        self._check_epoch()
        group_id, generation, member = group_metadata
        if member.topics and generation != self.kafka.group(group_id).generation:
            self.txn_failed = CommitFailed("stale group generation", "ILLEGAL_GENERATION")
        self.txn_offsets.setdefault(group_id, {}).update(offsets)

    def commit_transaction(self, timeout_s: float) -> None:
        self._check_epoch()
        self.flush(timeout_s)
        if self.txn_failed is not None:
            raise AbortableTransactionError(str(self.txn_failed), self.txn_failed.code)
        for group_id, offsets in self.txn_offsets.items():
            self.kafka.offsets.setdefault(group_id, {}).update(offsets)
        self._end("committed")

    def abort_transaction(self, timeout_s: float) -> None:
        self._check_epoch()
        queued, self.queued = self.queued, []
        for _, on_delivery in queued:
            if on_delivery is not None:
                on_delivery(TransportError("purged by the transaction's abort", "_PURGE_QUEUE"))
        self._end("aborted")

    def _end(self, state: str) -> None:
        self._settle(state)
        self.txn_offsets, self.txn_failed = {}, None
        self.in_transaction = False
        if self.kafka.open.get(self.transactional_id or "") is self:
            del self.kafka.open[self.transactional_id or ""]

    def _settle(self, state: str) -> None:
        """Settle this transaction's records and write a marker after them, as Kafka does."""
        for tp in dict.fromkeys(self.written):
            for entry in self.kafka.log(tp):
                if entry.writer is self and entry.state == "open":
                    entry.state = state
            self.kafka.log(tp).append(_Entry(None))
        self.written = []

    def partitions_for(self, topic: str, timeout_s: float) -> set[int]:
        return set(range(len(self.kafka.logs.get(topic, []))))

    def connected(self) -> bool:
        return not self.kafka.down

    def close(self, timeout_s: float) -> None:
        if not self.in_transaction:
            self.flush(timeout_s)
        for _, on_delivery in self.queued:  # the broker away: what waits fails
            if on_delivery is not None:
                on_delivery(BrokerUnavailable("the producer closed first", "bootstrap"))
        self.queued = []
        self.closed = True


class FakeAdmin:
    def __init__(self, kafka: FakeKafka) -> None:
        self.kafka = kafka

    def list_topics(self) -> set[str]:
        return set(self.kafka.logs)

    def create_topic(
        self, name: str, partitions: int, configs: Mapping[str, str] | None = None
    ) -> None:
        if name in self.kafka.logs:
            raise TopicExists(f"topic {name!r} already exists", "TOPIC_ALREADY_EXISTS")
        self.kafka.logs[name] = [[] for _ in range(partitions)]
        self.kafka.configs[name] = dict(configs or {})

    def describe_topics(self, names: Collection[str]) -> dict[str, int]:
        return {n: len(self.kafka.logs[n]) for n in names if n in self.kafka.logs}

    def describe_configs(self, names: Collection[str]) -> dict[str, dict[str, str]]:
        return {n: dict(self.kafka.configs[n]) for n in names if n in self.kafka.configs}

    def create_partitions(self, topic: str, total: int) -> None:
        partitions = self.kafka.logs[topic]
        partitions.extend([] for _ in range(total - len(partitions)))
        for group in self.kafka.groups.values():
            if any(topic in m.topics for m in group.members):
                self.kafka.rebalance(group)

    def delete_topics(self, names: Collection[str]) -> None:
        for name in names:
            self.kafka.logs.pop(name, None)
            self.kafka.configs.pop(name, None)

    def list_consumer_groups(self) -> set[str]:
        return set(self.kafka.groups) | set(self.kafka.offsets)

    def group_offsets(self, group_id: str) -> dict[TopicPartition, int]:
        return dict(self.kafka.offsets.get(group_id, {}))

    def group_members(self, group_ids: Collection[str]) -> dict[str, int]:
        return {
            g: len(self.kafka.groups[g].members) if g in self.kafka.groups else 0 for g in group_ids
        }

    def delete_consumer_groups(self, group_ids: Collection[str]) -> None:
        for group_id in group_ids:
            self.kafka.groups.pop(group_id, None)
            self.kafka.offsets.pop(group_id, None)

    def close(self) -> None:
        """Nothing to release."""
