"""How a batch's outputs and its consumed offsets reach Kafka: at-least-once or exactly-once.

Both strategies share one contract, which the inference worker relies on:

1. :meth:`begin` before the first output of a batch;
2. :meth:`send` and :meth:`dead_letter` for each output;
3. :meth:`commit` with the batch's next offsets. When it returns (the epoch ms at which the
   outputs were in Kafka), every output of the batch is there and the offsets are (or,
   at-least-once, will be) committed. When it raises
   :class:`BatchFailed`, the caller calls :meth:`abort` and re-reads the batch from its first
   offsets: outputs may have been written (at-least-once: duplicates are the contract) or
   were discarded with the transaction (exactly-once: read_committed readers never see them).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from typing import Any, Protocol

from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError

from riverflow.clients import producer, send_dead_letter
from riverflow.errors import RiverflowError
from riverflow.schemas import now_ms
from riverflow.settings import Settings

log = logging.getLogger(__name__)

Offsets = dict[TopicPartition, OffsetAndMetadata]

# A batch's transaction lives for milliseconds (about a second for big ensembles). After a crash
# the open transaction holds back every read_committed reader of the predictions until the
# broker aborts it at this timeout; Kafka's 60 s default would stall the learner that long.
TRANSACTION_TIMEOUT_MS = 15_000


class BatchFailed(RiverflowError):
    """The batch's outputs may not all be in Kafka: abort and re-read it."""


class Delivery(Protocol):
    name: str
    producer: KafkaProducer

    def begin(self) -> None: ...
    def send(self, topic: str, key: bytes, value: bytes) -> None: ...
    def dead_letter(self, topic: str, record: Any, error: BaseException) -> str: ...
    def commit(self, offsets: Offsets) -> int: ...
    def abort(self) -> None: ...
    def take_pending(self, partitions: Iterable[TopicPartition]) -> Offsets: ...
    def close(self, timeout_s: float) -> None: ...


class AtLeastOnce:
    """Produce, flush, check every send, then commit the consumed offsets.

    Offsets whose commit failed (a rebalance in progress, a coordinator move) stay pending and
    are committed with the next batch, or by the rebalance listener through
    :meth:`take_pending` before their partitions are given away.
    """

    name = "at-least-once"

    def __init__(self, producer: KafkaProducer, consumer: KafkaConsumer) -> None:
        self.producer = producer
        self._consumer = consumer
        self._futures: list[Any] = []
        self._pending: Offsets = {}

    def begin(self) -> None:
        self._futures.clear()

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        self._futures.append(self.producer.send(topic, key=key, value=value))

    def dead_letter(self, topic: str, record: Any, error: BaseException) -> str:
        return send_dead_letter(self.producer, topic, record, error)

    def commit(self, offsets: Offsets) -> int:
        try:
            self.producer.flush()
        except KafkaError as exc:
            raise BatchFailed(f"flushing the batch's outputs failed: {exc}") from exc
        failed = next((f for f in self._futures if f.failed()), None)
        self._futures.clear()
        if failed is not None:
            raise BatchFailed(f"a prediction was not delivered: {failed.exception}")
        produced_ms = now_ms()
        self._pending.update(offsets)
        try:
            self._consumer.commit(dict(self._pending))
        except KafkaError as exc:
            # The outputs are in Kafka; a later commit of higher offsets covers these.
            log.warning("offset commit failed, retrying with the next batch: %s", exc)
            return produced_ms
        self._pending.clear()
        return produced_ms

    def abort(self) -> None:
        self._futures.clear()

    def take_pending(self, partitions: Iterable[TopicPartition]) -> Offsets:
        return {tp: self._pending.pop(tp) for tp in list(partitions) if tp in self._pending}

    def close(self, timeout_s: float) -> None:
        if self._pending:
            try:
                self._consumer.commit(dict(self._pending), timeout_ms=int(timeout_s * 1000))
                self._pending.clear()
            except KafkaError as exc:
                log.warning("final offset commit failed (outputs will be repeated): %s", exc)
        self.producer.close(timeout=timeout_s)


class Transactional:
    """One Kafka transaction per batch: predictions, dead letters and the consumed offsets
    commit together or not at all (``send_offsets_to_transaction`` with the consumer's group
    metadata, so a consumer that lost its partitions in a rebalance is fenced, KIP-447).

    The transactional id is unique per process: fencing of zombies comes from the group
    generation in the offsets commit, not from a stable id.
    """

    name = "exactly-once"

    def __init__(self, producer: KafkaProducer, consumer: KafkaConsumer) -> None:
        self.producer = producer
        self._consumer = consumer
        self._open = False

    def begin(self) -> None:
        self.producer.begin_transaction()
        self._open = True

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.producer.send(topic, key=key, value=value)

    def dead_letter(self, topic: str, record: Any, error: BaseException) -> str:
        return send_dead_letter(self.producer, topic, record, error)

    def commit(self, offsets: Offsets) -> int:
        try:
            self.producer.send_offsets_to_transaction(offsets, self._consumer.group_metadata())
            self.producer.commit_transaction()
        except KafkaError as exc:
            raise BatchFailed(f"transaction failed: {exc}") from exc
        self._open = False
        return now_ms()  # committed: visible to read_committed readers from now on

    def abort(self) -> None:
        if self._open:
            # A failure here (producer fenced, broker gone) is fatal for this producer: let it
            # end the worker, whose restart re-reads from the last committed transaction.
            self.producer.abort_transaction()
            self._open = False

    def take_pending(self, partitions: Iterable[TopicPartition]) -> Offsets:
        return {}  # offsets only ever commit inside a batch's transaction

    def close(self, timeout_s: float) -> None:
        self.producer.close(timeout=timeout_s)


def delivery_for(settings: Settings, consumer: KafkaConsumer, group_id: str) -> Delivery:
    if settings.exactly_once:
        prod = producer(
            settings,
            transactional_id=f"{group_id}-{uuid.uuid4().hex}",
            transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
        )
        prod.init_transactions()
        return Transactional(prod, consumer)
    return AtLeastOnce(producer(settings), consumer)
