"""The transport contract: exactly the Kafka operations riverflow's workers and tools use.

Two implementations honour it, :mod:`riverflow.transport.kafka_python` and
:mod:`riverflow.transport.confluent`, and ``tests/fakes.py`` fakes it in memory; one contract
test module (``tests/integration/test_transport_contract.py``) holds them all to what the
docstrings below promise. Failures are :mod:`riverflow.transport.errors` types, never a
client's own exceptions.

Every client is driven from one thread (the worker's loop), except where a method says
otherwise. Offsets are always *next* offsets: the offset of the next record to read.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from riverflow import dead_letters
from riverflow.errors import ConfigError
from riverflow.transport.errors import TransportError

if TYPE_CHECKING:
    from riverflow.settings import Settings


class TopicPartition(NamedTuple):
    topic: str
    partition: int


Headers = Sequence[tuple[str, bytes | None]]


class Record(Protocol):
    """One consumed record; read-only. ``timestamp`` is epoch ms; ``headers`` may be empty."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Headers: ...
    @property
    def timestamp(self) -> int: ...


class Message(NamedTuple):
    """A :class:`Record` as a plain tuple: what the confluent transport and the fakes return
    (kafka-python's own records already have these attributes and pass through as they are)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp: int


Batch = dict[TopicPartition, list[Record]]
DeliveryCallback = Callable[[TransportError | None], None]


class RebalanceListener(Protocol):
    """Told when the group gives or takes partitions (:meth:`Consumer.subscribe`).

    Callbacks run while the consumer's thread is inside :meth:`Consumer.poll_batch` or
    :meth:`Consumer.close`, never concurrently with its other calls; but possibly on a client
    thread (kafka-python), so they must not call the consumer. They must not raise.
    """

    def on_assigned(self, partitions: set[TopicPartition]) -> None:
        """``partitions`` were added to this member (with an eager assignor: its whole new
        assignment). Reading them starts after the callback."""

    def on_revoked(self, partitions: set[TopicPartition]) -> Mapping[TopicPartition, int] | None:
        """``partitions`` are about to go to another member (also on close). Returns the offsets
        to commit first: the transport commits them synchronously before giving the
        partitions away, bounded by the client's request timeout; a failure is logged (the
        new owner then repeats that work)."""

    def on_lost(self, partitions: set[TopicPartition]) -> None:
        """This member was evicted (session expired, fenced): ``partitions`` are possibly
        someone else's already, and no commit for them can succeed."""


class Consumer(Protocol):
    """Reads records; a member of a consumer group (:meth:`subscribe`) or a reader of
    partitions it assigns itself (:meth:`assign`, no group). Never commits by itself, and reads
    only committed transactional records unless made with ``committed_only=False``."""

    def subscribe(self, topics: Sequence[str], listener: RebalanceListener | None = None) -> None:
        """Join the group for ``topics``; partitions arrive during later polls."""

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """Read exactly ``partitions`` (no group). Partitions kept from the previous assignment
        keep their positions; new ones start at the committed offset, else per
        ``auto_offset_reset``, unless :meth:`seek` says otherwise."""

    def assignment(self) -> set[TopicPartition]: ...

    def poll_batch(self, timeout_s: float, max_records: int | None = None) -> Batch:
        """Wait up to ``timeout_s`` for a first record, then return at once with the records
        ready (at most ``max_records``, default the ``max_poll_records`` setting), by partition,
        each partition's in offset order. Offsets may have gaps (compaction, transaction
        markers, aborted records). An empty dict: nothing arrived in time. Rebalance callbacks
        run inside this call; membership is kept alive only by calling it within
        ``max_poll_interval_ms``."""

    def commit(self, offsets: Mapping[TopicPartition, int], asynchronous: bool = False) -> None:
        """Commit next offsets for the group. Synchronous: returned means committed; raises
        :class:`~riverflow.transport.errors.CommitFailed` when the group moved on, or another
        TransportError. Asynchronous: returns at once, a failure is logged, and a later commit
        of higher offsets covers it."""

    def position(self, partition: TopicPartition, timeout_s: float = 0.1) -> int | None:
        """The offset of the next record this consumer returns for ``partition`` (after a
        :meth:`seek`, the offset sought). Looking it up (committed offset, reset policy) may
        take up to ``timeout_s`` where the client does that; None if still unknown."""

    def committed(
        self, partitions: Collection[TopicPartition], timeout_s: float = 10.0
    ) -> dict[TopicPartition, int | None]:
        """The group's committed next offsets (None: nothing committed)."""

    def beginning_offsets(
        self, partitions: Collection[TopicPartition], timeout_s: float = 10.0
    ) -> dict[TopicPartition, int]: ...

    def end_offsets(
        self, partitions: Collection[TopicPartition], timeout_s: float = 10.0
    ) -> dict[TopicPartition, int]:
        """Each partition's end: the offset the next record written will get."""

    def highwater(self, partition: TopicPartition) -> int | None:
        """The end offset of an assigned partition as of the last fetch, without a round trip;
        None before the first fetch. With :meth:`position`, the partition's lag."""

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Read an assigned ``partition`` from ``offset`` on, from the next poll."""

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        """Stop returning records of ``partitions`` (membership is unaffected)."""

    def resume(self, partitions: Iterable[TopicPartition]) -> None: ...

    def partitions_for_topic(self, topic: str) -> set[int]:
        """The topic's partition ids; empty when the topic does not exist."""

    def group_metadata(self) -> Any:
        """This member's group metadata, opaque, for
        :meth:`Producer.send_offsets_to_transaction` (the broker fences a member that lost its
        partitions, KIP-447)."""

    def connected(self) -> bool:
        """Whether the client holds an open connection to a broker: no request, no waiting,
        safe from another thread. Reconnecting is the client's own business."""

    def close(self, timeout_s: float) -> None:
        """Leave the group (revocation callbacks run first) without committing anything."""


