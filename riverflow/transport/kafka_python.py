"""The transport over kafka-python 3.0 (pure Python; riverflow's default client).

kafka-python runs rebalance listeners on its IO thread while the caller waits inside ``poll``;
a listener there cannot make blocking consumer calls, so the offsets that
:meth:`RebalanceListener.on_revoked` returns are committed here with ``await commit_async``,
which keeps heartbeats going. Records pass through as kafka-python's own ``ConsumerRecord``,
which has every :class:`~riverflow.transport.base.Record` attribute.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from kafka import (
    AsyncConsumerRebalanceListener,
    KafkaAdminClient,
    KafkaConsumer,
    KafkaProducer,
    OffsetAndMetadata,
)
from kafka import TopicPartition as KafkaTopicPartition
from kafka import errors as ke
from kafka.admin import ConfigResource, ConfigResourceType, MemberToRemove
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from kafka.partitioner import DefaultPartitioner
from kafka.partitioner.default import murmur2

from riverflow.settings import Settings, kafka_kwargs
from riverflow.transport.base import (
    DELIVERY_TIMEOUT_MS,
    MAX_BLOCK_S,
    Batch,
    DeliveryCallback,
    Headers,
    RebalanceListener,
    TopicPartition,
    default_max_request_bytes,
    membership_timeouts,
)
from riverflow.transport.errors import (
    AbortableTransactionError,
    BrokerUnavailable,
    CommitFailed,
    Fatal,
    Fenced,
    InstanceFenced,
    RecordRejected,
    RecordTooLarge,
    Timeout,
    TopicExists,
    TopicMissing,
    TransportError,
)

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

client_config = kafka_kwargs  # settings -> connection and security keyword arguments

_FENCED = (
    ke.ProducerFencedError,
    ke.InvalidProducerEpochError,
    ke.TransactionCoordinatorFencedError,
)
_TOO_LARGE = (ke.MessageSizeTooLargeError, ke.RecordListTooLargeError)
_REJECTED = (ke.InvalidRecordError, ke.CorruptRecordError)
_COMMIT_FAILED = (
    ke.CommitFailedError,
    ke.IllegalGenerationError,
    ke.UnknownMemberIdError,
    ke.RebalanceInProgressError,
)
_UNAVAILABLE = (ke.KafkaConnectionError, ke.NodeNotReadyError)
_TIMEOUT = (ke.KafkaTimeoutError, ke.RequestTimedOutError)


def _error(exc: BaseException) -> TransportError:
    """The one mapping of kafka-python's errors to riverflow's."""
    code = type(exc).__name__
    message = f"{code}: {exc}" if str(exc) else code
    kind: type[TransportError] = TransportError
    if isinstance(exc, ke.FencedInstanceIdError):
        kind = InstanceFenced
    elif isinstance(exc, _FENCED):
        kind = Fenced
    elif isinstance(exc, _TOO_LARGE):
        kind = RecordTooLarge
    elif isinstance(exc, _REJECTED):
        kind = RecordRejected
    elif isinstance(exc, _COMMIT_FAILED):
        kind = CommitFailed
    elif isinstance(exc, ke.UnknownTopicOrPartitionError):
        kind = TopicMissing
    elif isinstance(exc, ke.TopicAlreadyExistsError):
        kind = TopicExists
    elif isinstance(exc, _TIMEOUT):
        kind = Timeout
    elif isinstance(exc, _UNAVAILABLE):
        kind = BrokerUnavailable
    elif isinstance(exc, ke.KafkaError):
        return TransportError(message, code, bool(exc.retriable))
    return kind(message, code)


def _mapped(method: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except ke.KafkaError as exc:
            raise _error(exc) from exc

    return call


def _k(tp: TopicPartition) -> KafkaTopicPartition:
    return KafkaTopicPartition(tp.topic, tp.partition)


def _ours(partitions: Iterable[Any]) -> set[TopicPartition]:
    return {TopicPartition(tp.topic, tp.partition) for tp in partitions}


def _kafka_offsets(offsets: Mapping[TopicPartition, int]) -> dict[Any, OffsetAndMetadata]:
    return {_k(tp): OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()}


def _unreachable(settings: Settings) -> BrokerUnavailable:
    return BrokerUnavailable(
        f"no Kafka broker answers at {settings.bootstrap_servers}: start one with "
        "`riverflow kafka start` or set RIVERFLOW_BOOTSTRAP_SERVERS",
        "bootstrap",
    )


class KeyHashPartitioner(DefaultPartitioner):  # type: ignore[misc]
    """Kafka's default partitioning (murmur2 of the key, as the Java client) with each key's
    hash remembered: kafka-python hashes in pure Python, a few microseconds per record, and a
    sensor fleet sends few distinct keys."""

    # Bounds memory for unbounded key spaces; a full cache simply starts over.
    MAX_KEYS = 100_000

    def __init__(self) -> None:
        self._hashes: dict[bytes, int] = {}

    def partition(  # type: ignore[no-untyped-def]
        self, topic, key, serialized_key, value, serialized_value, cluster
    ) -> int:
        if serialized_key is None:
            return int(super().partition(topic, key, None, value, serialized_value, cluster))
        partitions = cluster.partitions_for_topic(topic)
        if not partitions:
            raise ValueError(f"Topic {topic} not found in ClusterMetadata")
        h = self._hashes.get(serialized_key)
        if h is None:
            if len(self._hashes) >= self.MAX_KEYS:
                self._hashes.clear()
            h = self._hashes[serialized_key] = murmur2(serialized_key) & 0x7FFFFFFF
        return int(sorted(partitions)[h % len(partitions)])


def consumer_config(
    settings: Settings,
    group_id: str | None,
    *,
    cooperative: bool = False,
    session_timeout_ms: int | None = None,
    heartbeat_interval_ms: int | None = None,
    max_record_bytes: int | None = None,
    committed_only: bool = True,
) -> dict[str, Any]:
    """KafkaConsumer keyword arguments: manual commits only, read_committed by default."""
    kw: dict[str, Any] = dict(
        client_config(settings),
        client_id=f"{settings.client_id}-consumer",
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset=settings.auto_offset_reset,
        max_poll_records=settings.max_poll_records,
        max_poll_interval_ms=settings.max_poll_interval_ms,
        isolation_level="read_committed" if committed_only else "read_uncommitted",
        # The same assignors as the confluent transport's, so members of either can share a group.
        partition_assignment_strategy=(CooperativeStickyAssignor,)
        if cooperative
        else (RangePartitionAssignor, RoundRobinPartitionAssignor),
    )
    if group_id is not None:
        session_ms, heartbeat_ms = membership_timeouts(
            settings, session_timeout_ms, heartbeat_interval_ms
        )
        kw.update(
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=heartbeat_ms,
            group_instance_id=settings.instance_id,
        )
    if max_record_bytes is not None:
        kw["max_partition_fetch_bytes"] = max_record_bytes
        kw["fetch_max_bytes"] = max_record_bytes
    return kw


def producer_config(
    settings: Settings,
    *,
    transactional_id: str | None = None,
    transaction_timeout_ms: int | None = None,
    max_request_bytes: int | None = None,
    linger_ms: int | None = None,
    max_block_s: float | None = None,
) -> dict[str, Any]:
    """KafkaProducer keyword arguments: acks=all and idempotent, batched by a short linger,
    records waiting out an outage (:data:`~riverflow.transport.base.DELIVERY_TIMEOUT_MS`)."""
    kw: dict[str, Any] = dict(
        client_config(settings),
        client_id=f"{settings.client_id}-producer",
        acks="all",
        delivery_timeout_ms=DELIVERY_TIMEOUT_MS,
        max_block_ms=int((MAX_BLOCK_S if max_block_s is None else max_block_s) * 1000),
        linger_ms=5 if linger_ms is None else linger_ms,
        batch_size=256 * 1024,
        max_request_size=max_request_bytes or default_max_request_bytes(settings),
    )
    if transactional_id is not None:
        kw["transactional_id"] = transactional_id
    if transaction_timeout_ms is not None:
        kw["transaction_timeout_ms"] = transaction_timeout_ms
    return kw


def kafka_consumer(
    settings: Settings, *topics: str, group_id: str | None, **options: Any
) -> KafkaConsumer:
    """kafka-python's own consumer as this transport configures it (subscribed to ``topics``
    when given): what :class:`KafkaPythonConsumer` wraps, and what a benchmark's bare loop
    uses."""
    client: KafkaConsumer = _connect(
        settings, KafkaConsumer, consumer_config(settings, group_id, **options)
    )
    if topics:
        client.subscribe(list(topics))
    return client


def kafka_producer(settings: Settings, **options: Any) -> KafkaProducer:
    """kafka-python's own producer as this transport configures it."""
    kw = dict(producer_config(settings, **options), partitioner=KeyHashPartitioner())
    producer: KafkaProducer = _connect(settings, KafkaProducer, kw)
    return producer


