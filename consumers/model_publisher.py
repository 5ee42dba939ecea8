"""Publishes the learner's snapshots to the models topic, fenced so that only one learner writes.

Each snapshot is written in its own Kafka transaction, with one ``transactional.id`` per model
and models topic. A learner that becomes active calls :meth:`SnapshotPublisher.fence` first: the
broker aborts whatever an earlier learner of the same model left open, and refuses every later
write of that earlier learner (``ProducerFencedError`` -> :class:`Fenced`). A paused learner that
wakes up after a standby took over therefore cannot overwrite the newer lineage of snapshots.
Readers use ``read_committed`` (riverflow's default), so they never see an aborted snapshot.
"""

from __future__ import annotations

import logging

from kafka import KafkaProducer
from kafka.errors import KafkaError, ProducerFencedError

from riverflow.clients import producer
from riverflow.errors import RiverflowError
from riverflow.settings import Settings
from riverflow.topics import MODELS_MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)


class Fenced(RiverflowError):
    """Another learner of the same model became active; this one must stop writing."""


class PublishFailed(RiverflowError):
    """A snapshot could not be published in time; the next attempt starts a fresh transaction."""


def transactional_id(settings: Settings) -> str:
    return f"riverflow-learn-{settings.models_topic}-{settings.model_name}"


class SnapshotPublisher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.models_topic
        self.key = settings.model_name.encode()
        self._producer = self._connect()

    def _connect(self) -> KafkaProducer:
        return producer(
            self.settings,
            transactional_id=transactional_id(self.settings),
            max_request_size=MODELS_MAX_MESSAGE_BYTES,
            linger_ms=0,  # one record per transaction: nothing to batch
        )

    def fence(self) -> None:
        """Take over the model's transactional id; earlier learners can no longer publish."""
        self._producer.init_transactions()

    def publish(self, blob: bytes, timeout_s: float) -> None:
        """Publish one snapshot atomically; raise :class:`Fenced` or :class:`PublishFailed`."""
        p = self._producer
        try:
            p.begin_transaction()
            p.send(self.topic, key=self.key, value=blob).get(timeout=timeout_s)
            p.commit_transaction()
        except ProducerFencedError:
            raise Fenced(
                f"another learner of model {self.settings.model_name!r} took over"
            ) from None
        except KafkaError as exc:
            # The transaction may be half done; a fresh producer under the same id aborts it.
            log.warning("publishing a snapshot failed (%s): reconnecting", exc)
            self.close(timeout_s)
            self._producer = self._connect()
            self.fence()
            raise PublishFailed(f"snapshot not published: {exc}") from None

    def close(self, timeout_s: float) -> None:
        self._producer.close(timeout=timeout_s)
