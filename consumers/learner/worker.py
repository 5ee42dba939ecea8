"""``riverflow learn``: join feedback to served predictions, learn, evaluate, publish models.

One learner is *active* per model; extra processes are standbys. Every learner joins the consumer
group ``riverflow-learn-<model>`` subscribed to the one-partition models topic, and whoever holds
that partition is active (the cooperative sticky assignor keeps it where it is when standbys
come and go; a dead holder's partition moves after the session timeout, or at once to its
restart when the learner has an ``--instance-id``: static membership).

Becoming active starts a :class:`riverflow.consumers.learner.session.Session`: fence earlier
learners of the model, load the latest snapshot and resume the inputs from its checkpoint. Then,
batch by batch: decode, join, test-then-train, watch drift, and publish a snapshot every
``snapshot_every`` learned events or ``snapshot_interval_s`` seconds when the model changed, at
once after a drift reset, and on the way out (SIGTERM/SIGINT, ``--idle-exit``, revocation).

Rebalance callbacks run inside the group consumer's poll, which the loop calls between batches
only, so they always see a consistent state. The learner receives its transport's clients and
builds them in :meth:`Learner.start`; leaving its ``with`` block closes them.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import time
from types import TracebackType

from riverflow.connectivity import BrokerLink
from riverflow.consumers.inference.model_follower import trust_from
from riverflow.consumers.learner.model_publisher import Fenced
from riverflow.consumers.learner.session import Session
from riverflow.errors import BrokerError, duplicate_instance
from riverflow.health import Health
from riverflow.lifecycle import Deadline, Stopper
from riverflow.mapping import mapped_settings, mapping_of
from riverflow.metrics import LearnerMetrics, deployment_labels, serve
from riverflow.online_model.drift import DETECTORS, make_detector
from riverflow.online_model.presets import ModelSpec, resolve
from riverflow.options import add_worker_arguments, settings_from
from riverflow.settings import Settings
from riverflow.transport import (
    Clients,
    Consumer,
    Producer,
    TopicPartition,
    clients_for,
    topic_partitions,
)
from riverflow.transport.errors import InstanceFenced, TransportError

log = logging.getLogger(__name__)

DEFAULT_METRICS_PORT = 8001
# A dead active learner is noticed after the session timeout (session_timeout_s, 10 s); a standby
# then takes over in another heartbeat or two. A revoked learner publishes its final snapshot
# inside the rebalance callback, which holds up the group's heartbeats: it gets this share of
# the session timeout.
REVOKE_PUBLISH_SHARE = 1 / 3
# A standby checks for the models partition this often.
STANDBY_POLL_S = 0.5
# The active learner lets the group client run (rejoin when a standby arrives, callbacks) this
# often and this long: a poll with no timeout cannot complete a rejoin, and one that waits
# costs its whole timeout when there is nothing to fetch. 20 ms a second is 2% of the loop.
GROUP_POLL_EVERY_S = 1.0
GROUP_POLL_S = 0.02
# Net allocations between young-generation collections (see run()): the young generation
# then holds at most this many objects, a few MB.
GC_YOUNG_THRESHOLD = 50_000
# Becoming active needs the broker (fence, load, seek). While it does not answer, the learner
# waits for its clients to reconnect and then tries again this often.
ACTIVATE_RETRY_S = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_worker_arguments(parser, "learn", DEFAULT_METRICS_PORT)
    parser.add_argument(
        "--feedback-ttl",
        dest="feedback_ttl_s",
        type=float,
        metavar="S",
        help="event-time seconds a prediction waits for its label, and a label for its "
        "prediction (default 3600)",
    )
    parser.add_argument(
        "--max-pending",
        dest="max_pending",
        type=int,
        help="most entries waiting per side; the oldest is evicted first (default 100000)",
    )
    parser.add_argument(
        "--snapshot-every",
        dest="snapshot_every",
        type=int,
        metavar="N",
        help="publish a snapshot every N learned events (default 1000)",
    )
    parser.add_argument(
        "--snapshot-interval",
        dest="snapshot_interval_s",
        type=float,
        metavar="S",
        help="... or every S seconds when the model changed (default 5)",
    )
    parser.add_argument(
        "--on-drift",
        dest="on_drift",
        choices=["alert", "reset"],
        help="on concept drift: count and log (alert, default), or also start a fresh model "
        "and publish it at once (reset)",
    )
    parser.add_argument(
        "--drift-detector",
        dest="concept_drift_detector",
        choices=sorted(DETECTORS),
        help="detector on the learner's error stream (default adwin)",
    )
    parser.add_argument(
        "--rolling-window",
        dest="rolling_window",
        type=int,
        metavar="N",
        help="events in the rolling window of the quality metrics (default 1000)",
    )


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    clients = clients_for(settings)  # a client that is not installed is a usage error, found now
    spec = resolve(settings.model)
    make_detector(settings.concept_drift_detector)  # a bad name is a usage error, found now
    metrics = LearnerMetrics()
    # Signals first: once the metrics page answers, a SIGTERM is a clean stop (as in inference).
    stopper = Stopper(settings.idle_exit_s).install()
    health = Health(settings.health_stall_s, stopper, lambda: False)
    labels = deployment_labels(settings)
    serve(metrics.registry, settings.metrics_port, DEFAULT_METRICS_PORT, labels, health)
    learner = Learner(settings, clients, spec, metrics, stopper)
    health.cut_off, health.not_ready = (lambda: learner.link.connected is False), learner.not_ready
    # Everything imported so far lives as long as the process: keep it out of the collector's
    # full passes, which otherwise walk it again and again among the pending entries.
    gc.freeze()
    # Each event allocates containers (decoded messages, join entries, evaluation windows) that
    # reference counting frees: collecting every 700 net allocations (Python's default) took
    # 0.19 s of CPU per 50,000 learned events with ~30,000 entries waiting (600 young, 54
    # middle and 4 full collections), ~4% of the learner's time; at GC_YOUNG_THRESHOLD, 0.04 s.
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    learner.run()
    return 0


class Learner:
    """Membership in the learners' group, and the loop that drives the active :class:`Session`.
    It is the group consumer's rebalance listener."""

    group: Consumer
    dead_letters: Producer

    def __init__(
        self,
        settings: Settings,
        clients: Clients,
        spec: ModelSpec,
        metrics: LearnerMetrics,
        stopper: Stopper,
    ) -> None:
        # A mapping reads another shape of feedback, from the topic it names (riverflow.mapping).
        self.mapping = mapping_of(settings)
        settings = mapped_settings(settings, self.mapping)
        if self.mapping is not None:
            spec = spec.with_categories(self.mapping.readings.categorical)
        self.settings = settings
        self.clients = clients
        self.spec = spec
        self.metrics = metrics
        self.stopper = stopper
        # No key and no opt-in is a ConfigError here, before joining the group (exit 2).
        self.trust = trust_from(settings, publishes=True)
        self.session: Session | None = None
        self._models = TopicPartition(settings.models_topic, 0)
        # Set when another learner fenced this one: do not take the model back before the group
        # has rebalanced (this process may still believe it holds the models partition).
        self._await_rebalance = False
        self._activate_at = 0.0  # no activation attempt before (monotonic)
        self._activate_failures = 0
        self._holds_models = False  # as of the last standby poll (read by not_ready)
        self.link = BrokerLink(settings.bootstrap_servers, metrics.kafka_connected)
        metrics.add_lag(lambda: self.session.lag if self.session else [])
        self.group_id = settings.group_id or f"riverflow-learn-{settings.deployment_name}"
        self._closing = contextlib.ExitStack()  # what start() made, closed in reverse order
        self.deadline = Deadline(settings.shutdown_timeout_s)  # of the close, from __exit__ on

    def __enter__(self) -> Learner:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.deadline.start()
        self._closing.close()

    def start(self) -> None:
        """Make the clients and join the learners' group (as a standby until assigned)."""
        s = self.settings
        left = self.deadline.left
        self.group = self.clients.consumer(self.group_id, cooperative=True)
        self._closing.callback(lambda: self.group.close(left()))
        # Metadata first: a missing topic is a usage error, and the assignor needs the partition.
        for topic in (s.models_topic, s.models_history_topic):
            topic_partitions(self.group, topic)
        self.dead_letters = self.clients.producer()
        self._closing.callback(lambda: self.dead_letters.close(left()))
        # The dead-letters topic's metadata now, while the broker answers: a first dead letter
        # sent during an outage would otherwise block on it and fail.
        self.dead_letters.partitions_for(s.dead_letters_topic, s.bootstrap_timeout_s)
        self.group.subscribe([s.models_topic], listener=self)
        self.link.watch(self.group)
        self.link.start()
        self._closing.callback(self.link.close)
        # No final snapshot into a broker that is away: it would only time out. The next
        # active learner resumes from the last snapshot published.
        self._closing.callback(
            lambda: self._step_down(publish=self.link.connected is not False, timeout_s=left())
        )
        log.info(
            "learner for %s joined group %s; waiting to be active", s.model_name, self.group_id
        )

    def run(self) -> None:
        with self:
            try:
                self.start()
                self._loop()
            except InstanceFenced:  # raised by a poll when it rejoins the group
                raise duplicate_instance(self.settings.instance_id, self.group_id) from None

    def _loop(self) -> None:
        group_polled = 0.0
        while not self.stopper.stopping:
            # --idle-exit is for input that ran out, not for a broker that is away.
            self.stopper.saw_input(self.link.connected is False)
            if self.session is None:
                self.group.poll_batch(STANDBY_POLL_S)
                self._holds_models = self._models in self.group.assignment()
                if self._may_activate():
                    self._activate()
                continue
            if time.monotonic() - group_polled >= GROUP_POLL_EVERY_S:
                self.group.poll_batch(GROUP_POLL_S)
                group_polled = time.monotonic()
            if self.session is not None:
                self._step()

    def not_ready(self) -> str | None:
        """Why this learner is not ready, for /readyz (read by the metrics thread, from plain
        attributes): ready when connected and either active with its model loaded or a standby.
        (Under the cooperative assignor kafka-python tells a member nothing when a rebalance
        brings it no partition, so a standby is "not holding the models partition".)"""
        if self.link.connected is not True:
            return "not connected to Kafka"
        if self.session is None and self._holds_models:
            if self._activate_failures:
                return f"cannot become active yet ({self._activate_failures} attempts): retrying"
            return "becoming active: loading the model"
        return None

    def _may_activate(self) -> bool:
        return (
            not self._await_rebalance
            and self._models in self.group.assignment()
            and self.link.connected is not False
            and time.monotonic() >= self._activate_at
        )

    def _activate(self) -> None:
        # The models partition only marks who is active; its records are read by the session.
        self.group.pause([self._models])
        session = Session(
            self.settings,
            self.clients,
            self.spec,
            self.metrics,
            self.dead_letters,
            self.trust,
            self.mapping,
        )
        try:
            session.start()
        except (TransportError, BrokerError) as exc:
            self._activate_failures += 1
            self._activate_at = time.monotonic() + ACTIVATE_RETRY_S
            # One line for a run of failed attempts (the broker away), not one per attempt.
            log_at = logging.WARNING if self._activate_failures == 1 else logging.DEBUG
            log.log(log_at, "cannot become active yet (%s): retrying", exc)
            return
        self.session = session
        self._activate_failures = 0
        assert session.inputs is not None  # made by start()
        self.link.watch(session.inputs)
        self.metrics.learner_active.set(1)
        log.info("active learner for %s", self.settings.model_name)
        self.stopper.saw_input(1)  # --idle-exit counts again from activation

    def _step(self) -> None:
        session = self.session
        assert session is not None
        try:
            self.stopper.saw_input(session.batch())
            session.settle(block=False)
            if session.snapshot_due():
                session.publish(self.settings.shutdown_timeout_s)
        except Fenced as exc:
            log.warning("%s: standing by", exc)
            self._await_rebalance = True
            self._step_down(publish=False)

    def _step_down(self, publish: bool, timeout_s: float = 0.0) -> None:
        session, self.session = self.session, None
        if session is None:
            return
        self.metrics.learner_active.set(0)
        if session.inputs is not None:
            self.link.forget(session.inputs)
        try:
            session.settle(block=True)
            if publish and session.changed:
                session.publish(timeout_s)
                if session.settle(block=True) is False:
                    log.warning("final snapshot not published: its changes are learned again")
        except Fenced as exc:
            log.warning("final snapshot not published: %s", exc)
        finally:
            session.close(self.deadline.left())

    # -- rebalance callbacks (inside the group's poll, between batches) ----------------------

    def on_assigned(self, partitions: set[TopicPartition]) -> None:
        # Active or standby, it knows which: --idle-exit counts from here. Activation happens
        # in the loop, outside the callback.
        self.stopper.joined()
        self._await_rebalance = False

    def on_revoked(self, partitions: set[TopicPartition]) -> None:
        self._await_rebalance = False
        if self._models in partitions and self.session is not None:
            log.info("models partition revoked: publishing a final snapshot, standing by")
            timeout_s = self.settings.session_timeout_s * REVOKE_PUBLISH_SHARE
            self._step_down(publish=True, timeout_s=timeout_s)

    def on_lost(self, partitions: set[TopicPartition]) -> None:
        self._await_rebalance = False
        if self._models in partitions and self.session is not None:
            # Another learner may already be active: leave without writing anything.
            log.warning("membership lost (session expired?): standing by without a snapshot")
            self._step_down(publish=False)