def kafka_admin(settings: Settings, **options: Any) -> KafkaAdminClient:
    """kafka-python's own admin client as this transport configures it."""
    kw = dict(client_config(settings), client_id=f"{settings.client_id}-admin", **options)
    admin: KafkaAdminClient = _connect(settings, KafkaAdminClient, kw)
    return admin


def _connect(settings: Settings, make: Callable[..., R], kw: dict[str, Any]) -> R:
    """kafka-python connects on construction, within bootstrap_timeout_s."""
    try:
        return make(**kw)
    except (*_TIMEOUT, *_UNAVAILABLE):
        raise _unreachable(settings) from None
    except ke.KafkaError as exc:
        raise _error(exc) from exc


class KafkaPythonClients:
    name = "kafka-python"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def consumer(self, group_id: str | None = None, **options: Any) -> KafkaPythonConsumer:
        client = kafka_consumer(self.settings, group_id=group_id, **options)
        return KafkaPythonConsumer(client, self.settings)

    def producer(self, **options: Any) -> KafkaPythonProducer:
        return KafkaPythonProducer(kafka_producer(self.settings, **options))

    def admin(self) -> KafkaPythonAdmin:
        return KafkaPythonAdmin(kafka_admin(self.settings))


class _Listener(AsyncConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python is untyped
    """Adapts a :class:`RebalanceListener` to kafka-python's IO-thread callbacks."""

    def __init__(self, client: KafkaConsumer, listener: RebalanceListener) -> None:
        self._client = client
        self._listener = listener

    async def on_partitions_revoked(self, revoked: Any) -> None:
        offsets = self._listener.on_revoked(_ours(revoked))
        if not offsets:
            return
        try:
            await self._client.commit_async(_kafka_offsets(offsets))
            log.info("committed %d partitions' offsets before giving them away", len(offsets))
        except ke.KafkaError as exc:
            log.warning("commit on revocation failed (that work will be repeated): %s", exc)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._listener.on_assigned(_ours(assigned))

    async def on_partitions_lost(self, lost: Any) -> None:
        self._listener.on_lost(_ours(lost))


class KafkaPythonConsumer:
    def __init__(self, client: KafkaConsumer, settings: Settings) -> None:
        self._c = client
        self._settings = settings
        self._max_records = settings.max_poll_records
        self._poll_failing = False  # the last poll met a connection error (logged once a run)

    @_mapped
    def subscribe(self, topics: Sequence[str], listener: RebalanceListener | None = None) -> None:
        # Metadata first: kafka-python's sticky assignors assign nothing of a topic whose
        # metadata the leader has not loaded yet, until the next metadata refresh.
        for topic in topics:
            self._c.partitions_for_topic(topic)
        self._c.subscribe(list(topics), listener=_Listener(self._c, listener) if listener else None)

    @_mapped
    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        self._c.assign([_k(tp) for tp in partitions])

    def assignment(self) -> set[TopicPartition]:
        return _ours(self._c.assignment())

    @_mapped
    def poll_batch(self, timeout_s: float, max_records: int | None = None) -> Batch:
        try:
            polled = self._c.poll(
                timeout_ms=int(timeout_s * 1000), max_records=max_records or self._max_records
            )
        except (ke.KafkaConnectionError, ke.NodeNotReadyError) as exc:
            # While the broker is away, kafka-python's poll can raise what its metadata refresh
            # met on the way to the group coordinator (after an asynchronous commit lost it):
            # a poll that found nothing, and the timeout waited as a poll would. Only errors
            # of the connection: they cannot last while the broker answers (the watch of the
            # link reports the outage).
            if not self._poll_failing:
                log.warning("poll met no broker, polling on: %s", exc)
            self._poll_failing = True
            time.sleep(timeout_s)
            return {}
        self._poll_failing = False
        return {TopicPartition(tp.topic, tp.partition): records for tp, records in polled.items()}

    @_mapped
    def commit(self, offsets: Mapping[TopicPartition, int], asynchronous: bool = False) -> None:
        if not offsets:
            return
        if asynchronous:
            self._c.commit_async(_kafka_offsets(offsets), callback=_log_commit)
            return
        # kafka-python's synchronous commit retries until the broker answers: with the broker
        # away it would hold a stop for the outage. Bounded by the shutdown timeout instead.
        timeout_ms = int(self._settings.shutdown_timeout_s * 1000)
        self._c.commit(_kafka_offsets(offsets), timeout_ms=timeout_ms)

    @_mapped
    def position(self, partition: TopicPartition, timeout_s: float = 0.1) -> int | None:
        try:
            position = self._c.position(_k(partition), timeout_ms=int(timeout_s * 1000))
        except ke.KafkaTimeoutError:
            return None
        return None if position is None else int(position)

    @_mapped
    def committed(
        self, partitions: Collection[TopicPartition], timeout_s: float = 10.0
    ) -> dict[TopicPartition, int | None]:
        timeout_ms = int(timeout_s * 1000)
        return {tp: self._c.committed(_k(tp), timeout_ms=timeout_ms) for tp in partitions}

    @_mapped
    def beginning_offsets(
        self, partitions: Collection[TopicPartition], timeout_s: float = 10.0
    ) -> dict[TopicPartition, int]:
        found = self._c.beginning_offsets([_k(tp) for tp in partitions], int(timeout_s * 1000))
        return {TopicPartition(tp.topic, tp.partition): int(o) for tp, o in found.items()}

    @_mapped
    def end_offsets(
        self, partitions: Collection[TopicPartition], timeout_s: float = 10.0
    ) -> dict[TopicPartition, int]:
        found = self._c.end_offsets([_k(tp) for tp in partitions], int(timeout_s * 1000))
        return {TopicPartition(tp.topic, tp.partition): int(o) for tp, o in found.items()}

    def highwater(self, partition: TopicPartition) -> int | None:
        try:
            end = self._c.highwater(_k(partition))
        except ke.IllegalStateError:  # no longer assigned
            return None
        return None if end is None else int(end)

    @_mapped
    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._c.seek(_k(partition), offset)

    @_mapped
    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        self._c.pause(*[_k(tp) for tp in partitions])

    @_mapped
    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self._c.resume(*[_k(tp) for tp in partitions])

    @_mapped
    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(self._c.partitions_for_topic(topic) or ())

    def group_metadata(self) -> Any:
        return self._c.group_metadata()

    def connected(self) -> bool:
        return _has_live_connection(self._c._cluster)

    def close(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        member = self._c.group_metadata() if self._c.config["group_id"] else None
        try:
            self._c.close(autocommit=False, timeout_ms=int(timeout_s * 1000))
        except ke.KafkaError as exc:
            raise _error(exc) from exc
        if member is not None and member.group_instance_id and member.member_id:
            leave_static_group(
                self._settings,
                member.group_id,
                member.member_id,
                member.group_instance_id,
                deadline - time.monotonic(),
            )


def leave_static_group(
    settings: Settings, group_id: str, member_id: str, instance_id: str, timeout_s: float
) -> None:
    """Remove a static member (``group.instance.id``) that stopped cleanly from its group.

    Neither client sends a LeaveGroup for a static member on close (KIP-345, as the Java
    client), so its partitions would wait a whole session timeout for a restart that may never
    come (scale-down, ``--idle-exit``, a standby learner's turn). It is removed by member id,
    never a newer process that took the same instance id; a crash keeps it in the group for its
    restart, which is what static membership is for. The confluent transport uses this too:
    librdkafka's admin client cannot remove group members.
    """
    left_ms = int(max(0.5, timeout_s) * 1000)
    leaving = MemberToRemove(member_id, instance_id, "stopped cleanly")
    try:
        # These bounds replace the shared config's bootstrap and request timeouts.
        admin = kafka_admin(settings, request_timeout_ms=left_ms, bootstrap_timeout_ms=left_ms)
        try:
            errors = admin.remove_group_members(group_id, [leaving])
        finally:
            admin.close()
        failed = [e.__name__ for e in errors.values() if e is not ke.NoError]
        if failed:
            raise ke.KafkaError(", ".join(failed))
    except (ke.KafkaError, TransportError) as exc:
        log.warning(
            "could not leave group %s as %s (its partitions move after the session timeout): %s",
            group_id,
            instance_id,
            exc,
        )
        return
    log.info("left group %s as %s", group_id, instance_id)


def _has_live_connection(cluster: Any) -> bool:
    """kafka-python 3 keeps a client's connections in its connection manager, reached through
    its cluster metadata: the only account of them that costs no request. Safe from another
    thread (a copy of the dict, then plain attribute reads)."""
    return any(conn.connected for conn in list(cluster._manager._conns.values()))


def _log_commit(offsets: Any, result: Any) -> None:
    if isinstance(result, BaseException):
        log.warning("asynchronous offset commit failed (a later one covers it): %s", result)


class KafkaPythonProducer:
    """Per-record delivery callbacks on the futures kafka-python makes anyway; two counters
    (sends on the caller's thread, settlements under a lock, from any thread) give
    :meth:`flush` its count of unsettled records."""

    def __init__(self, client: KafkaProducer) -> None:
        self._p = client
        self._sent = 0
        self._settled = 0
        self._lock = threading.Lock()
        self._fatal: Fatal | None = None

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        try:
            future = self._p.send(topic, key=key, value=value, headers=headers)
        except ke.KafkaError as exc:
            raise _error(exc) from exc
        self._sent += 1
        future.add_both(self._settle, on_delivery)

    def _settle(self, on_delivery: DeliveryCallback | None, result: Any) -> None:
        with self._lock:
            self._settled += 1
        error = _error(result) if isinstance(result, BaseException) else None
        if on_delivery is not None:
            on_delivery(error)
        elif error is not None:
            log.warning("a record was not delivered: %s", error)

    def flush(self, timeout_s: float) -> int:
        try:
            self._p.flush(timeout=timeout_s)
        except ke.KafkaTimeoutError:
            pass
        except ke.KafkaError as exc:
            raise _error(exc) from exc
        with self._lock:
            return max(0, self._sent - self._settled)

    @contextmanager
    def _transactional(self) -> Iterator[None]:
        """Maps a transactional call's failure by the transaction manager's state: kafka-python
        raises a generic KafkaError once a transaction is in an error state."""
        if self._fatal is not None:
            raise self._fatal
        try:
            yield
        except ke.KafkaError as exc:
            error = _error(exc)
            manager = getattr(self._p, "_transaction_manager", None)
            if manager is not None and not isinstance(error, Fatal):
                last = getattr(manager, "_last_error", None)
                if manager.has_fatal_error():
                    error = (Fenced if isinstance(last, _FENCED) else Fatal)(
                        error.args[0], error.code
                    )
                elif manager.has_abortable_error():
                    error = AbortableTransactionError(error.args[0], error.code)
            if isinstance(error, Fatal):
                self._fatal = error
            raise error from exc

    def init_transactions(self, timeout_s: float) -> None:
        with self._transactional():
            self._p.init_transactions()

    def begin_transaction(self) -> None:
        with self._transactional():
            self._p.begin_transaction()

    def send_offsets_to_transaction(
        self, offsets: Mapping[TopicPartition, int], group_metadata: Any, timeout_s: float
    ) -> None:
        with self._transactional():
            self._p.send_offsets_to_transaction(_kafka_offsets(offsets), group_metadata)

    def commit_transaction(self, timeout_s: float) -> None:
        with self._transactional():
            self._end_transaction(True, timeout_s)

    def abort_transaction(self, timeout_s: float) -> None:
        with self._transactional():
            self._end_transaction(False, timeout_s)

    def _end_transaction(self, commit: bool, timeout_s: float) -> None:
        """kafka-python's own commit and abort wait without a bound (the Java client had the
        same bug, KAFKA-7763): an unreachable broker would hold the caller for the outage."""
        manager = self._p._transaction_manager
        if manager is None:
            raise ke.IllegalStateError("a transactional method of a non-transactional producer")
        result = manager.begin_commit() if commit else manager.begin_abort()
        self._p._sender.wakeup()
        if not result.wait(timeout_ms=timeout_s * 1000):
            what = "commit" if commit else "abort"
            raise ke.KafkaTimeoutError(
                f"the transaction's {what} was not confirmed within {timeout_s:g}s"
            )

    def partitions_for(self, topic: str, timeout_s: float) -> set[int]:
        try:
            return set(self._p.partitions_for(topic))
        except ke.KafkaTimeoutError:  # kafka-python's answer for a topic that does not exist
            return set()
        except ke.KafkaError as exc:
            raise _error(exc) from exc

    def connected(self) -> bool:
        return _has_live_connection(self._p._metadata)

    def close(self, timeout_s: float) -> None:
        """kafka-python's ``close()`` raises when records still wait at the deadline and leaves
        its sender thread running: those records are failed instead (force close)."""
        try:
            self._p.close(timeout=timeout_s)
            return
        except ke.KafkaError as exc:
            log.debug("closing a producer whose records still wait: failing them (%s)", exc)
        sender = self._p._sender
        sender.force_close()
        sender.join(max(timeout_s, 1.0))
        try:
            self._p.close(timeout=0)
        except ke.KafkaError as exc:
            log.error("a producer did not close (%s)", exc)


class KafkaPythonAdmin:
    def __init__(self, client: KafkaAdminClient) -> None:
        self._a = client

    @_mapped
    def list_topics(self) -> set[str]:
        return set(self._a.list_topics())

    @_mapped
    def create_topic(
        self, name: str, partitions: int, configs: Mapping[str, str] | None = None
    ) -> None:
        spec = {"num_partitions": partitions, "configs": dict(configs or {})}
        self._a.create_topics({name: spec})

    @_mapped
    def describe_topics(self, names: Collection[str]) -> dict[str, int]:
        return {
            t["name"]: len(t["partitions"])
            for t in self._a.describe_topics(list(names))
            if t["error_code"] == 0
        }

    @_mapped
    def describe_configs(self, names: Collection[str]) -> dict[str, dict[str, str]]:
        resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
        topics = self._a.describe_configs(resources).get("topic", {})
        return {n: {k: e["value"] for k, e in entries.items()} for n, entries in topics.items()}

    @_mapped
    def create_partitions(self, topic: str, total: int) -> None:
        self._a.create_partitions({topic: total})

    @_mapped
    def delete_topics(self, names: Collection[str]) -> None:
        self._a.delete_topics(list(names))

    @_mapped
    def list_consumer_groups(self) -> set[str]:
        return {
            g["group_id"]
            for g in self._a.list_groups()
            if g.get("group_type") in (None, "classic", "consumer")
        }

    @_mapped
    def group_offsets(self, group_id: str) -> dict[TopicPartition, int]:
        found = self._a.list_group_offsets(group_id).get(group_id, {})
        return {TopicPartition(tp.topic, tp.partition): int(o.offset) for tp, o in found.items()}

    @_mapped
    def group_members(self, group_ids: Collection[str]) -> dict[str, int]:
        if not group_ids:
            return {}
        described = self._a.describe_groups(list(group_ids))
        return {g: len(d.get("members") or []) for g, d in described.items()}

    @_mapped
    def delete_consumer_groups(self, group_ids: Collection[str]) -> None:
        if not group_ids:
            return
        results = self._a.delete_groups(list(group_ids)).items()
        failed = {g: e for g, e in results if e not in ("OK", "GroupIdNotFoundError")}
        if failed:
            raise TransportError(f"could not delete consumer groups: {failed}", "DeleteGroups")

    def close(self) -> None:
        self._a.close()
