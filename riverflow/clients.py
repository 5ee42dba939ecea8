"""Thin kafka-python plumbing shared by every worker: clients, dead letters, lag.

Everything that touches Kafka for more than one command lives here, so the consumers stay about
their own logic and the settings-to-client mapping exists once (:func:`kafka_kwargs`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
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
        return sorted(partitions)[h % len(partitions)]


def producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """A producer for our JSON topics: acks=all, idempotent, small linger for batching."""
    kw: dict[str, Any] = dict(
        kafka_kwargs(settings),
        client_id=f"{settings.client_id}-producer",
        acks="all",
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
    kw.update(overrides)
    try:
        return KafkaConsumer(*topics, **kw)
    except KafkaError:
        raise _unreachable(settings) from None


def admin(settings: Settings) -> KafkaAdminClient:
    try:
        return KafkaAdminClient(**kafka_kwargs(settings), client_id=f"{settings.client_id}-admin")
    except KafkaError:
        raise _unreachable(settings) from None


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
