"""The transport over confluent-kafka (librdkafka): records are fetched, decoded and produced in C
on librdkafka's own threads. Installed with ``pip install "riverflow[fast]"``; imported only
when ``kafka_client`` is ``confluent``.

What librdkafka does differently, and how the contract is kept:

- ``consume(n, timeout)`` waits for all ``n`` records or the whole timeout: :meth:`poll_batch`
  takes what is ready, and only when nothing is waits for the first record.
- Rebalance callbacks run inside ``consume``/``poll`` on the caller's thread; the Python client
  assigns (incrementally, under cooperative-sticky) when the callback does not.
- ``seek`` refuses a partition whose fetcher has not started (``_STATE``) and ``position`` knows
  nothing before the first record: an assign-only reader re-assigns the partition at the
  offset instead, and the offset sought stands for the position until records arrive.
- Delivery reports are served by ``poll``/``flush``: a send serves them every
  :data:`SERVE_EVERY` records, so a long run without flushes holds few of them.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from confluent_kafka import Consumer as _Consumer
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException
from confluent_kafka import Producer as _Producer
from confluent_kafka import TopicPartition as _TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

from riverflow.settings import RECONNECT_BACKOFF_MAX_MS, Settings
from riverflow.transport.base import (
    DELIVERY_TIMEOUT_MS,
    MAX_BLOCK_S,
    Batch,
    DeliveryCallback,
    Headers,
    Message,
    RebalanceListener,
    Record,
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
# librdkafka's own log lines, at the level the CLI sets for client libraries.
librdkafka_log = logging.getLogger("kafka.librdkafka")

# Delivery reports served per this many sends: each waiting report holds its record's memory.
SERVE_EVERY = 1000
# How often librdkafka reports its brokers' states, which connected() reads.
STATS_INTERVAL_MS = 1000
# How often an admin request about a topic just created is asked again.
METADATA_RETRY_S = 0.2
# A consumer error repeated within this many seconds is not logged again.
ERROR_LOG_EVERY_S = 60.0

_FENCED = {
    KafkaError._FENCED,
    KafkaError.PRODUCER_FENCED,
    KafkaError.TRANSACTION_COORDINATOR_FENCED,
}
_TOO_LARGE = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE}
_REJECTED = {KafkaError.INVALID_RECORD, KafkaError.INVALID_MSG}
_COMMIT_FAILED = {
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError._ASSIGNMENT_LOST,
    KafkaError.STALE_MEMBER_EPOCH,
}
_TOPIC_MISSING = {
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError._UNKNOWN_PARTITION,
}
_TIMEOUT = {
    KafkaError._TIMED_OUT,
    KafkaError._MSG_TIMED_OUT,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError._TIMED_OUT_QUEUE,
}
_GROUP_NOT_FOUND = KafkaError.GROUP_ID_NOT_FOUND
_UNAVAILABLE = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE}


# A fatal error reaches a consumer's stream as _FATAL, its cause only in the text (the Python
# client has no rd_kafka_fatal_error()): the fencing causes, in librdkafka's own words.
_FATAL_CAUSES = {
    KafkaError(KafkaError.FENCED_INSTANCE_ID).str(): KafkaError.FENCED_INSTANCE_ID,
    KafkaError(KafkaError.UNRELEASED_INSTANCE_ID).str(): KafkaError.FENCED_INSTANCE_ID,
}


def _is_fatal(err: KafkaError) -> bool:
    return bool(err.fatal()) or err.code() == KafkaError._FATAL


def _error(err: KafkaError) -> TransportError:
    """The one mapping of librdkafka's errors to riverflow's."""
    code = err.code()
    name = err.name()
    text = err.str()
    message = f"{name}: {text}"
    if code == KafkaError._FATAL:
        code = next((c for cause, c in _FATAL_CAUSES.items() if cause in text), code)
    kind: type[TransportError]
    if code == KafkaError.FENCED_INSTANCE_ID:
        kind = InstanceFenced
    elif code in _FENCED or (code == KafkaError.INVALID_PRODUCER_EPOCH and err.fatal()):
        kind = Fenced
    elif _is_fatal(err):
        kind = Fatal
    elif err.txn_requires_abort():
        kind = AbortableTransactionError
    elif code in _TOO_LARGE:
        kind = RecordTooLarge
    elif code in _REJECTED:
        kind = RecordRejected
    elif code in _COMMIT_FAILED:
        kind = CommitFailed
    elif code in _TOPIC_MISSING:
        kind = TopicMissing
    elif code == KafkaError.TOPIC_ALREADY_EXISTS:
        kind = TopicExists
    elif code in _TIMEOUT:
        kind = Timeout
    elif code in _UNAVAILABLE:
        kind = BrokerUnavailable
    else:
        return TransportError(message, name, bool(err.retriable()))
    return kind(message, name)


def _raised(exc: KafkaException) -> TransportError:
    arg = exc.args[0] if exc.args else None
    if isinstance(arg, KafkaError):
        return _error(arg)
    return TransportError(str(exc), "KafkaException")


@contextmanager
def _mapped() -> Iterator[None]:
    try:
        yield
    except KafkaException as exc:
        raise _raised(exc) from exc


def client_config(settings: Settings) -> dict[str, Any]:
    """librdkafka properties for connection and security, shared by every client."""
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "security.protocol": settings.security_protocol,
        "topic.metadata.refresh.interval.ms": int(settings.metadata_refresh_s * 1000),
        "reconnect.backoff.max.ms": RECONNECT_BACKOFF_MAX_MS,
    }
    if settings.sasl_mechanism:
        conf["sasl.mechanism"] = settings.sasl_mechanism
    if settings.sasl_username is not None:
        conf["sasl.username"] = settings.sasl_username
    if settings.sasl_password is not None:
        conf["sasl.password"] = settings.sasl_password.get_secret_value()
    for key, prop in (
        ("ssl_cafile", "ssl.ca.location"),
        ("ssl_certfile", "ssl.certificate.location"),
        ("ssl_keyfile", "ssl.key.location"),
    ):
        value = getattr(settings, key)
        if value:
            conf[prop] = value
    if settings.ssl_password is not None:
        conf["ssl.key.password"] = settings.ssl_password.get_secret_value()
    return conf


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
    """Consumer properties: manual commits only, read_committed by default."""
    conf = client_config(settings)
    conf.update(
        {
            "client.id": f"{settings.client_id}-consumer",
            # librdkafka wants a group even to assign: an assign-only reader never joins it
            # and commits nothing to it, so its start offsets come from auto.offset.reset.
            "group.id": group_id or f"{settings.client_id}-unjoined",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": settings.auto_offset_reset,
            "max.poll.interval.ms": settings.max_poll_interval_ms,
            "isolation.level": "read_committed" if committed_only else "read_uncommitted",
            # The same assignors as the kafka-python transport's, so members can share a group.
            "partition.assignment.strategy": "cooperative-sticky"
            if cooperative
            else "range,roundrobin",
        }
    )
    if group_id is not None:
        session_ms, heartbeat_ms = membership_timeouts(
            settings, session_timeout_ms, heartbeat_interval_ms
        )
        conf["session.timeout.ms"] = session_ms
        conf["heartbeat.interval.ms"] = heartbeat_ms
        if settings.instance_id is not None:
            conf["group.instance.id"] = settings.instance_id
    if max_record_bytes is not None:
        conf["max.partition.fetch.bytes"] = max_record_bytes
        conf["fetch.max.bytes"] = max_record_bytes
    return conf


def producer_config(
    settings: Settings,
    *,
    transactional_id: str | None = None,
    transaction_timeout_ms: int | None = None,
    max_request_bytes: int | None = None,
    linger_ms: int | None = None,
    max_block_s: float | None = None,
) -> dict[str, Any]:
    """Producer properties: acks=all and idempotent, batched by a short linger, records waiting
    out an outage (:data:`~riverflow.transport.base.DELIVERY_TIMEOUT_MS`; a transactional
    producer's records wait as long as its transaction, which librdkafka requires).
    ``max_block_s`` is not librdkafka's: :class:`ConfluentProducer` applies it."""
    conf = client_config(settings)
    conf.update(
        {
            "client.id": f"{settings.client_id}-producer",
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5 if linger_ms is None else linger_ms,
            "message.max.bytes": max_request_bytes or default_max_request_bytes(settings),
            # The Java client's (and kafka-python's) partitioner: a key's partition does not
            # depend on the transport that wrote it (librdkafka's default hashes with CRC32).
            "partitioner": "murmur2_random",
        }
    )
    if transactional_id is not None:
        conf["transactional.id"] = transactional_id
    else:
        conf["message.timeout.ms"] = DELIVERY_TIMEOUT_MS
    if transaction_timeout_ms is not None:
        conf["transaction.timeout.ms"] = transaction_timeout_ms
    return conf


def _on_client_error(err: KafkaError) -> None:
    """librdkafka reports a broker that is away many times a second, per client: riverflow says
    so once per change (:mod:`riverflow.connectivity`), so those reports show at DEBUG only."""
    if _is_fatal(err):
        log.error("Kafka client: %s", err.str())
    elif err.code() in _UNAVAILABLE:
        log.debug("Kafka client: %s", err.str())
    else:
        log.warning("Kafka client: %s", err.str())


def _on_commit(err: KafkaError | None, partitions: Any) -> None:
    if err is not None and err.code() != KafkaError._NO_OFFSET:
        log.warning("asynchronous offset commit failed (a later one covers it): %s", err.str())


class ConfluentClients:
    name = "confluent"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._view = _View()

    def _hooks(self, links: _Links | None = None) -> dict[str, Any]:
        hooks: dict[str, Any] = {"logger": librdkafka_log, "error_cb": _on_client_error}
        if links is not None:
            hooks.update(stats_cb=links.on_stats, **{"statistics.interval.ms": STATS_INTERVAL_MS})
        return hooks

    def consumer(self, group_id: str | None = None, **options: Any) -> ConfluentConsumer:
        conf = consumer_config(self.settings, group_id, **options)
        links = _Links(self._view)
        conf.update(self._hooks(links), on_commit=_on_commit)
        with _mapped():
            client = _Consumer(conf)
        try:
            self._check(client)
        except BrokerUnavailable:
            client.close()
            raise
        return ConfluentConsumer(client, self.settings, group_id, links)

    def producer(self, *, max_block_s: float | None = None, **options: Any) -> ConfluentProducer:
        conf = producer_config(self.settings, **options)
        links = _Links(self._view)
        conf.update(self._hooks(links))
        with _mapped():
            client = _Producer(conf)
        self._check(client)
        return ConfluentProducer(client, links, MAX_BLOCK_S if max_block_s is None else max_block_s)

    def admin(self) -> ConfluentAdmin:
        conf = client_config(self.settings)
        conf.update(self._hooks(), **{"client.id": f"{self.settings.client_id}-admin"})
        with _mapped():
            client = AdminClient(conf)
        self._check(client)
        return ConfluentAdmin(client, self.settings.bootstrap_timeout_s)

    def _check(self, client: Any) -> None:
        """librdkafka connects lazily and retries forever: a metadata round trip within
        bootstrap_timeout_s gives the same clear error as kafka-python's eager bootstrap."""
        try:
            client.list_topics(timeout=self.settings.bootstrap_timeout_s)
        except KafkaException:
            raise BrokerUnavailable(
                f"no Kafka broker answers at {self.settings.bootstrap_servers}: start one with "
                "`riverflow kafka start` or set RIVERFLOW_BOOTSTRAP_SERVERS",
                "bootstrap",
            ) from None


class _View:
    """What the clients of one :class:`ConfluentClients` know of the brokers, from librdkafka's
    statistics (the one account of their connections it gives). Statistics are served only by
    a client's poll: a consumer left unpolled while its owner waits in a flush or a commit for a
    broker that is away would go on saying what it last said. So every client answers with the
    newest report of any of them (each carries librdkafka's monotonic clock), the producers
    polled first (thread-safe, unlike a consumer's poll): up until one says no broker is."""

    def __init__(self) -> None:
        self._reports: dict[int, tuple[int, bool]] = {}
        self._producers: dict[int, Callable[[float], Any]] = {}
        self._lock = threading.Lock()

    def report(self, key: int, at_us: int, up: bool) -> None:
        with self._lock:
            self._reports[key] = (at_us, up)

    def add_producer(self, key: int, poll: Callable[[float], Any]) -> None:
        with self._lock:
            self._producers[key] = poll

    def drop(self, key: int) -> None:
        with self._lock:
            self._reports.pop(key, None)
            self._producers.pop(key, None)

    @property
    def up(self) -> bool:
        with self._lock:
            polls = list(self._producers.values())
        for poll in polls:
            poll(0)  # serves its statistics (and delivery reports) now
        with self._lock:
            return max(self._reports.values(), default=(0, True))[1]


class _Links:
    """One client's statistics: its brokers' states for the :class:`_View`, and for a
    consumer, where each partition that has returned no record yet will start
    (:meth:`ConfluentConsumer.position`)."""

    def __init__(self, view: _View | None = None) -> None:
        self.view = view or _View()
        self.starts: dict[TopicPartition, int] = {}

    @property
    def up(self) -> bool:
        return self.view.up

    def on_stats(self, report: str) -> None:
        stats = json.loads(report)
        up = any(b.get("state") == "UP" for b in stats.get("brokers", {}).values())
        self.view.report(id(self), int(stats.get("ts", 0)), up)
        if stats.get("type") == "consumer":
            self.starts = _starts(stats.get("topics", {}))

    def close(self) -> None:
        self.view.drop(id(self))


def _starts(topics: Mapping[str, Any]) -> dict[TopicPartition, int]:
    """Partitions being fetched that have returned nothing and hold nothing fetched: the next
    record returned is the next one fetched (an empty partition's position)."""
    return {
        TopicPartition(topic, int(pid)): int(p["next_offset"])
        for topic, t in topics.items()
        for pid, p in t.get("partitions", {}).items()
        if p.get("fetch_state") == "active"
        and p.get("app_offset", 0) < 0
        and p.get("fetchq_cnt", 1) == 0
        and p.get("next_offset", -1) >= 0
    }


def _ck(tp: TopicPartition, offset: int | None = None) -> _TopicPartition:
    if offset is None:
        return _TopicPartition(tp.topic, tp.partition)
    return _TopicPartition(tp.topic, tp.partition, offset)


def _ours(partitions: Iterable[Any]) -> set[TopicPartition]:
    return {TopicPartition(tp.topic, tp.partition) for tp in partitions}


def _offsets(offsets: Mapping[TopicPartition, int]) -> list[_TopicPartition]:
    return [_ck(tp, offset) for tp, offset in offsets.items()]


class ConfluentConsumer:
    def __init__(
        self, client: _Consumer, settings: Settings, group_id: str | None, links: _Links
    ) -> None:
        self._c = client
        self._settings = settings
        self._group_id = group_id
        self._links = links
        self._max_records = settings.max_poll_records
        self._metadata_timeout_s = settings.bootstrap_timeout_s
        self._joins = group_id is not None
        self._reset_earliest = settings.auto_offset_reset == "earliest"
        self._listener: RebalanceListener | None = None
        self._assigned: set[TopicPartition] = set()  # an assign-only reader's partitions
        # Offsets sought that librdkafka's position() does not show until records arrive.
        self._sought: dict[TopicPartition, int] = {}
        self._errors_logged: dict[int, float] = {}

    # -- membership ------------------------------------------------------------------------

    def subscribe(self, topics: Sequence[str], listener: RebalanceListener | None = None) -> None:
        self._listener = listener
        callbacks: dict[str, Any] = {}
        if listener is not None:
            callbacks = {
                "on_assign": self._on_assign,
                "on_revoke": self._on_revoke,
                "on_lost": self._on_lost,
            }
        with _mapped():
            self._c.subscribe(list(topics), **callbacks)

    def _on_assign(self, client: Any, partitions: list[Any]) -> None:
        assert self._listener is not None
        self._listener.on_assigned(_ours(partitions))

    def _on_revoke(self, client: Any, partitions: list[Any]) -> None:
        assert self._listener is not None
        revoked = _ours(partitions)
        self._forget(revoked)
        offsets = self._listener.on_revoked(revoked)
        if not offsets:
            return
        try:
            self._commit_now(_offsets(offsets))
            log.info("committed %d partitions' offsets before giving them away", len(offsets))
        except (KafkaException, BrokerUnavailable) as exc:
            log.warning("commit on revocation failed (that work will be repeated): %s", exc)

    def _on_lost(self, client: Any, partitions: list[Any]) -> None:
        assert self._listener is not None
        lost = _ours(partitions)
        self._forget(lost)
        self._listener.on_lost(lost)

    def _forget(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._sought.pop(tp, None)
            self._links.starts.pop(tp, None)

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        wanted = set(partitions)
        gone, new = self._assigned - wanted, wanted - self._assigned
        with _mapped():
            if gone:
                self._c.incremental_unassign([_ck(tp) for tp in gone])
            if new:
                self._c.incremental_assign([_ck(tp) for tp in sorted(new)])
        self._assigned = wanted
        self._forget(gone)

    def assignment(self) -> set[TopicPartition]:
        with _mapped():
            return _ours(self._c.assignment())

    # -- reading ---------------------------------------------------------------------------

    def poll_batch(self, timeout_s: float, max_records: int | None = None) -> Batch:
        n = max_records or self._max_records
        c = self._c
        with _mapped():
            messages = c.consume(n, 0)
            if not messages:
                first = c.poll(timeout_s)
                if first is None:
                    return {}
                messages = [first, *c.consume(n - 1, 0)] if n > 1 else [first]
        return self._by_partition(messages)

    def _by_partition(self, messages: list[Any]) -> Batch:
        batch: Batch = {}
        records: list[Record] = []
        topic, partition = "", -1
        for m in messages:
            err = m.error()
            if err is not None:
                self._consumer_error(err)
                continue
            t, p = m.topic(), m.partition()
            if p != partition or t != topic:
                topic, partition = t, p
                records = batch.setdefault(TopicPartition(t, p), [])
            records.append(
                Message(t, p, m.offset(), m.key(), m.value(), m.headers() or (), m.timestamp()[1])
            )
        if self._sought:
            self._forget(batch)
        return batch

    def _consumer_error(self, err: KafkaError) -> None:
        """Errors in the stream are librdkafka's news (it retries by itself), except fatal ones."""
        if _is_fatal(err):
            raise _error(err)
        now = time.monotonic()
        if now - self._errors_logged.get(err.code(), -ERROR_LOG_EVERY_S) >= ERROR_LOG_EVERY_S:
            self._errors_logged[err.code()] = now
            log.warning("consumer: %s", err.str())

    # -- offsets ---------------------------------------------------------------------------

    def commit(self, offsets: Mapping[TopicPartition, int], asynchronous: bool = False) -> None:
        if not offsets:
            return
        with _mapped():
            if asynchronous:
                self._c.commit(offsets=_offsets(offsets), asynchronous=True)
                return
            result = self._commit_now(_offsets(offsets))
        for tp in result or ():
            if tp.error is not None:
                raise _error(tp.error)

    def _commit_now(self, offsets: list[_TopicPartition]) -> Any:
        """librdkafka's synchronous commit has no timeout: with the broker away it waits for
        the broker's return, and the worker with it (deaf to a stop). Refused at once instead
        while the clients know no broker; a later commit covers these offsets."""
        if not self._links.up:
            raise BrokerUnavailable("no broker connection: offsets not committed", "commit")
        return self._c.commit(offsets=offsets, asynchronous=False)

    def position(self, partition: TopicPartition, timeout_s: float = 0.1) -> int | None:
        sought = self._sought.get(partition)
        if sought is not None:
            return sought
        with _mapped():
            (found,) = self._c.position([_ck(partition)])
        if found.offset >= 0:
            return int(found.offset)
        # Known from the last statistics without a round trip, which on a loaded machine may
        # take longer than the poll loop can wait, again and again (an empty partition).
        start = self._links.starts.get(partition)
        if start is not None:
            return start
        return self._start(partition, timeout_s)

    def _start(self, partition: TopicPartition, timeout_s: float) -> int | None:
        """librdkafka has no position before it returns a record of the partition (an empty
        one may never have any): the committed offset, else the reset policy's, as
        kafka-python's position gives; remembered until records arrive."""
        try:
            committed = self.committed([partition], timeout_s)[partition]
            if committed is None:
                low, high = self._c.get_watermark_offsets(_ck(partition), timeout=timeout_s)
                committed = low if self._reset_earliest else high
        except (KafkaException, TransportError):
            return None  # not known yet: asked again next time
        if committed is None or committed < 0:
            return None
        self._sought[partition] = committed
        return int(committed)

    def committed(
        self, partitions: Collection[TopicPartition], timeout_s: float = 10.0
    ) -> dict[TopicPartition, int | None]:
        with _mapped():
            found = self._c.committed([_ck(tp) for tp in partitions], timeout=timeout_s)
        return {
            TopicPartition(tp.topic, tp.partition): int(tp.offset) if tp.offset >= 0 else None
            for tp in found
        }

    def _watermarks(
        self, partitions: Collection[TopicPartition], timeout_s: float
    ) -> dict[TopicPartition, tuple[int, int]]:
        with _mapped():
            return {
                tp: self._c.get_watermark_offsets(_ck(tp), timeout=timeout_s, cached=False)
                for tp in partitions
            }

    def beginning_offsets(
        self, partitions: Collection[TopicPartition], timeout_s: float = 10.0
    ) -> dict[TopicPartition, int]:
        return {tp: int(low) for tp, (low, _) in self._watermarks(partitions, timeout_s).items()}

    def end_offsets(
        self, partitions: Collection[TopicPartition], timeout_s: float = 10.0
    ) -> dict[TopicPartition, int]:
        return {tp: int(high) for tp, (_, high) in self._watermarks(partitions, timeout_s).items()}

    def highwater(self, partition: TopicPartition) -> int | None:
        try:
            found = self._c.get_watermark_offsets(_ck(partition), cached=True)
        except KafkaException:
            return None
        if found is None or found[1] < 0:
            return None
        return int(found[1])

    def seek(self, partition: TopicPartition, offset: int) -> None:
        try:
            self._c.seek(_ck(partition, offset))
        except KafkaException as exc:
            refused = _raised(exc)
            if self._joins or exc.args[0].code() not in (KafkaError._STATE, KafkaError._OUTDATED):
                raise refused from exc
            # Not fetched yet (_STATE), or the seek overtaken by the assignment that is still
            # being applied (_OUTDATED, seen on a loaded machine): an assign-only reader assigns
            # the partition afresh at the offset.
            with _mapped():
                self._c.incremental_unassign([_ck(partition)])
                self._c.incremental_assign([_ck(partition, offset)])
        self._sought[partition] = offset

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        with _mapped():
            self._c.pause([_ck(tp) for tp in partitions])

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        with _mapped():
            self._c.resume([_ck(tp) for tp in partitions])

    def partitions_for_topic(self, topic: str) -> set[int]:
        with _mapped():
            metadata = self._c.list_topics(topic, timeout=self._metadata_timeout_s)
        found = metadata.topics.get(topic)
        if found is None or (found.error is not None and found.error.code() in _TOPIC_MISSING):
            return set()
        return set(found.partitions)

    def group_metadata(self) -> Any:
        with _mapped():
            return self._c.consumer_group_metadata()

    def connected(self) -> bool:
        return self._links.up

    def close(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        instance_id = self._settings.instance_id if self._joins else None
        member_id = self._c.memberid() if instance_id else None
        try:
            if self._links.up:
                with _mapped():
                    self._c.close()
            else:
                self._close_without_broker(timeout_s)
        finally:
            self._links.close()
        if self._group_id is not None and instance_id and member_id:
            from riverflow.transport.kafka_python import leave_static_group

            leave_static_group(
                self._settings, self._group_id, member_id, instance_id, deadline - time.monotonic()
            )


    def _close_without_broker(self, timeout_s: float) -> None:
        """librdkafka's close has no timeout, and with no broker it can wait for the group's
        coordinator longer than a stop may take: it is left to finish on its own thread after
        ``timeout_s`` (the process is on its way out)."""
        failed: list[KafkaException] = []

        def close() -> None:
            try:
                self._c.close()
            except KafkaException as exc:
                failed.append(exc)

        closer = threading.Thread(target=close, name="riverflow-consumer-close", daemon=True)
        closer.start()
        closer.join(timeout_s)
        if closer.is_alive():
            log.warning("the consumer did not close within %gs with no broker: left", timeout_s)
        elif failed:
            raise _raised(failed[0])


def _deliver(on_delivery: DeliveryCallback, err: KafkaError | None, message: Any) -> None:
    on_delivery(None if err is None else _error(err))


def _report(err: KafkaError | None, message: Any) -> None:
    if err is not None:
        log.warning("a record was not delivered: %s", _error(err))


class ConfluentProducer:
    def __init__(self, client: _Producer, links: _Links, max_block_s: float) -> None:
        self._p = client
        self._links = links
        links.view.add_producer(id(links), client.poll)
        self._max_block_s = max_block_s
        self._unserved = 0
        self._fatal: Fatal | None = None

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        report = _report if on_delivery is None else functools.partial(_deliver, on_delivery)
        try:
            self._p.produce(topic, value, key, on_delivery=report, headers=headers)
        except BufferError:
            self._produce_when_room(topic, key, value, headers, report)
        except KafkaException as exc:
            raise _raised(exc) from exc
        self._unserved += 1
        if self._unserved >= SERVE_EVERY:
            self._unserved = 0
            self._p.poll(0)

    def _produce_when_room(
        self, topic: str, key: Any, value: Any, headers: Any, report: Any
    ) -> None:
        """The queue is full: serve delivery reports until a record fits, within max_block_s."""
        deadline = time.monotonic() + self._max_block_s
        while True:
            self._p.poll(0.05)
            try:
                self._p.produce(topic, value, key, on_delivery=report, headers=headers)
                return
            except BufferError:
                if time.monotonic() > deadline:
                    raise Timeout(
                        f"the producer's queue stayed full for {self._max_block_s:g}s",
                        "QUEUE_FULL",
                    ) from None
            except KafkaException as exc:
                raise _raised(exc) from exc

    def flush(self, timeout_s: float) -> int:
        self._unserved = 0
        with _mapped():
            return int(self._p.flush(timeout_s))

    @contextmanager
    def _transactional(self) -> Iterator[None]:
        """A fatal error ends the producer; librdkafka says so only once (later calls fail with
        an unrelated _CONFLICT), so it is remembered."""
        if self._fatal is not None:
            raise self._fatal
        try:
            yield
        except KafkaException as exc:
            error = _raised(exc)
            if isinstance(error, Fatal):
                self._fatal = error
            raise error from exc

    def init_transactions(self, timeout_s: float) -> None:
        with self._transactional():
            self._p.init_transactions(timeout_s)

    def begin_transaction(self) -> None:
        with self._transactional():
            self._p.begin_transaction()

    def send_offsets_to_transaction(
        self, offsets: Mapping[TopicPartition, int], group_metadata: Any, timeout_s: float
    ) -> None:
        with self._transactional():
            self._p.send_offsets_to_transaction(_offsets(offsets), group_metadata, timeout_s)

    def commit_transaction(self, timeout_s: float) -> None:
        with self._transactional():
            self._p.commit_transaction(timeout_s)

    def abort_transaction(self, timeout_s: float) -> None:
        with self._transactional():
            self._p.abort_transaction(timeout_s)
        self._p.poll(0)  # the purged records' reports

    def partitions_for(self, topic: str, timeout_s: float) -> set[int]:
        """librdkafka queues a record whose topic it does not know yet: this only looks."""
        with _mapped():
            metadata = self._p.list_topics(topic, timeout=timeout_s)
        found = metadata.topics.get(topic)
        if found is None or (found.error is not None and found.error.code() in _TOPIC_MISSING):
            return set()
        return set(found.partitions)

    def connected(self) -> bool:
        return self._links.up

    def close(self, timeout_s: float) -> None:
        """librdkafka's producer has no close: flush, fail what still waits (purge), and the
        client goes with its last reference."""
        try:
            if self._p.flush(timeout_s):
                self._p.purge()
                self._p.flush(0)  # the purged records' reports
        except KafkaException as exc:
            # A producer failed for good (fenced: a transaction the broker timed out during an
            # outage) refuses even a flush; what waits goes with it, its batch aborted already.
            log.debug("closed a failed producer: %s", _raised(exc))
        finally:
            self._links.close()


class ConfluentAdmin:
    def __init__(self, client: AdminClient, timeout_s: float) -> None:
        self._a = client
        self._timeout_s = timeout_s

    def _wait(self, futures: Mapping[Any, Any]) -> None:
        with _mapped():
            for future in futures.values():
                future.result(self._timeout_s)

    def list_topics(self) -> set[str]:
        with _mapped():
            return set(self._a.list_topics(timeout=self._timeout_s).topics)

    def create_topic(
        self, name: str, partitions: int, configs: Mapping[str, str] | None = None
    ) -> None:
        topic = NewTopic(name, partitions, config=dict(configs or {}))
        self._wait(self._a.create_topics([topic], operation_timeout=self._timeout_s))

    def describe_topics(self, names: Collection[str]) -> dict[str, int]:
        with _mapped():
            topics = self._a.list_topics(timeout=self._timeout_s).topics
        return {
            n: len(topics[n].partitions) for n in names if n in topics and topics[n].error is None
        }

    def describe_configs(self, names: Collection[str]) -> dict[str, dict[str, str]]:
        """A topic created a moment ago may be unknown to the broker that answers for a while
        (UNKNOWN_TOPIC_OR_PART): asked again until ``timeout_s``."""
        deadline = time.monotonic() + self._timeout_s
        while True:
            try:
                return self._describe_configs(names)
            except TopicMissing:
                if time.monotonic() > deadline:
                    raise
                time.sleep(METADATA_RETRY_S)

    def _describe_configs(self, names: Collection[str]) -> dict[str, dict[str, str]]:
        futures = self._a.describe_configs([ConfigResource("topic", n) for n in names])
        found: dict[str, dict[str, str]] = {}
        with _mapped():
            for resource, future in futures.items():
                entries = future.result(self._timeout_s)
                found[resource.name] = {
                    k: e.value for k, e in entries.items() if e.value is not None
                }
        return found

    def create_partitions(self, topic: str, total: int) -> None:
        futures = self._a.create_partitions(
            [NewPartitions(topic, total)], operation_timeout=self._timeout_s
        )
        self._wait(futures)

    def delete_topics(self, names: Collection[str]) -> None:
        if names:
            self._wait(self._a.delete_topics(list(names), operation_timeout=self._timeout_s))

    def list_consumer_groups(self) -> set[str]:
        with _mapped():
            result = self._a.list_consumer_groups(request_timeout=self._timeout_s).result()
        return {g.group_id for g in result.valid}

    def group_offsets(self, group_id: str) -> dict[TopicPartition, int]:
        request = [ConsumerGroupTopicPartitions(group_id)]
        with _mapped():
            futures = self._a.list_consumer_group_offsets(
                request, request_timeout=self._timeout_s
            )
            found = futures[group_id].result(self._timeout_s)
        return {
            TopicPartition(tp.topic, tp.partition): int(tp.offset)
            for tp in found.topic_partitions or ()
            if tp.offset >= 0
        }

    def group_members(self, group_ids: Collection[str]) -> dict[str, int]:
        if not group_ids:
            return {}
        with _mapped():
            futures = self._a.describe_consumer_groups(
                list(group_ids), request_timeout=self._timeout_s
            )
            return {g: len(f.result(self._timeout_s).members) for g, f in futures.items()}

    def delete_consumer_groups(self, group_ids: Collection[str]) -> None:
        if not group_ids:
            return
        futures = self._a.delete_consumer_groups(list(group_ids), request_timeout=self._timeout_s)
        for future in futures.values():
            try:
                future.result(self._timeout_s)
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if not (isinstance(error, KafkaError) and error.code() == _GROUP_NOT_FOUND):
                    raise _raised(exc) from exc

    def close(self) -> None:
        """librdkafka's admin client has no close: it goes with its last reference."""
