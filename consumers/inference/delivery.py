"""How a batch's outputs and its consumed offsets reach Kafka: at-least-once or exactly-once.

Both strategies share one contract, which the inference worker relies on:

1. :meth:`begin` before the first output of a batch;
2. :meth:`send` and :meth:`dead_letter` for each output, naming the source record;
3. :meth:`commit` with the batch's next offsets. When it returns (the epoch ms at which the
   outputs were in Kafka), every output of the batch is there and the offsets are (or,
   at-least-once, will be) committed. When it (or a send) raises :class:`BatchFailed` or a
   ``TransportError``, the caller calls :meth:`abort` and re-reads the batch from its first
   offsets: outputs may have been written (at-least-once: duplicates are the
   contract) or were discarded with the transaction (exactly-once: read_committed readers never
   see them).

Kafka refuses some records for their own content
(:class:`~riverflow.transport.errors.RecordRejected`: too large, invalid). A refusal known to be
one record's raises :class:`RecordRefused`; when several outputs failed together, :meth:`abort`
returns their source records as suspects, to be sent ``alone`` next time, which makes a refusal
certain (:mod:`riverflow.consumers.inference.refusals` decides when to give up on a record).
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from riverflow import dead_letters
from riverflow.errors import BrokerError, RiverflowError, describe
from riverflow.schemas import now_ms
from riverflow.settings import Settings
from riverflow.transport import Batch, Clients, Consumer, Producer, TopicPartition
from riverflow.transport.base import Headers
from riverflow.transport.errors import InstanceFenced, RecordRejected, TransportError

log = logging.getLogger(__name__)

Offsets = dict[TopicPartition, int]  # next offsets

# A batch's transaction lives for milliseconds (about a second for big ensembles). After a crash
# the open transaction holds back every read_committed reader of the predictions until the
# broker aborts it at this timeout; Kafka's 60 s default would stall the learner that long.
TRANSACTION_TIMEOUT_MS = 15_000
# A flush waits in slices this long, so that a stop is noticed while the broker is away (the
# outputs wait in the producer meanwhile, and the flush goes on when the broker is back).
FLUSH_SLICE_S = 1.0
# How long a transaction's init, offsets and commit may take before the batch is given up (re-read).
TRANSACTION_STEP_S = 30.0


class BatchFailed(RiverflowError):
    """The batch's outputs may not all be in Kafka: abort and re-read it."""


class RecordRefused(BatchFailed):
    """Kafka refused an output of ``record`` for that record's own content."""

    def __init__(self, record: Any, error: BaseException) -> None:
        super().__init__(
            f"Kafka refused an output of {record.topic}/{record.partition}/{record.offset}: "
            f"{describe(error)}"
        )
        self.record = record
        self.error = error


class Delivery(Protocol):
    name: str
    producer: Producer

    def unfinished(self, batch: Batch) -> Batch: ...
    def begin(self) -> None: ...
    def send(
        self, topic: str, key: bytes, value: bytes, source: Any, alone: bool = False
    ) -> None: ...
    def dead_letter(
        self, topic: str, record: Any, error: BaseException, bare: bool = False, alone: bool = False
    ) -> str: ...
    def commit(self, offsets: Offsets) -> int: ...
    def abort(self) -> list[Any]: ...
    def take_pending(self, partitions: Iterable[TopicPartition]) -> Offsets: ...
    def close(self, timeout_s: float) -> None: ...


