"""``riverflow infer``: predict on every reading, hot-swap newer models, dead-letter bad input.

One worker per process; scale out by starting more in the same consumer group (at most one per
readings partition). Each poll batch is decoded and validated, predicted with the model current
at the batch's start, produced to the predictions topic (bad input to dead-letters), and then
its offsets are committed: after a flush (at-least-once, the default) or inside the batch's
transaction (``--exactly-once``). Models are swapped only between batches.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any, TypeVar

from riverflow.connectivity import BrokerLink
from riverflow.consumers.inference.delivery import (
    BatchFailed,
    Delivery,
    Offsets,
    RecordRefused,
    delivery_for,
)
from riverflow.consumers.inference.model_follower import ModelFollower, ServedModel, trust_from
from riverflow.consumers.inference.refusals import Refusals
from riverflow.consumers.snapshot_feed import SnapshotFeed, feed_consumer
from riverflow.errors import InvalidEvent, describe, duplicate_instance
from riverflow.extract import ReadingExtractor
from riverflow.health import Health
from riverflow.lifecycle import Deadline, Stopper
from riverflow.mapping import mapped_settings, mapping_of
from riverflow.metrics import (
    ANOMALY_OUTPUT_BUCKETS,
    DEFAULT_OUTPUT_BUCKETS,
    HistogramBatch,
    InferenceMetrics,
    OutputDistribution,
    deployment_labels,
    serve,
)
from riverflow.online_model import tasks
from riverflow.online_model.drift import FeatureDriftMonitor
from riverflow.online_model.presets import resolve
from riverflow.options import add_worker_arguments, settings_from
from riverflow.schemas import Decoder, ReadingLike, now_ms, prediction_value
from riverflow.settings import Settings
from riverflow.transport import Batch, Clients, Consumer, TopicPartition, clients_for, lag_samples
from riverflow.transport.errors import InstanceFenced, TransportError

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_METRICS_PORT = 8000
# Short enough that signals, --idle-exit and new snapshots are noticed within a quarter second
# when no readings arrive; poll returns at once when there are some.
POLL_TIMEOUT_S = 0.25
# After a failed batch (broker unreachable, transaction aborted) before re-reading it.
RETRY_BACKOFF_S = 1.0
# Lag is a dashboard number: refreshing it once a second keeps position() calls off the hot path.
LAG_REFRESH_S = 1.0


def every_nth(items: list[T], phase: int, every: int) -> tuple[list[T], int]:
    """Items ``phase, phase + every, ...`` and the phase for the next list, so that a sample
    taken batch by batch is the same as one taken over the whole stream.

    >>> every_nth([0, 1, 2, 3, 4], 1, 3)
    ([1, 4], 2)
    """
    return items[phase::every], (phase - len(items)) % every


class InferenceWorker:
    """The consume-predict-produce loop of one process. Not thread-safe: one thread drives it
    (the metrics thread only reads values the worker publishes).

    It receives its transport's ``clients`` and builds nothing at construction: :meth:`start`
    makes the clients (which needs the broker) and :meth:`close` (or leaving the ``with``
    block) closes every one of them, within ``shutdown_timeout_s``.
    """

    consumer: Consumer
    delivery: Delivery
    feed: SnapshotFeed

    def __init__(
        self,
        settings: Settings,
        clients: Clients,
        stopper: Stopper | None = None,
        metrics: InferenceMetrics | None = None,
    ) -> None:
        # A mapping reads another shape of record, from the topic it names (riverflow.mapping).
        self.mapping = mapping_of(settings)
        settings = mapped_settings(settings, self.mapping)
        spec = resolve(settings.model)
        self.mapped: ReadingExtractor | None = None
        if self.mapping is not None:
            spec = spec.with_categories(self.mapping.readings.categorical)
            self.mapped = ReadingExtractor(
                self.mapping.readings,
                settings.max_features,
                settings.max_message_bytes,
                settings.max_ts_skew_s,
            )
        self.settings = settings
        self.name = settings.model_name
        self.task = spec.task
        self.group_id = settings.group_id or f"riverflow-infer-{settings.deployment_name}"
        self.stopper = stopper or Stopper(settings.idle_exit_s)
        self.metrics = metrics or InferenceMetrics()
        self.outputs = OutputDistribution(self.metrics, self.task)
        self.decoder = Decoder.from_settings(settings)
        self.drift = FeatureDriftMonitor(
            settings.feature_drift_detector, settings.max_drift_features
        )
        self.follower = ModelFollower(
            self.name,
            self.task,
            trust_from(settings, publishes=False),
            ServedModel(spec.build(), 0, now_ms()),
        )
        self.clients = clients
        self.refusals = Refusals()
        self.link = BrokerLink(settings.bootstrap_servers, self.metrics.kafka_connected)
        self._closing = contextlib.ExitStack()  # what start() made, closed in reverse order
        self.deadline = Deadline(settings.shutdown_timeout_s)  # of the close, from close() on
        self._failed_in_row = 0  # batches that failed since the last one that went through
        self._drift_phase = 0  # index in the next batch of the next reading to sample
        self._drift_tracked: set[str] = set()
        self._lag: list[tuple[list[str], float]] = []
        self._lag_at = 0.0
        # Per-reading histograms are counted locally and added once per batch.
        self._call_latency = HistogramBatch(self.metrics.predict_latency)
        self._e2e_latency = HistogramBatch(self.metrics.end_to_end_latency)
        self.metrics.add_lag(lambda: self._lag)
        self.metrics.add_model_age(lambda: time.time() - self.follower.current.created_ts / 1000)

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> InferenceWorker:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Make the clients, load the latest snapshot of the model, join the group, say what
        runs."""
        s = self.settings
        closing = self._closing
        self.feed = SnapshotFeed(feed_consumer(self.clients), s.models_topic, self.name)
        closing.callback(lambda: self.feed.close(self.deadline.left()))
        self.consumer = self.clients.consumer(self.group_id)
        closing.callback(lambda: self.consumer.close(self.deadline.left()))
        self.delivery = delivery_for(
            s,
            self.clients,
            self.consumer,
            self.group_id,
            stop_requested=lambda: self.stopper.wait(0),
        )
        closing.callback(lambda: self.delivery.close(self.deadline.left()))
        self.link.watch(self.consumer)
        closing.callback(self.link.close)
        latest = self.feed.latest(self._refuse)
        for value in (latest, self.feed.pin):  # the lineage's newest, then a pin over it
            if value is not None:
                self._offer(value)
        self.metrics.model_version.set(self.follower.current.version)
        self.consumer.subscribe([s.readings_topic], listener=_CommitOnRevoke(self))
        self.link.start()
        log.info(
            "infer: model %s (%s) v%d, group %s, %s -> %s, models %s, dead letters %s, %s",
            self.name,
            self.task,
            self.follower.current.version,
            self.group_id,
            s.readings_topic,
            s.predictions_topic,
            s.models_topic,
            s.dead_letters_topic,
            self.delivery.name,
        )
        if self.mapping is not None:
            log.info("infer: readings mapped by %s", self.mapping.source)

    def run(self) -> None:
        """Serve batches until a signal or ``--idle-exit`` asks to stop, then close."""
        with self:
            try:
                self.start()
                while not self.stopper.stopping:
                    self.step()
            except InstanceFenced:  # raised by a poll when it rejoins the group
                raise duplicate_instance(self.settings.instance_id, self.group_id) from None

    def step(self, timeout_s: float = POLL_TIMEOUT_S) -> int:
        """Follow the models topic, then poll and process one batch; returns records read.

        While the broker is away, polls return nothing and a batch in hand waits in
        :meth:`process` for its outputs to reach Kafka: the loop resumes when the broker does.
        """
        for value in self.feed.poll():
            self._offer(value)
        batch = self.consumer.poll_batch(timeout_s)
        count = sum(len(records) for records in batch.values())
        # --idle-exit is for input that ran out, not for a broker that is away.
        self.stopper.saw_input(count or self.link.connected is False)
        if count and not self.process(batch):
            self.stopper.wait(RETRY_BACKOFF_S)
        if time.monotonic() - self._lag_at >= LAG_REFRESH_S:
            self._refresh_lag()
        return count

    def close(self) -> None:
        """Commit what is finished, then close every client, all within shutdown_timeout_s."""
        self.deadline.start()
        self._closing.close()
        log.info(
            "infer stopped (%s): model %s v%d",
            self.stopper.reason or "closed",
            self.name,
            self.follower.current.version,
        )

    # -- one batch -----------------------------------------------------------------------------

    def process(self, batch: Batch) -> bool:
        """Predict, produce and commit one poll batch. Returns False when the batch must be
        re-read (its partitions were rewound to the batch's first offsets)."""
        started = time.perf_counter()
        served = self.follower.current
        model, version, task, name = served.model, served.version, self.task, self.name
        decode = self.decoder.reading
        mapped = self.mapped
        predict = tasks.predict
        observe_call = self._call_latency.observe
        clock = time.perf_counter
        send = self.delivery.send
        topic = self.settings.predictions_topic
        now = now_ms()
        valid: list[ReadingLike] = []
        outputs: list[Any] = []
        refused: list[InvalidEvent] = []
        offsets: Offsets = {}
        refusals = self.refusals
        careful = bool(refusals)  # Kafka refused a record's output: this batch may hold it
        alone = False
        try:
            batch = self.delivery.unfinished(batch)
            if not batch:
                return True
            self.delivery.begin()
            for tp, records in batch.items():
                for record in records:
                    if careful:
                        give_up = refusals.give_up(record)
                        if give_up is not None:
                            self._dead_letter(record, give_up.error, refused, give_up.bare, True)
                            continue
                        alone = refusals.alone(record)
                    reading: ReadingLike
                    try:
                        if mapped is None:
                            reading = decode(record.value, now)
                            x, extra = reading.features, None
                        else:
                            reading = mapped.reading(record, now)
                            x, extra = reading.x, reading.extra
                    except InvalidEvent as exc:
                        self._dead_letter(record, exc, refused, alone=alone)
                        continue
                    try:
                        t0 = clock()
                        prediction, scores = predict(model, task, x)
                        observe_call(clock() - t0)
                        value = prediction_value(
                            reading,
                            name,
                            version,
                            prediction,
                            scores,
                            time.time_ns() // 1_000_000,
                            extra,
                        )
                    except Exception as exc:  # any estimator may raise on any reading
                        error = InvalidEvent(
                            "model_error", f"{name} v{version} raised {describe(exc)}", "predict"
                        )
                        self._dead_letter(record, error, refused, alone=alone)
                        continue
                    send(topic, reading.sensor_id.encode(), value, record, alone)
                    valid.append(reading)
                    outputs.append(prediction)
                offsets[tp] = records[-1].offset + 1
            produced_ms = self.delivery.commit(offsets)
        except (BatchFailed, TransportError) as exc:
            self._rewind(batch, exc)
            if isinstance(exc, InstanceFenced) or isinstance(exc.__cause__, InstanceFenced):
                # Re-reading would repeat the batch for good: the group is another's now.
                raise duplicate_instance(self.settings.instance_id, self.group_id) from exc
            return False
        if careful:
            refusals.settle(offsets)
        if self._failed_in_row:
            log.warning("batches go through again, after %d failed", self._failed_in_row)
            self._failed_in_row = 0
        self.outputs.add(outputs)
        self._record(valid, refused, produced_ms, time.perf_counter() - started)
        return True

    def _dead_letter(
        self,
        record: Any,
        error: InvalidEvent,
        refused: list[InvalidEvent],
        bare: bool = False,
        alone: bool = False,
    ) -> None:
        self.delivery.dead_letter(self.settings.dead_letters_topic, record, error, bare, alone)
        refused.append(error)

    def _rewind(self, batch: Batch, exc: Exception) -> None:
        """Abort the batch and seek back to its start; a record Kafka refused is counted, so
        that it is given up after a bounded number of attempts
        (:mod:`riverflow.consumers.inference.refusals`)."""
        self.refusals.suspect(self.delivery.abort())
        if isinstance(exc, RecordRefused):
            self.refusals.refused(exc.record, exc.error)
        owned = self.consumer.assignment()
        for tp, records in batch.items():
            if tp in owned:  # a rebalance may have given the partition away meanwhile
                self.consumer.seek(tp, records[0].offset)
        self._failed_in_row += 1
        # One line for a run of failed batches (a broker away fails each retry), not per batch.
        log_at = logging.WARNING if self._failed_in_row == 1 else logging.DEBUG
        log.log(log_at, "batch of %d partitions failed, re-reading it: %s", len(batch), exc)

    def _record(
        self, valid: list[ReadingLike], refused: list[InvalidEvent], produced_ms: int, took: float
    ) -> None:
        """Metrics and drift for a batch whose outputs are in Kafka."""
        m = self.metrics
        m.predictions.inc(len(valid))
        self._e2e_latency.observe_all([(produced_ms - r.ts) / 1000 for r in valid])
        self._e2e_latency.flush()
        self._call_latency.flush()
        self._update_drift(valid)
        if refused:
            for error in refused:
                m.invalid_events.labels(error.reason).inc()
                m.dead_letters.labels(error.stage).inc()
            log.warning(
                "dead-lettered %d of %d readings (%s)",
                len(refused),
                len(refused) + len(valid),
                ", ".join(sorted({e.reason for e in refused})),
            )
        m.batch_latency.observe(took)

    def _update_drift(self, valid: list[ReadingLike]) -> None:
        """Feed every Nth valid reading (feature_drift_every, counted across batches) to the
        feature drift monitor and publish its detections and scores."""
        m = self.metrics
        sample, self._drift_phase = every_nth(
            valid, self._drift_phase, self.settings.feature_drift_every
        )
        update = self.drift.update
        for reading in sample:
            for feature in update(reading.features):
                m.feature_drift_detections.labels(feature).inc()
        for feature, score in self.drift.scores.items():
            if feature not in self._drift_tracked:  # show 0 detections, not an absent series
                self._drift_tracked.add(feature)
                m.feature_drift_detections.labels(feature)
            m.feature_drift_score.labels(feature).set(score)

    # -- models and lag ------------------------------------------------------------------------

    def _offer(self, value: bytes | None) -> None:
        verdict = self.follower.offer(value)
        self.metrics.model_pinned.set(self.follower.pinned is not None)
        if verdict.action == "swap":
            current = self.follower.current
            self.metrics.model_swaps.inc()
            self.metrics.model_version.set(current.version)
            log.info(
                "swapped in %s v%d (learned from %d events)",
                self.name,
                current.version,
                current.learned_count,
            )
        elif verdict.action == "reject":
            self.metrics.snapshot_rejected.labels(verdict.reason).inc()
            (log.debug if verdict.repeat else log.error)(
                "refused a snapshot (%s): %s; still serving v%d",
                verdict.reason,
                verdict.message,
                self.follower.current.version,
            )
        else:
            log.debug("ignored a snapshot: %s", verdict.message)

    def _refuse(self, value: bytes) -> str | None:
        """At start, count a snapshot that would be refused (without unpickling it), so the
        worker starts from the newest one it can verify; the feed logs a summary."""
        refusal = self.follower.check(value)
        if refusal is None:
            return None
        self.metrics.snapshot_rejected.labels(refusal.reason).inc()
        return refusal.reason

    def _refresh_lag(self) -> None:
        """Cache each owned partition's lag for the scrape thread (which must not touch the
        consumer): the end offset seen by the last fetch minus the position."""
        self._lag_at = time.monotonic()
        c = self.consumer
        self._lag = lag_samples(c, {tp: c.position(tp, 0.1) for tp in c.assignment()})

    def not_ready(self) -> str | None:
        """Why this worker should get no traffic yet, for /readyz (read by the metrics thread):
        it loads its model before it joins, so joined (partitions, or none as a spare) and
        connected is ready."""
        if self.link.connected is not True:
            return "not connected to Kafka"
        if not self.stopper.has_joined:
            return "joining the consumer group: no partitions yet"
        return None

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        partitions = list(partitions)
        self.refusals.forget(partitions)
        gone = {(tp.topic, str(tp.partition)) for tp in partitions}
        self._lag = [s for s in self._lag if (s[0][0], s[0][1]) not in gone]


