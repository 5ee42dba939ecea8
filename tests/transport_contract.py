"""The transport contract as checks, one function per promise of :mod:`riverflow.transport.base`.

``tests/integration/test_transport_contract.py`` runs every check on each real transport against
the broker; ``tests/unit/test_fakes.py`` runs them on the in-memory fake (``tests/fakes.py``), so
worker tests over the fake lean only on what the real transports do too.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from riverflow.errors import ConfigError
from riverflow.transport import lag_samples, topic_partitions
from riverflow.transport.base import Admin, Clients, Consumer, Record, TopicPartition
from riverflow.transport.errors import (
    AbortableTransactionError,
    Fenced,
    RecordTooLarge,
    TopicExists,
    TransportError,
)
from tests.integration.kit import wait_until


@dataclass
class Env:
    """One transport's clients, and bounded waits that suit it (a broker needs seconds)."""

    clients: Clients
    admin: Admin
    timeout_s: float = 60.0
    made: list[str] = field(default_factory=list)

    def topic(self, partitions: int = 1, configs: Mapping[str, str] | None = None) -> str:
        name = f"contract-{uuid.uuid4().hex[:10]}"
        self.admin.create_topic(name, partitions, configs)
        self.made.append(name)
        self.eventually(lambda: self.admin.describe_topics([name]).get(name) == partitions)
        return name

    def eventually(self, check: Callable[[], bool], what: str = "condition") -> None:
        wait_until(check, self.timeout_s, what, interval=0.05)

    def read(
        self, consumers: Iterable[Consumer], until: Callable[[list[Record]], bool]
    ) -> list[Record]:
        """Poll ``consumers`` in turn until the records read so far pass ``until``."""
        records: list[Record] = []
        members = list(consumers)

        def done() -> bool:
            if until(records):
                return True
            for consumer in members:
                for tp, batch in consumer.poll_batch(0.5).items():
                    assert all((r.topic, r.partition) == tp for r in batch)
                    records.extend(batch)
            return False

        wait_until(done, self.timeout_s, lambda: f"the condition ({len(records)} read)", 0)
        return records

    def produce(self, topic: str, values: Iterable[bytes]) -> None:
        """Each value keyed by itself, so that distinct values spread over the partitions."""
        producer = self.clients.producer()
        errors: list[TransportError | None] = []
        for value in values:
            producer.send(topic, value, value, on_delivery=errors.append)
        assert producer.flush(self.timeout_s) == 0
        producer.close(self.timeout_s)
        assert errors and not any(errors)

    def all_partitions(self, consumer: Consumer, topic: str) -> list[TopicPartition]:
        self.eventually(lambda: bool(consumer.partitions_for_topic(topic)), "topic metadata")
        return topic_partitions(consumer, topic)


def group() -> str:
    return f"contract-{uuid.uuid4().hex[:10]}"


def check_produce_and_consume(env: Env) -> None:
    """Keys keep to one partition, headers and values round-trip, batches respect max_records,
    each partition's records come in offset order."""
    topic = env.topic(3)
    producer = env.clients.producer()
    delivered: list[TransportError | None] = []
    for i in range(60):
        key = f"sensor-{i % 10}".encode()
        headers = [("n", str(i).encode()), ("empty", b"")]
        producer.send(topic, key, f"v{i}".encode(), headers, on_delivery=delivered.append)
    assert producer.flush(env.timeout_s) == 0
    assert delivered == [None] * 60
    assert producer.connected()
    assert producer.partitions_for(topic, env.timeout_s) == set(range(3))
    producer.close(env.timeout_s)

    consumer = env.clients.consumer()
    consumer.assign(env.all_partitions(consumer, topic))
    batches: list[int] = []
    records: list[Record] = []

    def read_60() -> bool:
        batch = consumer.poll_batch(0.2, max_records=7)
        batches.append(sum(len(v) for v in batch.values()))
        for part in batch.values():
            records.extend(part)
        return len(records) >= 60

    wait_until(read_60, env.timeout_s, lambda: f"60 records ({len(records)} read)", 0)
    assert consumer.connected()
    consumer.close(env.timeout_s)
    assert len(records) == 60 and max(batches) <= 7
    assert {r.value for r in records} == {f"v{i}".encode() for i in range(60)}
    partitions_of: dict[bytes | None, set[int]] = {}
    for r in records:
        partitions_of.setdefault(r.key, set()).add(r.partition)
        assert dict(r.headers) == {"n": r.value[1:] if r.value else b"", "empty": b""}
        assert r.timestamp > 0
    assert all(len(p) == 1 for p in partitions_of.values())
    for p in range(3):
        offsets = [r.offset for r in records if r.partition == p]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)


