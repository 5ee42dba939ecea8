"""The one Kafka sending loop behind ``riverflow simulate`` and ``riverflow replay``.

It paces readings on a monotonic schedule, keeps each label in a due-time queue until its
delay has passed, and guarantees that no label owed is lost:

- a bounded run (the source ends, ``--count``, ``--duration``) keeps running until every label
  is due and sent, then flushes;
- a stop (Ctrl-C, SIGTERM) or an error in the source sends the labels that are due, then sends
  the rest at once, early, with a logged count (a learner joins a label that arrives before its
  prediction as well as one that arrives after), then flushes;
- a message Kafka refuses after its retries is counted and makes the command fail.

With delays counted in readings (replay ``--label-delay-events``), labels still waiting when the
source ends are due at that point: no more readings will come.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from kafka.errors import KafkaError

from producers.events import Outgoing
from producers.pacing import DueQueue, Pacer
from producers.progress import Progress
from riverflow.clients import producer as make_producer
from riverflow.errors import BrokerError, RiverflowError
from riverflow.lifecycle import Stopper
from riverflow.schemas import dumps, now_ms
from riverflow.settings import Settings
from riverflow.topics import create_topics

log = logging.getLogger(__name__)

DelayUnit = Literal["seconds", "readings"]


@dataclass
class Report:
    """What a run sent. ``elapsed_s`` spans the readings only, so ``rate`` is the reading rate."""

    readings: int = 0
    labels: int = 0
    early_labels: int = 0
    failed: int = 0
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
    except KafkaError as exc:
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
        stopper: Stopper | None = None,
        producer: Any = None,
        progress: Progress | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.name = name
        self.rate = rate
        self.delay_unit = delay_unit
        self.duration_s = duration_s
        self.stopper = stopper or Stopper()
        self.producer = producer if producer is not None else make_producer(settings)
        self.progress = progress or Progress(name)
        self.clock = clock
        self.report = Report()
        self._labels: DueQueue[Outgoing] = DueQueue()
        self._first_error: BaseException | None = None

    def run(self, events: Iterable[Outgoing], note: str = "") -> Report:
        """Send everything ``events`` yields (until a stop or the duration), then every label.

        Ends with a summary line (``note`` appended); raises if Kafka refused any message.
        """
        report = self.report
        kafka_failed = False
        try:
            self._send_readings(iter(events))
            if report.interrupted is None:
                self._finish_labels()
        except KafkaError as exc:
            kafka_failed = True
            raise BrokerError(f"sending to Kafka failed: {exc}") from exc
        finally:
            self._settle(kafka_failed)
            self.progress.finish(self.summary(note))
        if report.failed:
            raise RiverflowError(
                f"Kafka refused {report.failed:,} messages (first error: {self._first_error})"
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
            event = next(source, None)
            if event is None:
                break
            self._send_reading(event)
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

    def _settle(self, kafka_failed: bool) -> None:
        """Every exit path: send the labels still owed (unless Kafka is what failed), flush."""
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
        try:
            self.producer.flush()
        finally:
            self.producer.close(timeout=self.settings.shutdown_timeout_s)

    def _label_now(self, now: float) -> float:
        return now if self.delay_unit == "seconds" else float(self.report.readings)

    def _until_next_label(self, now: float) -> float:
        due = self._labels.next_due()
        if due is None or self.delay_unit == "readings":
            return float("inf")
        return max(0.0, due - now)

    def _send_reading(self, event: Outgoing) -> None:
        value = {
            "event_id": event.event_id,
            "sensor_id": event.sensor_id,
            "ts": now_ms() if event.ts is None else event.ts,
            "features": event.features,
        }
        self._send(self.settings.readings_topic, event.sensor_id, value)

    def _send_labels(self, due: list[Outgoing]) -> None:
        for event in due:
            value = {
                "event_id": event.event_id,
                "sensor_id": event.sensor_id,
                "ts": now_ms(),
                "label": event.label,
            }
            self._send(self.settings.feedback_topic, event.sensor_id, value)
        self.report.labels += len(due)

    def _send(self, topic: str, key: str, value: dict[str, Any]) -> None:
        future = self.producer.send(topic, key=key.encode(), value=dumps(value))
        future.add_errback(self._failed)

    def _failed(self, exc: BaseException) -> None:
        # Runs on kafka-python's sender thread, the only writer of `failed`.
        self.report.failed += 1
        if self._first_error is None:
            self._first_error = exc
            log.error("Kafka refused a message: %s", exc)