class _CommitOnRevoke:
    """Commits finished-but-uncommitted offsets before partitions move to another worker.

    The transport calls it while the worker thread waits inside a poll, so no batch is in
    flight here; it returns the offsets to commit and the transport commits them before giving
    the partitions away. Normally nothing is pending (each batch commits); a commit that failed
    is retried there once.
    """

    def __init__(self, worker: InferenceWorker) -> None:
        self.worker = worker

    def on_revoked(self, partitions: set[TopicPartition]) -> Offsets:
        self.worker.forget(partitions)
        return self.worker.delivery.take_pending(partitions)

    def on_lost(self, partitions: set[TopicPartition]) -> None:
        # Evicted from the group: a commit would be refused; the new owner repeats the work.
        self.worker.forget(partitions)
        self.worker.delivery.take_pending(partitions)

    def on_assigned(self, partitions: set[TopicPartition]) -> None:
        # --idle-exit counts from the first assignment, and again from each one that brings
        # partitions (something to read).
        self.worker.stopper.joined()
        self.worker.stopper.saw_input(len(partitions))
        names = ", ".join(f"{tp.topic}/{tp.partition}" for tp in sorted(partitions))
        log.info("assigned %s", names or "no partitions")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_worker_arguments(parser, "infer", DEFAULT_METRICS_PORT)
    parser.add_argument(
        "--exactly-once",
        dest="exactly_once",
        action="store_true",
        default=None,
        help="Kafka transactions: predictions and offsets commit together",
    )


def output_buckets(settings: Settings) -> tuple[float, ...]:
    if settings.output_buckets:
        return settings.output_buckets
    anomaly = resolve(settings.model).task == "anomaly"
    return ANOMALY_OUTPUT_BUCKETS if anomaly else DEFAULT_OUTPUT_BUCKETS


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    clients = clients_for(settings)  # a client that is not installed is a usage error, found now
    stopper = Stopper(settings.idle_exit_s).install()
    metrics = InferenceMetrics(output_buckets=output_buckets(settings))
    health = Health(settings.health_stall_s, stopper, lambda: False)
    labels = deployment_labels(settings)
    serve(metrics.registry, settings.metrics_port, DEFAULT_METRICS_PORT, labels, health)
    worker = InferenceWorker(settings, clients, stopper, metrics)
    health.cut_off, health.not_ready = (lambda: worker.link.connected is False), worker.not_ready
    # What is loaded by now lives as long as the process: keep it out of the collector's
    # passes, which every batch's short-lived records would otherwise trigger over it.
    gc.freeze()
    worker.run()
    return 0