def check_commit_sync_and_async(env: Env) -> None:
    """A synchronous commit is visible at once; an asynchronous one after later polls; a new
    member of the group starts from the committed offsets."""
    topic, group_id = env.topic(2), group()
    env.produce(topic, [f"a{i}".encode() for i in range(10)])
    consumer = env.clients.consumer(group_id)
    consumer.subscribe([topic])
    records = env.read([consumer], lambda rs: len(rs) >= 10)
    ends = _next_offsets(records)
    consumer.commit(ends)
    assert consumer.committed(list(ends)) == ends

    env.produce(topic, [f"b{i}".encode() for i in range(4)])
    records += env.read([consumer], lambda rs: len(rs) >= 4)
    ends = _next_offsets(records)
    consumer.commit(ends, asynchronous=True)
    env.eventually(
        lambda: consumer.poll_batch(0.05) == {} and consumer.committed(list(ends)) == ends,
        "asynchronous commit",
    )
    consumer.close(env.timeout_s)

    env.produce(topic, [b"new"])
    successor = env.clients.consumer(group_id)
    successor.subscribe([topic])
    fresh = env.read([successor], lambda rs: len(rs) >= 1)
    successor.close(env.timeout_s)
    assert [r.value for r in fresh] == [b"new"]


def check_positions_lag_and_seek(env: Env) -> None:
    topic = env.topic(1)
    env.produce(topic, [f"p{i}".encode() for i in range(5)])
    consumer = env.clients.consumer()
    (tp,) = env.all_partitions(consumer, topic)
    consumer.assign([tp])
    assert consumer.assignment() == {tp}
    assert consumer.beginning_offsets([tp]) == {tp: 0}
    assert consumer.end_offsets([tp]) == {tp: 5}
    consumer.seek(tp, 0)
    assert consumer.position(tp) == 0
    records = env.read([consumer], lambda rs: len(rs) >= 5)
    assert [r.offset for r in records] == [0, 1, 2, 3, 4]
    assert consumer.position(tp) == 5
    assert consumer.highwater(tp) == 5
    assert lag_samples(consumer, {tp: consumer.position(tp)}) == [([topic, "0"], 0.0)]
    assert lag_samples(consumer, {tp: 3}) == [([topic, "0"], 2.0)]
    consumer.seek(tp, 2)
    assert consumer.position(tp) == 2
    again = env.read([consumer], lambda rs: len(rs) >= 3)
    assert [r.offset for r in again] == [2, 3, 4]
    consumer.close(env.timeout_s)


def check_pause_and_resume(env: Env) -> None:
    topic = env.topic(2)
    producer = env.clients.producer()
    sent: list[TransportError | None] = []
    for i in range(20):
        producer.send(topic, f"k{i}".encode(), b"x", on_delivery=sent.append)
    assert producer.flush(env.timeout_s) == 0 and not any(sent)
    producer.close(env.timeout_s)
    consumer = env.clients.consumer()
    tps = env.all_partitions(consumer, topic)
    consumer.assign(tps)
    ends = consumer.end_offsets(tps)
    assert all(ends.values()), "both partitions have records"
    consumer.pause([tps[0]])
    first = env.read([consumer], lambda rs: len(rs) >= ends[tps[1]])
    assert {r.partition for r in first} == {tps[1].partition}
    consumer.resume([tps[0]])
    rest = env.read([consumer], lambda rs: len(rs) >= ends[tps[0]])
    assert {r.partition for r in rest} == {tps[0].partition}
    consumer.close(env.timeout_s)


class Recorder:
    """A rebalance listener that commits, on revocation, what the test says it processed."""

    def __init__(self) -> None:
        self.assigned: list[set[TopicPartition]] = []
        self.revoked: list[set[TopicPartition]] = []
        self.lost: list[set[TopicPartition]] = []
        self.processed: dict[TopicPartition, int] = {}

    def on_assigned(self, partitions: set[TopicPartition]) -> None:
        self.assigned.append(partitions)

    def on_revoked(self, partitions: set[TopicPartition]) -> Mapping[TopicPartition, int] | None:
        self.revoked.append(partitions)
        return {tp: self.processed[tp] for tp in partitions if tp in self.processed}

    def on_lost(self, partitions: set[TopicPartition]) -> None:
        self.lost.append(partitions)