class Producer(Protocol):
    """Writes records: acks=all, idempotent, keys partitioned as the Java client does (murmur2),
    so a key lands on the same partition whichever transport wrote it."""

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        """Queue one record; never a future per record. ``on_delivery`` is called once, with
        None (in Kafka) or the TransportError it failed with; it may run on a client thread
        (kafka-python) or inside a later send/flush (confluent), so it must be quick and only
        do thread-safe things (append to a list). A failure without ``on_delivery`` is logged.
        Raises :class:`~riverflow.transport.errors.RecordRejected` for a record the client
        refuses itself (too large); blocks while the client's buffer is full."""

    def flush(self, timeout_s: float) -> int:
        """Send everything queued and wait up to ``timeout_s``. Returns how many records are
        still unsettled: 0 means every earlier record is in Kafka or failed, and every
        ``on_delivery`` of them has run."""

    def init_transactions(self, timeout_s: float) -> None:
        """Take over the producer's transactional id: the broker aborts what an earlier
        producer with the same id left open, and fences that producer
        (:class:`~riverflow.transport.errors.Fenced` on its next transactional call)."""

    def begin_transaction(self) -> None: ...

    def send_offsets_to_transaction(
        self, offsets: Mapping[TopicPartition, int], group_metadata: Any, timeout_s: float
    ) -> None:
        """Commit the consumer's next ``offsets`` with the open transaction, or not at all."""

    def commit_transaction(self, timeout_s: float) -> None:
        """Flush, then commit, waiting at most ``timeout_s`` (then
        :class:`~riverflow.transport.errors.Timeout`: the outcome is unknown until
        ``init_transactions`` of a producer with the same id settles it). Raises
        :class:`~riverflow.transport.errors.AbortableTransactionError` (abort, then carry on),
        :class:`~riverflow.transport.errors.Fenced`/:class:`Fatal` (stop using this
        producer), or another TransportError (state unknown: abort)."""

    def abort_transaction(self, timeout_s: float) -> None:
        """Abort, waiting at most ``timeout_s``: nothing of the transaction becomes visible to
        read_committed readers; records still queued fail with a TransportError."""

    def partitions_for(self, topic: str, timeout_s: float) -> set[int]:
        """The topic's partition ids (empty: no such topic), fetched now if the producer does
        not know them: a later send to the topic then never waits for the broker's metadata,
        even while the broker is away."""

    def connected(self) -> bool:
        """As :meth:`Consumer.connected`; may serve delivery callbacks on the calling thread."""

    def close(self, timeout_s: float) -> None:
        """Send what is queued, and release the client, within about ``timeout_s`` even with
        the broker away: records still waiting then fail (their ``on_delivery`` says so)."""


