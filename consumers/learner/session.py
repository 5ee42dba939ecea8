"""The active learner's session: from loading the latest snapshot to stepping down.

A :class:`Session` fences earlier learners of the model (see
:mod:`riverflow.consumers.learner.model_publisher`), loads the latest snapshot (or starts from the
preset, version 0), and resumes both inputs from the checkpoint in its header (see
:mod:`riverflow.consumers.learner.checkpoint`) with a manually assigned consumer: the snapshot, not
group offsets, is the checkpoint. Each :meth:`Session.batch` decodes, joins, learns and evaluates
(:mod:`riverflow.consumers.learner.state`); :meth:`Session.publish`
captures the model and checkpoint between batches and hands them to a snapshot thread.

The session receives its transport's clients and is driven from the learner's loop thread only.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from riverflow import dead_letters
from riverflow.consumers.learner.adoption import describe, operator_versions
from riverflow.consumers.learner.checkpoint import (
    Checkpoint,
    PartitionReplay,
    Replay,
    partition_key,
)
from riverflow.consumers.learner.model_publisher import PublishFailed, SnapshotPublisher
from riverflow.consumers.learner.state import (
    Learning,
    LearningConfig,
    check_label,
    check_prediction,
)
from riverflow.consumers.snapshot_feed import SnapshotFeed, feed_consumer
from riverflow.errors import ConfigError, InvalidEvent, SnapshotError
from riverflow.extract import FeedbackExtractor
from riverflow.lifecycle import Deadline
from riverflow.mapping import Mapping
from riverflow.metrics import LearnerMetrics
from riverflow.online_model.presets import ModelSpec
from riverflow.online_model.snapshot import SnapshotHeader, Trust, dumps, loads, verify
from riverflow.schemas import Decoder, now_ms
from riverflow.settings import Settings
from riverflow.transport import (
    Clients,
    Consumer,
    Producer,
    Record,
    TopicPartition,
    lag_samples,
    topic_partitions,
)
from riverflow.transport.errors import TransportError

log = logging.getLogger(__name__)

# How long a poll waits for input before the loop looks at snapshots and signals again.
BATCH_POLL_S = 0.2
# How often the models topic is looked at for an operator's version (a non-blocking poll).
OPERATIONS_EVERY_S = 0.5


@dataclass
class InFlight:
    """A snapshot handed to the snapshot thread, and what to restore if the broker refuses it."""

    future: Future[float]  # when the broker confirmed it (perf_counter)
    header: SnapshotHeader
    size: int
    started: float
    learned_before: int
    replaced: bool


class Session:
    """One stretch of being the active learner: from loading a snapshot to stepping down.

    Built without I/O; :meth:`start` fences, loads and seeks. While the broker is away, polls
    return nothing and snapshot attempts fail (counted, logged once, retried every
    ``snapshot_interval_s``); the session itself carries on and resumes when the broker does.
    """

    def __init__(
        self,
        settings: Settings,
        clients: Clients,
        spec: ModelSpec,
        metrics: LearnerMetrics,
        dead_letters: Producer,
        trust: Trust,
        mapping: Mapping | None = None,
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.spec = spec
        self.metrics = metrics
        self._dead_letters = dead_letters
        self._trust = trust  # its key signs what this session publishes
        self.decoder = Decoder.from_settings(settings)
        # Feedback of another shape, read through the mapping (riverflow.mapping).
        self.mapped: FeedbackExtractor | None = None
        if mapping is not None and mapping.feedback is not None:
            self.mapped = FeedbackExtractor(
                mapping.feedback, settings.max_message_bytes, settings.max_ts_skew_s
            )
        self.publisher = SnapshotPublisher(settings, clients)
        # One thread publishes snapshots, one at a time: the transactional producer is used
        # from that thread only (fence() and close() run when nothing is in flight).
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot")
        self._in_flight: InFlight | None = None
        self._failed_in_row = 0  # publish attempts that failed since the last success
        self.inputs: Consumer | None = None
        self._feed: SnapshotFeed | None = None
        self._operations_at = 0.0  # when the models topic was last looked at (monotonic)
        self.lag: list[tuple[list[str], float]] = []

    def start(self) -> None:
        """Fence earlier learners, load the latest snapshot, resume the inputs from it.

        Raises a ``TransportError`` or ``BrokerError`` when the broker does not answer in time (the
        learner tries again with a new session), ``SnapshotError`` when the latest snapshot is
        refused, ``ConfigError`` when a topic is missing; the session is closed by then.
        """
        settings = self.settings
        try:
            self.publisher.fence(settings.shutdown_timeout_s)
            header, model, evaluation = self._load()
            self.version = header.version if header else 0
            checkpoint = Checkpoint.from_header(header) if header else Checkpoint()
            config = LearningConfig(
                ttl_ms=int(settings.feedback_ttl_s * 1000),
                max_pending=settings.max_pending,
                window=settings.rolling_window,
                detector=settings.concept_drift_detector,
                on_drift=settings.on_drift,
            )
            self.learning = Learning(
                self.spec,
                config,
                self.metrics,
                self._dead_letter,
                model=model,
                learned=header.learned_count if header else 0,
                watermark=checkpoint.watermark,
                evaluation=evaluation,
                version=self.version,
            )
            self.published_learned = self.learning.learned
            self.published_at = time.monotonic()
            self._resume(checkpoint)
        except BaseException:
            self.close(settings.shutdown_timeout_s)
            raise
        self.metrics.model_version.set(self.version)

    def _load(self) -> tuple[SnapshotHeader | None, Any, dict[str, Any] | None]:
        name = self.settings.model_name
        feed = SnapshotFeed(feed_consumer(self.clients), self.settings.models_topic, name)
        try:
            data = feed.latest(self._refuse, complete=True)
        except BaseException:
            feed.close(self.settings.shutdown_timeout_s)
            raise
        self._feed = feed  # from now on it brings operators' versions (_follow_operations)
        # Starting over would learn every feedback a second time into a lineage the inference
        # consumers may not accept, and the next snapshot would compact away the old one: only
        # when there is no snapshot, or the model was deleted. Hostile or broken records after
        # a good snapshot are passed over (the feed logs them).
        if data is None and feed.refused_newer:
            raise ConfigError(
                f"none of the {feed.refused_newer} snapshots of {name} on "
                f"{self.settings.models_topic} verifies (reasons above): check that "
                "RIVERFLOW_MODEL_SIGNING_KEY is the key they were signed with. To start over "
                "instead, delete the model (a tombstone) or use a new models topic",
            )
        if data is None:
            log.info("no snapshot of %s yet: starting from the preset", name)
            return None, None, None
        # The newest snapshot that verifies, failing to load (a class outside the allow-list),
        # stops the learner too: only the key holder wrote it, so its lineage is the learner's.
        snap = loads(data, self._trust, task=self.spec.task, model=name, evaluation=True)
        h = snap.header
        log.info(
            "resuming %s from snapshot v%d (%d learned, %d bytes)",
            h.model,
            h.version,
            h.learned_count,
            snap.size,
        )
        if snap.evaluation is None:
            log.info("the snapshot carries no evaluation state: quality metrics start over")
        return h, snap.model, snap.evaluation

    def _refuse(self, value: bytes) -> str | None:
        """Why the snapshot ``value`` cannot be resumed from (counted), or None; no unpickling."""
        try:
            verify(value, self._trust, task=self.spec.task, model=self.settings.model_name)
        except SnapshotError as exc:
            self.metrics.snapshot_rejected.labels(exc.reason).inc()
            return exc.reason
        return None

    def _resume(self, checkpoint: Checkpoint) -> None:
        s = self.settings
        self.inputs = self.clients.consumer()
        self.keys: dict[TopicPartition, str] = {}
        self.positions: dict[TopicPartition, int] = {}
        self.replays: dict[TopicPartition, PartitionReplay] = {}
        tps = [tp for topic in self._topics for tp in topic_partitions(self.inputs, topic)]
        self._read(tps, checkpoint, s.auto_offset_reset == "earliest")
        self._partitions_seen_at = time.monotonic()
        if self.replays:
            log.info(
                "re-reading %d records still waiting at the snapshot",
                sum(sum(e - b for b, e in runs) for runs in checkpoint.pending.values()),
            )

    @property
    def _topics(self) -> tuple[str, str]:
        return self.settings.predictions_topic, self.settings.feedback_topic

    def _read(self, tps: list[TopicPartition], checkpoint: Checkpoint, earliest: bool) -> None:
        """Add ``tps`` to the partitions read, each from its checkpointed position, or from the
        beginning (``earliest``) or end of the partition when the checkpoint does not know it."""
        assert self.inputs is not None
        inputs = self.inputs
        keys = {tp: partition_key(tp.topic, tp.partition) for tp in tps}
        new = [tp for tp in tps if checkpoint.start(keys[tp]) is None]
        first: dict[TopicPartition, int] = {}
        if new:  # asked first: a broker that does not answer leaves the session as it was
            first = inputs.beginning_offsets(new) if earliest else inputs.end_offsets(new)
        inputs.assign([*self.keys, *tps])  # partitions already read keep their positions
        self.keys.update(keys)
        for tp in tps:
            key = self.keys[tp]
            start = checkpoint.start(key)
            if start is None:
                start = self.positions[tp] = first[tp]
            else:
                self.positions[tp] = checkpoint.positions[key]
                if start < self.positions[tp]:
                    self.replays[tp] = checkpoint.replay(key)
            inputs.seek(tp, start)

    def _follow_new_partitions(self) -> None:
        """Read partitions added to the inputs since the session started (from their beginning:
        everything in them is newer than the session), within ``metadata_refresh_s``, the age
        at which the consumer refreshes its metadata."""
        assert self.inputs is not None
        now = time.monotonic()
        if now - self._partitions_seen_at < self.settings.metadata_refresh_s:
            return
        self._partitions_seen_at = now
        found = [
            TopicPartition(topic, p)
            for topic in self._topics
            for p in sorted(self.inputs.partitions_for_topic(topic))
            if TopicPartition(topic, p) not in self.keys
        ]
        if found:
            names = ", ".join(f"{tp.topic}/{tp.partition}" for tp in found)
            try:
                self._read(found, Checkpoint(), earliest=True)
            except TransportError as exc:  # the broker away: looked for again at the next refresh
                log.warning("new input partitions %s not read yet: %s", names, exc)
                return
            log.info("new input partitions %s: reading them from the beginning", names)

    # -- the batch loop ------------------------------------------------------------------

    def batch(self) -> int:
        """Consume one poll of both inputs; returns the number of records read."""
        assert self.inputs is not None
        polled = self.inputs.poll_batch(BATCH_POLL_S)
        predictions_topic = self.settings.predictions_topic
        now = now_ms()
        count = 0
        for tp, records in polled.items():
            count += len(records)
            key = self.keys[tp]
            replay = self.replays.get(tp)
            if replay is None and records[0].offset < self.positions[tp]:
                records = self._unseen(tp, records)
                if not records:
                    continue
            is_prediction = tp.topic == predictions_topic
            for record in records:
                kind = replay.classify(record.offset) if replay else Replay.LIVE
                if kind is Replay.SKIP:
                    continue
                if is_prediction:
                    self._prediction(record, key, kind)
                else:
                    self._feedback(record, key, kind, now)
            end = records[-1].offset + 1
            if end > self.positions[tp]:
                self.positions[tp] = end
            if replay is not None and end >= replay.next:
                del self.replays[tp]
        self.learning.expire()
        self.learning.export()
        self._cache_lag()
        self._follow_new_partitions()
        self._follow_operations()
        return count

    def _unseen(self, tp: TopicPartition, records: list[Record]) -> list[Record]:
        """The records of ``records`` at or after the partition's position. A client may go
        back on its own (librdkafka resets a position it finds truncated after a broker
        restart); what it delivers again is in the model already, and learning it twice would
        break the snapshot lineage's exactly-once."""
        position = self.positions[tp]
        unseen = [r for r in records if r.offset >= position]
        log.warning(
            "%s/%d delivered again from offset %d (position %d): %d records already learned "
            "from passed over",
            tp.topic,
            tp.partition,
            records[0].offset,
            position,
            len(records) - len(unseen),
        )
        return unseen

    def _follow_operations(self) -> None:
        """Adopt the estimator of a version an operator published (import, train, rollback)
        meanwhile; the rest of the learner's state stays
        (:mod:`riverflow.consumers.learner.adoption`)."""
        now = time.monotonic()
        if self._feed is None or now - self._operations_at < OPERATIONS_EVERY_S:
            return
        self._operations_at = now
        name = self.settings.model_name
        polled = self._feed.poll()
        for snap in operator_versions(polled, self._trust, self.spec.task, name, self.metrics):
            self.settle(block=True)
            self.learning.adopt(snap.model)
            self.version = self.learning.version = max(self.version, snap.header.version)
            log.info(
                "adopted %s v%d (%s): the learner continues from its estimator, keeping its "
                "join state, positions and evaluation; publishing it as v%d",
                name,
                snap.header.version,
                describe(snap),
                self.version + 1,
            )

    def _prediction(self, record: Record, key: str, kind: Replay) -> None:
        try:
            prediction = self.decoder.prediction(record.value)
            check_prediction(self.spec.task, prediction)
        except InvalidEvent as exc:
            self._invalid(record, exc)
            return
        self.learning.add_prediction(prediction, record, key, record.offset, kind)

    def _feedback(self, record: Record, key: str, kind: Replay, now: int) -> None:
        # A re-read label was validated when first read; its ts may have left the skew window.
        skew_now = now if kind is Replay.LIVE else None
        try:
            if self.mapped is None:
                feedback = self.decoder.feedback(record.value, skew_now)
            else:
                feedback = self.mapped.feedback(record, skew_now)
            if kind is Replay.LIVE:
                check_label(self.spec.task, feedback.label)
        except InvalidEvent as exc:
            self._invalid(record, exc)
            return
        self.learning.add_feedback(feedback, record, key, record.offset)

    def _invalid(self, record: Any, exc: InvalidEvent) -> None:
        self.metrics.feedback.labels("invalid").inc()
        self._dead_letter(record, exc)

    def _dead_letter(self, record: Any, exc: InvalidEvent) -> None:
        log.debug("dead letter %s/%d/%d: %s", record.topic, record.partition, record.offset, exc)
        self.metrics.invalid_events.labels(exc.reason).inc()
        letter = dead_letters.build(record, exc)
        self._dead_letters.send(
            self.settings.dead_letters_topic, letter.key, letter.value, letter.headers
        )
        self.metrics.dead_letters.labels(letter.stage).inc()

    def _cache_lag(self) -> None:
        assert self.inputs is not None
        self.lag = lag_samples(self.inputs, self.positions)

    # -- snapshots -----------------------------------------------------------------------

    @property
    def changed(self) -> bool:
        return self.learning.replaced or self.learning.learned != self.published_learned

    def snapshot_due(self) -> bool:
        if self._in_flight is not None:
            return False
        if self.learning.replaced:
            return True
        if not self.changed:
            return False
        s = self.settings
        return (
            self.learning.learned - self.published_learned >= s.snapshot_every
            or time.monotonic() - self.published_at >= s.snapshot_interval_s
        )

    def publish(self, timeout_s: float) -> None:
        """Capture model + checkpoint as the next version and hand it to the snapshot thread.

        The capture is consistent (between batches); Kafka's round trips then overlap with the
        next batches. Raises Fenced if the *previous* snapshot was fenced.
        """
        self.settle(block=True)
        started = time.perf_counter()
        learning = self.learning
        checkpoint = Checkpoint.capture(
            positions={self.keys[tp]: p for tp, p in self.positions.items()},
            waiting={str(k): v for k, v in learning.store.pending_offsets().items()},
            unread={self.keys[tp]: replay.unread() for tp, replay in self.replays.items()},
            watermark=learning.store.watermark,
        )
        header = SnapshotHeader(
            model=self.settings.model_name,
            version=self.version + 1,
            task=self.spec.task,
            learned_count=learning.learned,
            positions=checkpoint.positions,
            extra=checkpoint.header_extra(),
        )
        blob = dumps(header, learning.model, self._trust.key, evaluation=learning.evaluation())
        future = self._sender.submit(self._send, blob, timeout_s)
        self._in_flight = InFlight(
            future,
            header,
            len(blob),
            started,
            self.published_learned,
            learning.replaced,
        )
        # Counted as published now (so the next snapshot is due from here); settle() undoes it
        # if the broker refuses, but for the version: a commit that was not confirmed may have
        # gone through, and versions only grow.
        self.version, self.published_learned = header.version, learning.learned
        learning.version = header.version
        learning.replaced = False
        self.published_at = time.monotonic()  # also the retry back-off when publishing fails

    def _send(self, blob: bytes, timeout_s: float) -> float:
        """On the snapshot thread: publish, and return when it was done (``perf_counter``).

        The dead letters of the records this checkpoint moves past are stored before it is.
        """
        try:
            waiting = self._dead_letters.flush(timeout_s)
        except TransportError as exc:
            raise PublishFailed(f"dead letters not stored, snapshot held back: {exc}") from None
        if waiting:
            raise PublishFailed(f"{waiting} dead letters not stored yet, snapshot held back")
        self.publisher.publish(blob, timeout_s)
        return time.perf_counter()

    def settle(self, block: bool) -> bool | None:
        """Account for the snapshot in flight once it is done (wait for it if ``block``).

        Returns True when it was published, False when it failed (its changes go into the next
        snapshot, due ``snapshot_interval_s`` after this one), None when none was done. Raises
        :class:`Fenced`.
        """
        flight = self._in_flight
        if flight is None or not (block or flight.future.done()):
            return None
        self._in_flight = None
        try:
            done = flight.future.result()
        except PublishFailed as exc:
            self.published_learned = flight.learned_before
            self.learning.replaced |= flight.replaced
            self._publish_failed(exc)
            return False
        if self._failed_in_row:
            log.warning("snapshots publish again, after %d failed attempts", self._failed_in_row)
            self._failed_in_row = 0
        m = self.metrics
        m.snapshots_published.inc()
        m.snapshot_bytes.set(flight.size)
        m.snapshot_latency.observe(done - flight.started)
        m.model_version.set(flight.header.version)
        log.info(
            "published %s v%d: %d learned, %d bytes",
            flight.header.model,
            flight.header.version,
            flight.header.learned_count,
            flight.size,
        )
        return True

    def _publish_failed(self, exc: PublishFailed) -> None:
        self.metrics.snapshot_publish_failures.inc()
        self._failed_in_row += 1
        # One line per run of failures (a broker outage fails every attempt), not per attempt.
        log_at = logging.WARNING if self._failed_in_row == 1 else logging.DEBUG
        log.log(log_at, "%s; retrying", exc)

    def close(self, timeout_s: float) -> None:
        """Close every client, all within ``timeout_s``."""
        deadline = Deadline(timeout_s)
        self._sender.shutdown(wait=True)
        deadline.start()
        if self._feed is not None:
            self._feed.close(deadline.left())
        if self.inputs is not None:
            self.inputs.close(deadline.left())
        self.publisher.close(deadline.left())