def check_rebalance(env: Env, cooperative: bool) -> None:
    """Two members split the partitions; what the first processed of those it gives away is
    committed from its revocation callback; close revokes too."""
    topic, group_id = env.topic(4), group()
    env.produce(topic, [f"r{i}".encode() for i in range(40)])
    first, second = Recorder(), Recorder()
    a = env.clients.consumer(group_id, cooperative=cooperative)
    a.subscribe([topic], first)
    records = env.read([a], lambda rs: len(rs) >= 40)
    first.processed = _next_offsets(records)
    everything = set(first.processed)
    assert a.assignment() == everything, (a.assignment(), everything)
    assert set().union(*first.assigned) == everything, (first.assigned, first.revoked)

    b = env.clients.consumer(group_id, cooperative=cooperative)
    b.subscribe([topic], second)

    def split() -> bool:
        # Both members poll at once, as two processes would, for long enough to finish a join
        # on a loaded machine: kafka-python abandons a join that its poll's timeout interrupts,
        # and a group of such members (polled in turn, each waiting on the other) can
        # rebalance until the deadline.
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda member: member.poll_batch(1.0), (a, b)))
        owned_a, owned_b = a.assignment(), b.assignment()
        return (
            bool(owned_a and owned_b)
            and owned_a | owned_b == everything
            and not (owned_a & owned_b)
        )

    env.eventually(split, "the partitions split between two members")
    moved = b.assignment()
    assert moved <= set().union(*first.revoked)
    assert moved <= set().union(*second.assigned)
    assert b.committed(list(moved)) == {tp: first.processed[tp] for tp in moved}
    if cooperative:  # only what moves is revoked
        assert set().union(*first.revoked) == moved
    b.close(env.timeout_s)
    assert set().union(*second.revoked) >= moved
    env.eventually(lambda: a.poll_batch(0.5) == {} and a.assignment() == everything, "regain")
    a.close(env.timeout_s)
    assert not first.lost and not second.lost


def check_transactions(env: Env) -> None:
    """Committed transactions are visible to read_committed readers, with the consumed offsets
    they carried; aborted ones never; an open one holds back what follows it."""
    source, out, group_id = env.topic(1), env.topic(1), group()
    env.produce(source, [b"in0", b"in1", b"in2"])
    reader = env.clients.consumer(group_id)
    reader.subscribe([source])
    consumed = env.read([reader], lambda rs: len(rs) >= 3)
    offsets = _next_offsets(consumed)

    producer = env.clients.producer(transactional_id=f"contract-{uuid.uuid4().hex}")
    producer.init_transactions(env.timeout_s)
    producer.begin_transaction()
    for value in (b"t1a", b"t1b"):
        producer.send(out, None, value)
    producer.send_offsets_to_transaction(offsets, reader.group_metadata(), env.timeout_s)
    producer.commit_transaction(env.timeout_s)
    assert reader.committed(list(offsets)) == offsets
    reader.close(env.timeout_s)

    purged: list[TransportError | None] = []
    producer.begin_transaction()
    producer.send(out, None, b"aborted-1", on_delivery=purged.append)
    producer.send(out, None, b"aborted-2", on_delivery=purged.append)
    producer.flush(env.timeout_s)
    producer.abort_transaction(env.timeout_s)
    assert len(purged) == 2

    producer.begin_transaction()
    producer.send(out, None, b"pending")
    assert producer.flush(env.timeout_s) == 0
    committed = env.clients.consumer()
    tp = env.all_partitions(committed, out)[0]
    committed.assign([tp])
    env.read([committed], lambda rs: [r.value for r in rs] == [b"t1a", b"t1b"])
    uncommitted = env.clients.consumer(committed_only=False)
    uncommitted.assign([tp])
    assert committed.end_offsets([tp])[tp] < uncommitted.end_offsets([tp])[tp]
    producer.commit_transaction(env.timeout_s)
    producer.close(env.timeout_s)

    later = env.read([committed], lambda rs: len(rs) >= 1)
    assert [r.value for r in later] == [b"pending"]
    assert later[0].offset > 4  # transaction markers and aborted records take offsets
    every = env.read([uncommitted], lambda rs: len(rs) >= 5)
    assert [r.value for r in every] == [b"t1a", b"t1b", b"aborted-1", b"aborted-2", b"pending"]
    committed.close(env.timeout_s)
    uncommitted.close(env.timeout_s)


