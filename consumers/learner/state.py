"""The learner's state and what it does with each decoded message; Kafka stays in learner.py.

One :class:`Learning` holds the model, the join store, the served and learner evaluators and
the concept drift monitor. For every joined (prediction, feedback) pair it scores the served
prediction, then tests and trains the current model (test-then-train). Anomaly models learn
without labels from every new prediction; feedback only evaluates them.

Counting (``feedback_total{outcome}``):

- ``joined``: a pair that was learned (supervised) or evaluated (anomaly);
- ``expired``: feedback that gave up waiting for its prediction: past the ttl, already older
  than the ttl on arrival, or evicted by the memory bound;
- ``duplicate``: a prediction or a feedback whose ``event_id`` already waits or joined;
- ``invalid``: a prediction or feedback that could not be decoded, or whose pair the model
  refused to learn (the feedback then goes to dead letters with stage ``learn``).

Predictions that never get a label are normal (not every reading is labelled), so they are not
feedback: ``unlabelled_predictions_total{reason=expired|evicted}`` counts them instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from riverflow.consumers.learner.checkpoint import Replay
from riverflow.consumers.learner.join_store import Entry, Join, MemoryJoinStore, Outcome, Side
from riverflow.errors import InvalidEvent, describe, internal
from riverflow.metrics import HistogramBatch, LearnerMetrics
from riverflow.online_model.drift import ConceptDriftMonitor
from riverflow.online_model.evaluation import (
    Evaluator,
    error,
    evaluate_one,
    predicts_by_argmax,
    served_scores,
)
from riverflow.online_model.presets import ModelSpec
from riverflow.online_model.tasks import Task
from riverflow.schemas import Feedback, Prediction

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Served:
    prediction: Prediction
    score: float | None = None  # anomaly: the learner's own score, taken before learning x


@dataclass(slots=True)
class Labelled:
    feedback: Feedback
    record: Any  # the Kafka record, for a dead letter if the model refuses the pair


@dataclass(frozen=True)
class LearningConfig:
    ttl_ms: int
    max_pending: int
    window: int
    detector: str
    on_drift: str  # "alert" | "reset"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_label(task: Task, label: Any) -> None:
    """Refuse labels the task cannot use (InvalidEvent, stage validate)."""
    if task == "regression" and not _number(label):
        raise InvalidEvent("schema", f"label {label!r}: a regression label must be a number")


def check_prediction(task: Task, prediction: Prediction) -> None:
    """Refuse served predictions the task's metrics cannot score (InvalidEvent, stage validate):
    regression and anomaly serve numbers."""
    served = prediction.prediction
    if task != "classification" and served is not None and not _number(served):
        raise InvalidEvent("schema", f"prediction {served!r}: a {task} prediction is a number")


class MessageSizes:
    """Mean raw size of the messages of each side of the join, for the memory estimate
    (``pending_bytes``): cheap per message, unlike measuring each decoded entry."""

    def __init__(self) -> None:
        self._count = dict.fromkeys(Side, 0)
        self._bytes = dict.fromkeys(Side, 0)

    def add(self, side: Side, record: Any) -> None:
        value = getattr(record, "value", None)
        if value is not None:
            self._count[side] += 1
            self._bytes[side] += len(value)

    def mean(self, side: Side) -> float:
        n = self._count[side]
        return self._bytes[side] / n if n else 0.0


class Learning:
    def __init__(
        self,
        spec: ModelSpec,
        config: LearningConfig,
        metrics: LearnerMetrics,
        dead_letter: Callable[[Any, InvalidEvent], None],
        model: Any = None,
        learned: int = 0,
        watermark: int = 0,
        evaluation: dict[str, Any] | None = None,
        version: int = 0,
    ) -> None:
        self.spec = spec
        self.task = spec.task
        self.config = config
        self.metrics = metrics
        self.dead_letter = dead_letter
        self.model = spec.build() if model is None else model
        self._argmax = self.task == "classification" and predicts_by_argmax(self.model)
        self.learned = learned
        # The version last published: a joined prediction served by an older one shows how far
        # the served model trails the learner.
        self.version = version
        # True once a drift replaced the model: the learner publishes it at once.
        self.replaced = False
        self.store = MemoryJoinStore(config.ttl_ms, config.max_pending, watermark)
        self.served = Evaluator(self.task, config.window)
        self.evaluator = Evaluator(self.task, config.window)
        self.drift = ConceptDriftMonitor(config.detector)
        if evaluation is not None:
            self._resume_evaluation(evaluation)
        feedback = metrics.feedback
        self._joined, self._expired = feedback.labels("joined"), feedback.labels("expired")
        self._duplicate, self._invalid = feedback.labels("duplicate"), feedback.labels("invalid")
        self._detections = metrics.concept_drift_detections.labels(config.detector)
        # A successor's counter starts where its predecessor's lineage was, not at zero.
        counted = metrics.registry.get_sample_value(
            "riverflow_concept_drift_detections_total", {"detector": config.detector}
        )
        self._detections.inc(max(0, self.drift.detections - (counted or 0)))
        self._version_lag = HistogramBatch(metrics.served_version_lag)
        self._sizes = MessageSizes()
        # Per-pair observations and counts are kept here and added to their metrics once per
        # batch by export(): observing each pair took locks and several calls per metric.
        self._delays = HistogramBatch(metrics.feedback_delay)
        self._learn_latencies = HistogramBatch(metrics.learn_latency)
        self._joined_unexported = 0
        self._learned_unexported = 0

    def add_prediction(
        self, prediction: Prediction, record: Any, source: str, offset: int, replay: Replay
    ) -> None:
        """Keep a prediction until its label comes, or join it with the label that waits.

        A ``Replay.PENDING`` prediction was learned (anomaly) before the snapshot: it only waits
        again. If an anomaly model refuses to learn it, ``record`` goes to dead letters.
        """
        self._sizes.add(Side.PREDICTION, record)
        served = Served(prediction)
        learn_now = self.task == "anomaly" and replay is Replay.LIVE
        if learn_now:
            try:
                served.score = float(self.model.score_one(prediction.x))
            except Exception as exc:  # a custom model may refuse anything; never crash on data
                self._refused(exc, record)
                return
        entry = Entry(prediction.event_id, prediction.event_ts, source, offset, served)
        result = self.store.add(Side.PREDICTION, entry)
        if result.outcome is Outcome.DUPLICATE:
            self._duplicate.inc()
            return
        if learn_now:
            self._learn(prediction.x, None, record)
        if result.outcome is Outcome.LATE:
            self.metrics.unlabelled_predictions.labels("expired").inc()
        elif result.evicted is not None:
            self.metrics.unlabelled_predictions.labels("evicted").inc()
        elif result.join is not None:
            self._on_join(result.join)

    def add_feedback(self, feedback: Feedback, record: Any, source: str, offset: int) -> None:
        """Join a label with its prediction, or keep it waiting for it. If the model refuses to
        learn the pair, ``record`` goes to dead letters."""
        self._sizes.add(Side.FEEDBACK, record)
        entry = Entry(feedback.event_id, feedback.ts, source, offset, Labelled(feedback, record))
        result = self.store.add(Side.FEEDBACK, entry)
        if result.outcome is Outcome.DUPLICATE:
            self._duplicate.inc()
        elif result.outcome is Outcome.LATE or result.evicted is not None:
            self._expired.inc()
        elif result.join is not None:
            self._on_join(result.join)

    def _on_join(self, join: Join) -> None:
        labelled: Labelled = join.feedback.value
        try:
            self._score_and_learn(join.prediction.value, labelled)
        except Exception as exc:  # our own scoring on a hostile pair: refuse it, never crash
            self._invalid.inc()
            self.dead_letter(labelled.record, internal(exc, "learn"))

    def _score_and_learn(self, served: Served, labelled: Labelled) -> None:
        prediction, y = served.prediction, labelled.feedback.label
        self.served.update(y, prediction.prediction, served_scores(self.task, y, prediction.scores))
        self._version_lag.observe(max(0, self.version - prediction.model_version))
        if self.task == "anomaly":
            self.evaluator.update(y, served.score)
            err = error(self.task, y, served.score)
        else:
            x = prediction.x
            try:
                err = evaluate_one(self.model, self.task, x, y, self.evaluator, self._argmax)
            except Exception as exc:  # a custom model may refuse anything; never crash on data
                self._refused(exc, labelled.record)
                return
            if not self._learn(x, y, labelled.record):
                return
        self._joined_unexported += 1
        delay_ms = labelled.feedback.ts - prediction.event_ts
        self._delays.observe(max(0, delay_ms) / 1e3)
        if err is not None and self.drift.update(err):
            self._on_drift(prediction.event_id)

    def _learn(self, x: dict[str, float], y: Any, record: Any) -> bool:
        start = perf_counter()
        try:
            if y is None:
                self.model.learn_one(x)
            else:
                self.model.learn_one(x, y)
        except Exception as exc:  # a custom model may refuse anything; never crash on data
            self._refused(exc, record)
            return False
        self._learn_latencies.observe(perf_counter() - start)
        self.learned += 1
        self._learned_unexported += 1
        return True

    def _refused(self, exc: Exception, record: Any) -> None:
        self._invalid.inc()
        reason = f"the model refused to learn: {describe(exc)}"
        self.dead_letter(record, InvalidEvent("model_error", reason, "learn"))

    def _on_drift(self, event_id: str) -> None:
        self._detections.inc()
        action = self.config.on_drift
        log.warning(
            "concept drift detected by %s at event %s after %d learned events (on-drift %s)",
            self.config.detector,
            event_id,
            self.learned,
            action,
        )
        if action == "reset":
            self.model = self.spec.build()  # same factory: predicts_by_argmax still holds
            self.replaced = True

    def adopt(self, model: Any) -> None:
        """Continue with ``model``, an operator's version (consumers/learner/adoption.py): the join
        state, evaluation and counts stay; the model is published at once."""
        self.model = model
        self._argmax = self.task == "classification" and predicts_by_argmax(model)
        self.replaced = True

    def evaluation(self) -> dict[str, Any]:
        """What a snapshot carries beside the model, so that a successor continues every
        quality series (cumulative and rolling, served and learner) and the concept drift
        detector exactly where this learner was."""
        return {"served": self.served, "learner": self.evaluator, "drift": self.drift}

    def _resume_evaluation(self, state: dict[str, Any]) -> None:
        served, learner, drift = state.get("served"), state.get("learner"), state.get("drift")
        if (
            isinstance(served, Evaluator)
            and isinstance(learner, Evaluator)
            and isinstance(drift, ConceptDriftMonitor)
            and served.task == learner.task == self.task
            and served.window == learner.window == self.config.window
            and drift.name == self.config.detector
        ):
            self.served, self.evaluator, self.drift = served, learner, drift
            return
        # Another window or detector was configured: the series restart, knowingly.
        log.warning(
            "the snapshot's evaluation state does not fit the settings (task %s, window %d, "
            "detector %s): quality metrics and drift detection start over",
            self.task,
            self.config.window,
            self.config.detector,
        )

    def expire(self) -> None:
        for side, _ in self.store.expire():
            if side is Side.FEEDBACK:
                self._expired.inc()
            else:
                self.metrics.unlabelled_predictions.labels("expired").inc()

    def export(self) -> None:
        """Add the batch's per-pair observations and counts to their metrics and set the gauges
        that describe the current state (once per batch)."""
        m = self.metrics
        self._delays.flush()
        self._version_lag.flush()
        self._learn_latencies.flush()
        if self._joined_unexported:
            self._joined.inc(self._joined_unexported)
            self._joined_unexported = 0
        if self._learned_unexported:
            m.learned.inc(self._learned_unexported)
            self._learned_unexported = 0
        m.pending_predictions.set(self.store.pending(Side.PREDICTION))
        m.pending_feedback.set(self.store.pending(Side.FEEDBACK))
        m.pending_bytes.set(sum(self.store.pending(side) * self._sizes.mean(side) for side in Side))
        for source, evaluator in (("served", self.served), ("learner", self.evaluator)):
            for metric, window, value in evaluator.values():
                m.model_metric.labels(source, metric, window).set(value)