class _Outputs:
    """What both strategies share: each output is sent with its source record, and a producer
    that Kafka refused a record of is replaced.

    The replacement is needed: after one refusal, kafka-python 3.0's idempotent producer fails
    every later record with the same error, and a transactional one, once its transaction is
    aborted, sends with stale sequence numbers (OutOfOrderSequenceNumber); a fresh producer is
    cheap and right on either transport. A dropped producer is replaced when the next batch
    begins; while the broker does not answer, that batch fails there and is re-read.

    Each send's outcome comes back through its delivery callback (on a client thread, or inside
    a later send or flush) into the batch's own list of failures: a late report of an aborted
    batch lands in that batch's list, never in the next one's.

    While the broker is away a flush waits for it, until ``stop_requested`` says to give the
    batch up (it is re-read by whoever owns the partition next).
    """

    def __init__(
        self,
        make_producer: Callable[[], Producer],
        consumer: Consumer,
        stop_requested: Callable[[], bool] = lambda: False,
    ) -> None:
        self._make_producer = make_producer
        self.producer = make_producer()
        self._consumer = consumer
        self._stop_requested = stop_requested
        self._failures: list[tuple[TransportError, Any]] = []  # (error, source) of this batch
        self._dropped = False  # the producer was closed; the next batch starts a new one

    def unfinished(self, batch: Batch) -> Batch:
        """What of ``batch`` is to be done now (all of it, but see
        :meth:`Transactional.unfinished`)."""
        return batch

    def _start_batch(self) -> None:
        self._failures = []
        if self._dropped:
            try:
                self.producer = self._make_producer()
            except (TransportError, BrokerError) as exc:
                raise BatchFailed(f"no producer yet: {exc}") from None
            self._dropped = False

    def _drop_producer(self) -> None:
        if not self._dropped:
            self.producer.close(0)
            self._dropped = True

    def close(self, timeout_s: float) -> None:
        if not self._dropped:
            self.producer.close(timeout_s)

    def send(self, topic: str, key: bytes, value: bytes, source: Any, alone: bool = False) -> None:
        self._send(topic, key, value, None, source, alone)

    def dead_letter(
        self, topic: str, record: Any, error: BaseException, bare: bool = False, alone: bool = False
    ) -> str:
        letter = dead_letters.build(record, error, bare)
        self._send(topic, letter.key, letter.value, letter.headers, record, alone)
        return letter.stage

    def _send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        source: Any,
        alone: bool,
    ) -> None:
        if alone:  # with nothing else in flight, a refusal is surely this record's
            self._flush()
        failures = self._failures
        try:
            self.producer.send(
                topic, key, value, headers, functools.partial(_settled, failures, source)
            )
        except RecordRejected as exc:  # the client's own size check: the producer is unharmed
            raise RecordRefused(source, exc) from None
        except TransportError as exc:
            raise BatchFailed(f"sending an output failed: {exc}") from exc
        if alone:
            self._flush()
            refused = next((e for e, s in failures if s is source), None)
            if isinstance(refused, RecordRejected):
                raise RecordRefused(source, refused)

    def _flush(self) -> None:
        try:
            while self.producer.flush(FLUSH_SLICE_S):
                if self._stop_requested():
                    raise BatchFailed("stopping while the batch's outputs wait for Kafka")
        except TransportError as exc:
            raise BatchFailed(f"flushing the batch's outputs failed: {exc}") from exc

    def _check_sent(self) -> None:
        """After a flush: every output of the batch must be in Kafka."""
        if self._failures:
            raise BatchFailed(f"an output was not delivered: {self._failures[0][0]}")

    def _forget_sent(self) -> list[Any]:
        """Forget the batch's sends; returns the sources of those refused for their content,
        after replacing the producer if there are any."""
        refused = [(e, source) for e, source in self._failures if isinstance(e, RecordRejected)]
        self._failures = []
        if refused:
            log.warning(
                "Kafka refused %d outputs for their content (%s): replacing the producer",
                len(refused),
                describe(refused[0][0]),
            )
            self._drop_producer()
        return [source for _, source in refused]


def _settled(failures: list[tuple[TransportError, Any]], source: Any, error: Any) -> None:
    """A send's delivery callback: a failure is noted with its source record (list.append is
    safe from a client thread)."""
    if error is not None:
        failures.append((error, source))


class AtLeastOnce(_Outputs):
    """Produce, flush, check every send, then commit the consumed offsets, without waiting for
    the commit's answer.

    Once a batch's outputs are in Kafka its offsets may be committed at any later time, so the
    commit is asynchronous: waiting for the group coordinator (~8 ms a commit on a local Kafka
    4.1, whose coordinator lingers before it writes) cost every batch that much and every
    reading that much latency. Each owned partition's latest offsets are kept and go with every
    later commit, so a commit that failed (a rebalance, a coordinator move) or was overtaken by
    a retry of an older one is covered by the next batch's, for idle partitions too. They are
    committed synchronously by the rebalance listener (:meth:`take_pending`) before their
    partitions are given away, and at :meth:`close`.
    """

    name = "at-least-once"

    def __init__(
        self,
        make_producer: Callable[[], Producer],
        consumer: Consumer,
        stop_requested: Callable[[], bool] = lambda: False,
    ) -> None:
        super().__init__(make_producer, consumer, stop_requested)
        self._pending: Offsets = {}  # the next offsets of every owned partition read so far

    def begin(self) -> None:
        self._start_batch()

    def commit(self, offsets: Offsets) -> int:
        self._flush()
        self._check_sent()
        produced_ms = now_ms()
        self._pending.update(offsets)
        try:
            self._consumer.commit(dict(self._pending), asynchronous=True)
        except InstanceFenced:
            raise  # another process has this member's place: no later commit will pass
        except TransportError as exc:
            # The outputs are in Kafka; the next batch's commit carries these offsets again.
            log.warning("offset commit failed, retrying with the next batch: %s", exc)
        return produced_ms

    def abort(self) -> list[Any]:
        return self._forget_sent()

    def take_pending(self, partitions: Iterable[TopicPartition]) -> Offsets:
        return {tp: self._pending.pop(tp) for tp in list(partitions) if tp in self._pending}

    def close(self, timeout_s: float) -> None:
        if self._pending:
            try:
                self._consumer.commit(dict(self._pending))
                self._pending.clear()
            except TransportError as exc:
                log.warning("final offset commit failed (outputs will be repeated): %s", exc)
        super().close(timeout_s)