def check_fencing(env: Env) -> None:
    """A second producer with the same transactional id aborts the first one's open transaction
    and fences it: Fenced on its next transactional call, and on every one after."""
    topic = env.topic(1)
    tid = f"contract-{uuid.uuid4().hex}"
    old = env.clients.producer(transactional_id=tid)
    old.init_transactions(env.timeout_s)
    old.begin_transaction()
    old.send(topic, None, b"zombie")
    old.flush(env.timeout_s)
    new = env.clients.producer(transactional_id=tid)
    new.init_transactions(env.timeout_s)
    with pytest.raises(Fenced):
        old.send(topic, None, b"zombie-2")
        old.commit_transaction(env.timeout_s)
    with pytest.raises(Fenced):
        old.begin_transaction()
    new.begin_transaction()
    new.send(topic, None, b"successor")
    new.commit_transaction(env.timeout_s)
    new.close(env.timeout_s)
    old.close(0.1)
    consumer = env.clients.consumer()
    consumer.assign(env.all_partitions(consumer, topic))
    seen = env.read([consumer], lambda rs: len(rs) >= 1)
    consumer.close(env.timeout_s)
    assert [r.value for r in seen] == [b"successor"]


def check_record_too_large(env: Env) -> None:
    """Refused for its size by the client (send raises) or the topic (delivery fails); in a
    transaction the topic's refusal makes the commit abortable."""
    topic = env.topic(1, {"max.message.bytes": "2000"})
    producer = env.clients.producer(max_request_bytes=100_000)
    with pytest.raises(RecordTooLarge):
        producer.send(topic, None, b"x" * 200_000)
    refused: list[TransportError | None] = []
    producer.send(topic, None, b"x" * 5000, on_delivery=refused.append)
    assert producer.flush(env.timeout_s) == 0
    assert len(refused) == 1 and isinstance(refused[0], RecordTooLarge)
    producer.close(env.timeout_s)

    transactional = env.clients.producer(transactional_id=f"contract-{uuid.uuid4().hex}")
    transactional.init_transactions(env.timeout_s)
    transactional.begin_transaction()
    transactional.send(topic, None, b"x" * 5000)
    with pytest.raises(AbortableTransactionError):
        transactional.commit_transaction(env.timeout_s)
    transactional.abort_transaction(env.timeout_s)
    transactional.close(env.timeout_s)


def check_admin(env: Env) -> None:
    name = env.topic(2, {"cleanup.policy": "compact"})
    missing = f"contract-missing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(TopicExists):
        env.admin.create_topic(name, 2)
    assert env.admin.describe_topics([name, missing]) == {name: 2}
    assert env.admin.describe_configs([name])[name]["cleanup.policy"] == "compact"
    env.admin.create_partitions(name, 3)
    env.eventually(lambda: env.admin.describe_topics([name]) == {name: 3}, "new partition")
    consumer = env.clients.consumer()
    env.eventually(lambda: consumer.partitions_for_topic(name) == {0, 1, 2}, "partition metadata")
    assert consumer.partitions_for_topic(missing) == set()
    with pytest.raises(ConfigError, match="does not exist"):
        topic_partitions(consumer, missing)
    consumer.close(env.timeout_s)

    group_id = group()
    member = env.clients.consumer(group_id)
    member.assign([TopicPartition(name, 0)])
    member.commit({TopicPartition(name, 0): 0})
    member.close(env.timeout_s)
    env.eventually(lambda: group_id in env.admin.list_consumer_groups(), "group listed")
    env.admin.delete_consumer_groups([group_id])
    env.eventually(lambda: group_id not in env.admin.list_consumer_groups(), "group deleted")
    env.admin.delete_topics([name])
    env.eventually(lambda: name not in env.admin.list_topics(), "topic deleted")


def _next_offsets(records: Iterable[Record]) -> dict[TopicPartition, int]:
    ends: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        ends[tp] = max(ends.get(tp, 0), r.offset + 1)
    return ends


CHECKS: list[Callable[[Env], None]] = [
    check_produce_and_consume,
    check_commit_sync_and_async,
    check_positions_lag_and_seek,
    check_pause_and_resume,
    lambda env: check_rebalance(env, cooperative=False),
    lambda env: check_rebalance(env, cooperative=True),
    check_transactions,
    check_fencing,
    check_record_too_large,
    check_admin,
]
CHECK_IDS = [
    "produce_and_consume",
    "commit_sync_and_async",
    "positions_lag_and_seek",
    "pause_and_resume",
    "rebalance_eager",
    "rebalance_cooperative",
    "transactions",
    "fencing",
    "record_too_large",
    "admin",
]
