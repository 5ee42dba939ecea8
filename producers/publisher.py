"""The one Kafka sending loop behind ``riverflow simulate`` and ``riverflow replay``.

It paces readings on a monotonic schedule, keeps each label in a due-time queue until its
delay has passed, and guarantees that no label owed is lost:

- a bounded run (the source ends, ``--count``, ``--duration``) keeps running until every label
  is due and sent, then flushes;
- a stop (Ctrl-C, SIGTERM) or an error in the source sends the labels that are due, then sends
  the rest at once, early, with a logged count (a learner joins a label that arrives before its
  prediction as well as one that arrives after), then flushes;
- while the broker is away, records wait in the producer (the client retries them in order
  until the broker is back) and the source pauses once :data:`MAX_WAITING` records wait; a send
  that times out waiting for the broker is tried again, and so is a record that expired;
- a message Kafka refuses for good is counted and makes the command fail, and so do records
  still unconfirmed when a stop gives up on the broker after ``shutdown_timeout_s``.

With delays counted in readings (replay ``--label-delay-events``), labels still waiting when the
source ends are due at that point: no more readings will come.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from riverflow.connectivity import BrokerLink
from riverflow.errors import BrokerError, RiverflowError
from riverflow.lifecycle import Stopper
from riverflow.mapping_encode import MappedEncoder
from riverflow.producers.events import Outgoing
from riverflow.producers.pacing import DueQueue, Pacer
from riverflow.producers.progress import Progress
from riverflow.schemas import feedback_value, now_ms, reading_value
from riverflow.settings import Settings
from riverflow.topics import create_topics
from riverflow.transport import Producer
from riverflow.transport.errors import BrokerUnavailable, TransportError

log = logging.getLogger(__name__)

DelayUnit = Literal["seconds", "readings"]

# Records handed to the producer and not yet confirmed, at most: while the broker is away the
# source pauses here instead of filling memory (~200 bytes a reading: some 20 MB, over 8 minutes
# of the default 200 readings/s).
MAX_WAITING = 100_000
# A send blocks this long at most waiting for a topic's metadata (the broker away), then is
# tried again: short enough to notice a stop.
MAX_BLOCK_S = 5.0
# How often a paused source or a final flush looks again.
WAIT_SLICE_S = 0.5

Record = tuple[str, bytes, bytes]  # topic, key, value


@dataclass
class Report:
    """What a run sent. ``elapsed_s`` spans the readings only, so ``rate`` is the reading rate."""

    readings: int = 0
    labels: int = 0
    early_labels: int = 0
    failed: int = 0
    undelivered: int = 0  # never confirmed: a stop gave up on an unreachable broker
    elapsed_s: float = 0.0
    interrupted: str | None = None

    @property
    def rate(self) -> float:
        return self.readings / self.elapsed_s if self.elapsed_s > 0 else 0.0


def ensure_topics(settings: Settings) -> None:
    """Create missing topics (idempotent) so a fresh broker does not auto-create them with one
    partition; a cluster that refuses us admin rights gets a warning, not a failure."""
    try:
        for line in create_topics(settings):
            log.debug("%s", line)
    except BrokerUnavailable:
        raise
    except TransportError as exc:
        log.warning("could not check or create topics (%s); sending anyway", exc)


class Publisher:
    """Sends :class:`Outgoing` events as readings and their labels as feedback."""

    def __init__(
        self,
        settings: Settings,
        *,
        name: str,
        rate: float,
        delay_unit: DelayUnit = "seconds",
        duration_s: float | None = None,
        producer: Producer,
        stopper: Stopper | None = None,
        progress: Progress | None = None,
        clock: Callable[[], float] = time.monotonic,
        encoder: MappedEncoder | None = None,
    ) -> None:
        self.settings = settings
        self.encoder = encoder  # replay --mapping: records in the mapped shape
        self.name = name
        self.rate = rate
        self.delay_unit = delay_unit
        self.duration_s = duration_s
        self.stopper = stopper or Stopper()
        self.link = BrokerLink(settings.bootstrap_servers)
        self.link.watch(producer)
        self.producer = producer
        self.progress = progress or Progress(name)
        self.clock = clock
        self.report = Report()
        self._labels: DueQueue[Outgoing] = DueQueue()
        self._first_error: BaseException | None = None
        # Handed to the producer (this thread) and resolved (the client's delivery callbacks):
        # each counter has one writer, so their difference is what waits for Kafka.
        self._handed = 0
        self._resolved = 0
        self._resend: deque[Record] = deque()  # expired records, sent again by this thread
        self._giving_up = False

    def run(self, events: Iterable[Outgoing], note: str = "") -> Report:
        """Send everything ``events`` yields (until a stop or the duration), then every label.

        Ends with a summary line (``note`` appended); raises if Kafka refused any message.
        """
        report = self.report
        kafka_failed = False
        self.link.start()
        try:
            self._send_readings(iter(events))
            if report.interrupted is None:
                self._finish_labels()
        except TransportError as exc:
            kafka_failed = True
            raise BrokerError(f"sending to Kafka failed: {exc}") from exc
        finally:
            try:
                self._settle(kafka_failed)
            finally:
                self.link.close()
                self.progress.finish(self.summary(note))
        if report.failed:
            raise RiverflowError(
                f"Kafka refused {report.failed:,} messages (first error: {self._first_error})"
            )
        if report.undelivered:
            raise BrokerError(
                f"{report.undelivered:,} messages were not delivered: Kafka was unreachable "
                "when the stop came"
            )
        return report

    def summary(self, note: str = "") -> str:
        r = self.report
        parts = [
            f"{self.name}: sent {r.readings:,} readings and {r.labels:,} labels; "
            f"{r.rate:,.0f} readings/s over {r.elapsed_s:,.1f}s"
        ]
        if self.rate:
            parts.append(f"target {self.rate:,.0f}/s ({(r.rate / self.rate - 1) * 100:+.1f}%)")
        if r.early_labels:
            parts.append(f"{r.early_labels:,} labels sent early")
        if r.failed:
            parts.append(f"{r.failed:,} refused by Kafka")
        if r.undelivered:
            parts.append(f"{r.undelivered:,} not delivered")
        if r.interrupted:
            parts.append(f"stopped by {r.interrupted}")
        if note:
            parts.append(note)
        return ", ".join(parts)

    def _send_readings(self, source: Iterator[Outgoing]) -> None:
        report, labels = self.report, self._labels
        start = self.clock()
        pacer = Pacer(self.rate, start)
        while True:
            now = self.clock()
            self._send_labels(labels.pop_due(self._label_now(now)))
            if self.stopper.stopping:
                report.interrupted = self.stopper.reason or "stop"
                break
            if self.duration_s is not None and now - start >= self.duration_s:
                break
            wait = pacer.wait(report.readings, now)
            if wait > 0:
                self.stopper.wait(min(wait, self._until_next_label(now)))
                continue
            if self._full():
                continue
            event = next(source, None)
            if event is None:
                break
            if not self._send_reading(event):
                continue  # a stop came while the broker was away; the loop ends above
            report.readings += 1
            sent_at = self.clock()
            report.elapsed_s = sent_at - start
            if event.label is not None:
                base = sent_at if self.delay_unit == "seconds" else report.readings
                labels.push(base + event.label_delay, event)
            self.progress.update(report.readings, report.labels, len(labels))
        if pacer.rebased:
            log.warning(
                "fell behind by over a second %d times: the schedule restarted", pacer.rebased
            )

    def _finish_labels(self) -> None:
        """A bounded run: wait until every label is due, send it, then return."""
        labels = self._labels
        if self.delay_unit == "readings":
            if labels:
                log.info("the source ended: sending its last %d labels now", len(labels))
                self._send_labels(labels.drain())
            return
        while labels:
            now = self.clock()
            self._send_labels(labels.pop_due(now))
            self.progress.update(self.report.readings, self.report.labels, len(labels))
            if labels and self.stopper.wait(self._until_next_label(now)):
                self.report.interrupted = self.stopper.reason or "stop"
                return

    def _full(self) -> bool:
        """Resend expired records; True (after a short wait) while too many wait for Kafka."""
        self._send_expired()
        if self._handed - self._resolved < MAX_WAITING:
            return False
        self.stopper.wait(WAIT_SLICE_S)
        return True

    def _settle(self, kafka_failed: bool) -> None:
        """Every exit path: send the labels still owed (unless Kafka is what failed), then wait
        until Kafka has every record (up to ``shutdown_timeout_s`` once a stop came)."""
        owed = self._labels.drain()
        if owed and kafka_failed:
            log.error("%d labels were not sent: Kafka failed before they were due", len(owed))
        elif owed:
            log.warning(
                "stopping (%s): sending %d labels before their delay has passed",
                self.report.interrupted or "error",
                len(owed),
            )
            self.report.early_labels = len(owed)
            self._send_labels(owed)
        timeout_s = self.settings.shutdown_timeout_s
        give_up_at: float | None = None
        while not kafka_failed:
            self._send_expired()
            self.producer.flush(WAIT_SLICE_S)  # what still waits: the broker is away
            if not self._resend and self._handed == self._resolved:
                break
            if self.stopper.wait(0):
                give_up_at = give_up_at or self.clock() + timeout_s
                if self.clock() >= give_up_at:
                    break
        self._giving_up = True
        self.report.undelivered += self._handed - self._resolved + len(self._resend)
        if self.report.undelivered:
            log.error(
                "%d messages not delivered: Kafka did not come back within %gs of the stop",
                self.report.undelivered,
                timeout_s,
            )
        # What is left waits for a broker given up on: the stop's time is spent already.
        self.producer.close(0 if self.report.undelivered else timeout_s)

    def _label_now(self, now: float) -> float:
        return now if self.delay_unit == "seconds" else float(self.report.readings)

    def _until_next_label(self, now: float) -> float:
        due = self._labels.next_due()
        if due is None or self.delay_unit == "readings":
            return float("inf")
        return max(0.0, due - now)

    def _send_reading(self, event: Outgoing) -> bool:
        ts = now_ms() if event.ts is None else event.ts
        if self.encoder is not None:
            # A time a CSV gave as text is a reading's own format: the mapping writes epoch ms.
            when = ts if isinstance(ts, int) else now_ms()
            value = self.encoder.reading(
                event.event_id, event.sensor_id, when, event.features, event.categories
            )
        else:
            value = reading_value(event.event_id, event.sensor_id, ts, event.features)
        return self._send(self.settings.readings_topic, event.sensor_id, value)

    def _send_labels(self, due: list[Outgoing]) -> None:
        for event in due:
            assert event.label is not None  # only labelled events are scheduled
            if self.encoder is not None:
                value = self.encoder.feedback(
                    event.event_id, event.sensor_id, now_ms(), event.label
                )
            else:
                value = feedback_value(event.event_id, event.sensor_id, now_ms(), event.label)
            if self._send(self.settings.feedback_topic, event.sensor_id, value):
                self.report.labels += 1

    def _send(self, topic: str, key: str, value: bytes) -> bool:
        return self._produce((topic, key.encode(), value))

    def _produce(self, record: Record) -> bool:
        """Hand ``record`` to the producer. A send that times out (no metadata for the topic
        while the broker is away) is tried again until it goes; False if a stop came first (the
        record is counted as undelivered)."""
        topic, key, value = record
        settled = functools.partial(self._settled, record)
        while True:
            try:
                self.producer.send(topic, key, value, on_delivery=settled)
                break
            except TransportError as exc:
                if not exc.retriable:
                    raise
                if self.stopper.wait(WAIT_SLICE_S):
                    self.report.undelivered += 1
                    return False
        self._handed += 1
        return True

    def _send_expired(self) -> None:
        while self._resend:
            if not self._produce(self._resend.popleft()):
                return

    # -- on a client thread, or inside a send or flush ---------------------------------------

    def _settled(self, record: Record, exc: TransportError | None) -> None:
        if exc is None:
            self._resolved += 1
            return
        if self._giving_up:  # failed by the close after a stop: counted as undelivered
            return
        if exc.retriable:
            self._resend.append(record)  # expired in the producer: sent again, never dropped
        else:
            self.report.failed += 1
            if self._first_error is None:
                self._first_error = exc
                log.error("Kafka refused a message: %s", exc)
        self._resolved += 1
