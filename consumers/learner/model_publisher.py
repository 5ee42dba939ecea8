"""Publishes the learner's snapshots to the models topic, fenced so that only one learner writes.

Each snapshot is written in its own Kafka transaction, with one ``transactional.id`` per model
and models topic. A learner that becomes active calls :meth:`SnapshotPublisher.fence` first: the
broker aborts whatever an earlier learner of the same model left open, and refuses every later
write of that earlier learner (the transport's ``Fenced`` -> :class:`Fenced`). A paused learner that
wakes up after a standby took over therefore cannot overwrite the newer lineage of snapshots.
Readers use ``read_committed`` (riverflow's default), so they never see an aborted snapshot.
The same transaction writes the snapshot to the history topic
(:mod:`riverflow.online_model.history`).
"""

from __future__ import annotations

import logging

from riverflow.errors import BrokerError, RiverflowError
from riverflow.online_model.history import history_records
from riverflow.online_model.snapshot import read_header
from riverflow.settings import Settings
from riverflow.topics import MODELS_MAX_MESSAGE_BYTES
from riverflow.transport import Clients, Producer
from riverflow.transport import errors as te

log = logging.getLogger(__name__)


class Fenced(RiverflowError):
    """Another learner of the same model became active; this one must stop writing."""


class PublishFailed(RiverflowError):
    """A snapshot could not be published in time; the next attempt starts a fresh transaction."""


def transactional_id(settings: Settings) -> str:
    return f"riverflow-learn-{settings.models_topic}-{settings.model_name}"


class SnapshotPublisher:
    """The transactional producer of one model's snapshots. No I/O before :meth:`fence`.

    A publish that fails for any reason but fencing (the broker unreachable, no answer in time)
    leaves its transaction in doubt: the producer is dropped, and the next :meth:`publish`
    fences again with a new producer under the same transactional id, whose
    ``init_transactions()`` settles what the old one left open. Every step waits at most the
    caller's timeout, so a broker outage costs failed attempts (retried by the session), never a
    thread stuck until the broker returns.
    """

    def __init__(self, settings: Settings, clients: Clients) -> None:
        self.settings = settings
        self.clients = clients
        self.topic = settings.models_topic
        self.history_topic = settings.models_history_topic
        self.keep = settings.model_history
        self.name = settings.model_name
        self.key = self.name.encode()
        self._producer: Producer | None = None

    def fence(self, timeout_s: float) -> Producer:
        """Take over the model's transactional id: earlier learners can no longer publish.
        Raises ``BrokerError`` or a ``TransportError`` when the broker does not answer in time."""
        self.close(0)
        prod = self.clients.producer(
            transactional_id=transactional_id(self.settings),
            max_request_bytes=MODELS_MAX_MESSAGE_BYTES,
            linger_ms=0,  # a few records per transaction: nothing to batch
            max_block_s=timeout_s,
        )
        try:
            prod.init_transactions(timeout_s)
        except BaseException:
            prod.close(0)
            raise
        self._producer = prod
        return prod

    def publish(self, blob: bytes, timeout_s: float) -> None:
        """Publish one snapshot atomically; raise :class:`Fenced` or :class:`PublishFailed`."""
        try:
            p = self._producer or self.fence(timeout_s)
            p.begin_transaction()
            # The snapshot first, on its own: a fenced learner learns it from this record's
            # delivery (a later send would only fail with a generic error).
            self._write(p, [(self.topic, self.key, blob)], timeout_s)
            # Then the same snapshot in the history, and the version leaving it tombstoned.
            version = read_header(blob)[0].version
            history = history_records(self.name, version, blob, self.keep)
            self._write(p, [(self.history_topic, k, v) for k, v in history], timeout_s)
            p.commit_transaction(timeout_s)
        except te.Fenced:
            raise Fenced(
                f"another learner of model {self.settings.model_name!r} took over"
            ) from None
        except (te.TransportError, BrokerError) as exc:
            self.close(0)
            raise PublishFailed(f"snapshot not published: {exc}") from None

    @staticmethod
    def _write(
        p: Producer, records: list[tuple[str, bytes, bytes | None]], timeout_s: float
    ) -> None:
        failed: list[te.TransportError | None] = []
        for topic, key, value in records:
            p.send(topic, key, value, on_delivery=failed.append)
        if p.flush(timeout_s):
            raise te.Timeout(f"the snapshot was not written within {timeout_s:g}s")
        for error in failed:
            if error is not None:
                raise error

    def close(self, timeout_s: float) -> None:
        prod, self._producer = self._producer, None
        if prod is not None:
            prod.close(timeout_s)
