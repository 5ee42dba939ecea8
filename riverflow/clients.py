"""Thin kafka-python plumbing shared by every worker: clients, dead letters, lag.

Everything that touches Kafka for more than one command lives here, so the consumers stay about
their own logic and the settings-to-client mapping exists once (:func:`kafka_kwargs`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import MemberToRemove
from kafka.errors import KafkaError, KafkaTimeoutError, NoError
from kafka.partitioner import DefaultPartitioner
from kafka.partitioner.default import murmur2

from riverflow import dead_letters
from riverflow.errors import BrokerError, ConfigError
from riverflow.settings import Settings, kafka_kwargs

log = logging.getLogger(__name__)


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


# How long a record may wait in a producer for the broker to take it: a week, so that records
# wait out any broker outage in order (kafka-python retries them, idempotently) instead of
# expiring after kafka-python's 2 minutes. Whoever sends bounds what waits: simulate and replay
# pause their source, workers stop reading while a batch's outputs wait.
DELIVERY_TIMEOUT_MS = 7 * 24 * 3600 * 1000


def producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """A producer for our JSON topics: acks=all, idempotent, small linger for batching, and
    records that wait for a broker that is away (:data:`DELIVERY_TIMEOUT_MS`)."""
    kw: dict[str, Any] = dict(
        kafka_kwargs(settings),
        client_id=f"{settings.client_id}-producer",
        acks="all",
        delivery_timeout_ms=DELIVERY_TIMEOUT_MS,
        # A few milliseconds of linger turns per-reading sends into batches at high rates
        # while adding little to the end-to-end latency budget.
        linger_ms=5,
        batch_size=256 * 1024,
        partitioner=KeyHashPartitioner(),
        # Never below what a dead letter may take (riverflow.dead_letters).
        max_request_size=max(dead_letters.MAX_RECORD_BYTES, settings.max_message_bytes * 4),
    )
    kw.update(overrides)
    try:
        return KafkaProducer(**kw)
    except KafkaError:
        raise _unreachable(settings) from None


def close_producer(prod: KafkaProducer, timeout_s: float) -> bool:
    """Close ``prod`` within about ``timeout_s``, also when the broker is away; False when
    records were still waiting and were failed.

    kafka-python's ``close()`` flushes first and raises ``KafkaTimeoutError`` when records are
    still waiting, leaving its sender thread running (and ``__del__`` then prints the same
    error with a traceback). Records still waiting at the deadline are failed instead (their
    futures say so): whoever sent them re-reads or reports them.
    """
    try:
        prod.close(timeout=timeout_s)
        return True
    except KafkaError as exc:
        log.debug("closing a producer whose records still wait: failing them (%s)", exc)
    # The sender's force close fails every waiting batch, so the flush inside close() passes.
    sender = prod._sender
    sender.force_close()
    sender.join(max(timeout_s, 1.0))
    try:
        prod.close(timeout=0)
    except KafkaError as exc:
        log.error("a producer did not close (%s)", exc)
    return False


def end_transaction(prod: KafkaProducer, commit: bool, timeout_s: float) -> None:
    """``commit_transaction()`` or ``abort_transaction()``, waiting at most ``timeout_s``.

    kafka-python's own calls wait without a bound (the Java client had the same bug,
    KAFKA-7763), so an unreachable broker would hold the caller for the whole outage. Raises
    ``KafkaTimeoutError`` when the broker has not confirmed in time: the outcome is then unknown
    until a new producer under the same transactional id runs ``init_transactions()``.
    """
    manager = prod._transaction_manager
    result = manager.begin_commit() if commit else manager.begin_abort()
    prod._sender.wakeup()
    if not result.wait(timeout_ms=timeout_s * 1000):
        what = "commit" if commit else "abort"
        raise KafkaTimeoutError(f"the transaction's {what} was not confirmed within {timeout_s:g}s")


def has_live_connection(client: KafkaConsumer | KafkaProducer) -> bool:
    """True when ``client`` holds an open connection to at least one broker.

    kafka-python 3 keeps a client's connections in its connection manager, reached through the
    cluster metadata of either client kind: the only account of them that costs no request.
    Safe from another thread (a copy of the dict, then plain attribute reads).
    """
    cluster = client._cluster if isinstance(client, KafkaConsumer) else client._metadata
    return any(conn.connected for conn in list(cluster._manager._conns.values()))


def consumer(
    settings: Settings, *topics: str, group_id: str | None, **overrides: Any
) -> KafkaConsumer:
    """A manually committed consumer; ``group_id=None`` makes an assign-only reader."""
    kw: dict[str, Any] = dict(
        kafka_kwargs(settings),
        client_id=f"{settings.client_id}-consumer",
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset=settings.auto_offset_reset,
        max_poll_records=settings.max_poll_records,
        max_poll_interval_ms=settings.max_poll_interval_ms,
        isolation_level="read_committed",
    )
    if group_id is not None:
        session_ms = int(settings.session_timeout_s * 1000)
        kw.update(
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=min(3000, session_ms // 3),
            group_instance_id=settings.instance_id,
        )
    kw.update(overrides)
    try:
        return KafkaConsumer(*topics, **kw)
    except KafkaError:
        raise _unreachable(settings) from None


def admin(settings: Settings, **overrides: Any) -> KafkaAdminClient:
    kw: dict[str, Any] = dict(kafka_kwargs(settings), client_id=f"{settings.client_id}-admin")
    kw.update(overrides)
    try:
        return KafkaAdminClient(**kw)
    except KafkaError:
        raise _unreachable(settings) from None


def close_member(client: KafkaConsumer, settings: Settings, timeout_s: float) -> None:
    """Close a group consumer; a static member (``instance_id``) also leaves its group.

    kafka-python, like the Java client, sends no LeaveGroup for a static member on close, so
    its partitions would wait a whole session timeout for a restart that may never come
    (scale-down, ``--idle-exit``, a standby learner's turn). A clean stop therefore removes it
    by member id (never a newer process that took the same instance id); a crash keeps it in
    the group for its restart, which is what static membership is for.
    """
    deadline = time.monotonic() + timeout_s
    member = client.group_metadata()
    client.close(autocommit=False, timeout_ms=int(timeout_s * 1000))
    if member.group_instance_id is None or not member.member_id:
        return
    left_ms = int(max(0.5, deadline - time.monotonic()) * 1000)
    leaving = MemberToRemove(member.member_id, member.group_instance_id, "stopped cleanly")
    try:
        client_admin = admin(settings, request_timeout_ms=left_ms, bootstrap_timeout_ms=left_ms)
        try:
            errors = client_admin.remove_group_members(member.group_id, [leaving])
        finally:
            client_admin.close()
        failed = [e.__name__ for e in errors.values() if e is not NoError]
        if failed:
            raise KafkaError(", ".join(failed))
    except (KafkaError, BrokerError) as exc:
        log.warning(
            "could not leave group %s as %s (its partitions move after the session timeout): %s",
            member.group_id,
            member.group_instance_id,
            exc,
        )
        return
    log.info("left group %s as %s", member.group_id, member.group_instance_id)


def duplicate_instance(settings: Settings, group_id: str) -> ConfigError:
    """The broker fenced this member: another process joined ``group_id`` with its instance id.
    Carrying on would process (and, at-least-once, repeat) its partitions' records twice."""
    return ConfigError(
        f"another process joined group {group_id} as instance {settings.instance_id!r}: "
        "give each worker its own --instance-id (RIVERFLOW_INSTANCE_ID)"
    )


def _unreachable(settings: Settings) -> BrokerError:
    return BrokerError(
        f"no Kafka broker answers at {settings.bootstrap_servers}: start one with "
        "`riverflow kafka start` or set RIVERFLOW_BOOTSTRAP_SERVERS"
    )


def topic_partitions(client: Any, topic: str) -> list[TopicPartition]:
    """Every partition of ``topic`` in order; a missing topic is a usage error."""
    partitions = client.partitions_for_topic(topic)
    if not partitions:
        raise ConfigError(f"topic {topic!r} does not exist: run `riverflow topics create`")
    return [TopicPartition(topic, p) for p in sorted(partitions)]


def lag_samples(
    client: KafkaConsumer, positions: Mapping[TopicPartition, int | None]
) -> list[tuple[list[str], float]]:
    """``consumer_lag`` samples: each partition's end offset seen by the last fetch minus the
    position. Computed by the thread that owns the consumer (kafka-python clients are not
    thread-safe) and cached for the scrape thread."""
    samples: list[tuple[list[str], float]] = []
    for tp, position in positions.items():
        end = client.highwater(tp)
        if end is not None and position is not None:
            samples.append(([tp.topic, str(tp.partition)], float(max(0, end - position))))
    return samples


def send_dead_letter(prod: KafkaProducer, topic: str, record: Any, error: BaseException) -> str:
    """Send the dead letter of ``record`` (:mod:`riverflow.dead_letters`); returns its stage."""
    letter = dead_letters.build(record, error)
    prod.send(topic, key=letter.key, value=letter.value, headers=letter.headers)
    return letter.stage