class Transactional(_Outputs):
    """One Kafka transaction per batch: predictions, dead letters and the consumed offsets
    commit together or not at all (``send_offsets_to_transaction`` with the consumer's group
    metadata, so a consumer that lost its partitions in a rebalance is fenced, KIP-447).

    The transactional id is unique per process: fencing of zombies comes from the group
    generation in the offsets commit, not from a stable id. A failed batch's transaction goes
    with its producer; the replacement takes the same id, so its ``init_transactions()`` aborts
    what was left open at once (read_committed readers are not held back until the transaction
    times out). This works whatever state the old producer is in (fenced, in error, cut off
    from the broker), where ``abort_transaction()`` could fail, or wait for the whole outage.

    A commit that was not confirmed leaves its transaction in doubt: the broker may have
    committed it after all (the commit reached it before it went away), and then its records
    must not be done again (:meth:`unfinished`).
    """

    name = "exactly-once"

    def __init__(
        self,
        make_producer: Callable[[], Producer],
        consumer: Consumer,
        stop_requested: Callable[[], bool] = lambda: False,
    ) -> None:
        super().__init__(make_producer, consumer, stop_requested)
        self._open = False
        self._in_doubt = False  # the last commit was not confirmed

    def unfinished(self, batch: Batch) -> Batch:
        """``batch`` without what the group has committed. After a transaction in doubt, the
        replacement producer's ``init_transactions()`` settles it, commit or abort, so the
        committed offsets read then tell what is done: the batch's records below them are
        dropped, and the other owned partitions are sought to them."""
        if not self._in_doubt:
            return batch
        self._start_batch()
        consumer = self._consumer
        try:
            committed = consumer.committed(consumer.assignment() | batch.keys(), TRANSACTION_STEP_S)
        except TransportError as exc:
            raise BatchFailed(f"the last transaction's outcome is not known yet: {exc}") from exc
        self._in_doubt = False
        left: Batch = {}
        for tp, done in committed.items():
            records = batch.get(tp)
            if records is None:
                if done is not None:
                    consumer.seek(tp, done)
                continue
            rest = records if done is None else [r for r in records if r.offset >= done]
            if rest:
                left[tp] = rest
        done_count = sum(map(len, batch.values())) - sum(map(len, left.values()))
        log.info(
            "after a transaction in doubt, reading on from the committed offsets: %d records "
            "were done already",
            done_count,
        )
        return left

    def begin(self) -> None:
        self._start_batch()
        try:
            self.producer.begin_transaction()
        except TransportError as exc:
            self._drop_producer()
            raise BatchFailed(f"no transaction: {exc}") from exc
        self._open = True

    def commit(self, offsets: Offsets) -> int:
        # Checked before committing: kafka-python 3.0 can commit a transaction one of whose
        # records failed (seen right after a transaction aborted over a refused record).
        self._flush()
        self._check_sent()
        try:
            self.producer.send_offsets_to_transaction(
                offsets, self._consumer.group_metadata(), TRANSACTION_STEP_S
            )
        except TransportError as exc:
            raise BatchFailed(f"transaction failed: {exc}") from exc
        try:
            self.producer.commit_transaction(TRANSACTION_STEP_S)
        except TransportError as exc:
            self._in_doubt = True
            raise BatchFailed(f"transaction failed: {exc}") from exc
        self._open = False
        self._failures = []
        return now_ms()  # committed: visible to read_committed readers from now on

    def abort(self) -> list[Any]:
        suspects = self._forget_sent()
        if self._open:
            self._open = False
            self._drop_producer()  # see the class docstring
        return suspects

    def take_pending(self, partitions: Iterable[TopicPartition]) -> Offsets:
        return {}  # offsets only ever commit inside a batch's transaction


def delivery_for(
    settings: Settings,
    clients: Clients,
    consumer: Consumer,
    group_id: str,
    stop_requested: Callable[[], bool] = lambda: False,
) -> Delivery:
    """The delivery ``settings`` ask for, with its first producer (this needs the broker)."""
    if settings.exactly_once:
        transactional_id = f"{group_id}-{uuid.uuid4().hex}"

        def transactional() -> Producer:
            prod = clients.producer(
                transactional_id=transactional_id,
                transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
            )
            try:
                prod.init_transactions(TRANSACTION_STEP_S)
            except BaseException:
                prod.close(0)
                raise
            return prod

        return Transactional(transactional, consumer, stop_requested)
    return AtLeastOnce(clients.producer, consumer, stop_requested)