class Admin(Protocol):
    """Topic and group administration."""

    def list_topics(self) -> set[str]: ...

    def create_topic(
        self, name: str, partitions: int, configs: Mapping[str, str] | None = None
    ) -> None:
        """Create a topic (replication factor: the broker's default). Raises
        :class:`~riverflow.transport.errors.TopicExists` if it exists."""

    def describe_topics(self, names: Collection[str]) -> dict[str, int]:
        """Partition counts of those of ``names`` that exist."""

    def describe_configs(self, names: Collection[str]) -> dict[str, dict[str, str]]:
        """Each topic's configs: at least every config set on the topic itself (broker defaults
        may be absent)."""

    def create_partitions(self, topic: str, total: int) -> None:
        """Grow ``topic`` to ``total`` partitions."""

    def delete_topics(self, names: Collection[str]) -> None: ...

    def list_consumer_groups(self) -> set[str]:
        """Consumer groups (classic or consumer protocol; not share or streams groups)."""

    def group_offsets(self, group_id: str) -> dict[TopicPartition, int]:
        """The group's committed next offsets (empty: none, or no such group)."""

    def group_members(self, group_ids: Collection[str]) -> dict[str, int]:
        """How many members each of ``group_ids`` has now (0: empty or no such group)."""

    def delete_consumer_groups(self, group_ids: Collection[str]) -> None:
        """Delete the groups (those that do not exist are no error)."""

    def close(self) -> None: ...


class Clients(Protocol):
    """Builds the clients of one transport for one :class:`~riverflow.settings.Settings`
    (:func:`riverflow.transport.clients_for`). Building one checks that a broker answers."""

    name: str

    def consumer(
        self,
        group_id: str | None = None,
        *,
        cooperative: bool = False,
        session_timeout_ms: int | None = None,
        heartbeat_interval_ms: int | None = None,
        max_record_bytes: int | None = None,
        committed_only: bool = True,
    ) -> Consumer:
        """``group_id`` None: an assign-only reader. ``cooperative``: the cooperative-sticky
        assignor (KIP-429) instead of range/roundrobin. ``max_record_bytes``: fetch records up to
        this size whole. ``committed_only`` False reads uncommitted transactional records too."""

    def producer(
        self,
        *,
        transactional_id: str | None = None,
        transaction_timeout_ms: int | None = None,
        max_request_bytes: int | None = None,
        linger_ms: int | None = None,
        max_block_s: float | None = None,
    ) -> Producer:
        """Records wait out a broker outage in the producer (no delivery timeout to speak of);
        ``max_block_s`` bounds how long a send blocks for room or for the topic's metadata
        before raising :class:`~riverflow.transport.errors.Timeout`."""

    def admin(self) -> Admin: ...


# How long a record may wait in a producer for the broker to take it: a week, so that records
# wait out any broker outage in order (retried idempotently) instead of expiring. Whoever sends
# bounds what waits: simulate and replay pause their source, workers stop reading while a
# batch's outputs wait.
DELIVERY_TIMEOUT_MS = 7 * 24 * 3600 * 1000
# A send blocks this long at most for room in the producer or a topic's metadata, by default.
MAX_BLOCK_S = 60.0


def membership_timeouts(
    settings: Settings, session_timeout_ms: int | None, heartbeat_interval_ms: int | None
) -> tuple[int, int]:
    """A group member's session timeout (``session_timeout_s`` unless the caller says) and its
    heartbeat interval: a third of it, at most 3 s, so that two lost heartbeats are survived."""
    session_ms = session_timeout_ms or int(settings.session_timeout_s * 1000)
    return session_ms, heartbeat_interval_ms or min(3000, session_ms // 3)


def default_max_request_bytes(settings: Settings) -> int:
    """A producer's largest request: never below what a dead letter may take
    (:mod:`riverflow.dead_letters`), and room for a batch of the largest readings."""
    return max(dead_letters.MAX_RECORD_BYTES, settings.max_message_bytes * 4)


def topic_partitions(consumer: Consumer, topic: str) -> list[TopicPartition]:
    """Every partition of ``topic`` in order; a missing topic is a usage error."""
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise ConfigError(f"topic {topic!r} does not exist: run `riverflow topics create`")
    return [TopicPartition(topic, p) for p in sorted(partitions)]


def lag_samples(
    consumer: Consumer, positions: Mapping[TopicPartition, int | None]
) -> list[tuple[list[str], float]]:
    """``consumer_lag`` samples: each partition's end offset seen by the last fetch minus the
    position. Computed by the thread that owns the consumer and cached for the scrape thread."""
    samples: list[tuple[list[str], float]] = []
    for tp, position in positions.items():
        end = consumer.highwater(tp)
        if end is not None and position is not None:
            samples.append(([tp.topic, str(tp.partition)], float(max(0, end - position))))
    return samples
