"""What the learner does with each decoded message, without Kafka."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import pytest
from river import base

from riverflow.consumers.learner.checkpoint import Replay
from riverflow.consumers.learner.state import (
    Learning,
    LearningConfig,
    check_label,
    check_prediction,
)
from riverflow.errors import InvalidEvent
from riverflow.metrics import LearnerMetrics
from riverflow.online_model.presets import ModelSpec, resolve
from riverflow.schemas import Feedback, Prediction

TS = 1_700_000_000_000


def prediction(n: int, x: dict[str, float], served: Any = True, scores: Any = None) -> Prediction:
    return Prediction.model_validate(
        {
            "event_id": f"e{n}",
            "sensor_id": "s",
            "event_ts": TS + n,
            "predicted_ts": TS + n,
            "model": "m",
            "model_version": 0,
            "prediction": served,
            "scores": scores,
            "features": x,
        }
    )


def label(n: int, y: Any, delay_ms: int = 500) -> Feedback:
    return Feedback.model_validate(
        {"event_id": f"e{n}", "sensor_id": "s", "ts": TS + n + delay_ms, "label": y}
    )


class Letters(list[tuple[Any, InvalidEvent]]):
    def __call__(self, record: Any, exc: InvalidEvent) -> None:
        self.append((record, exc))


def learning(spec: ModelSpec, on_drift: str = "alert") -> tuple[Learning, LearnerMetrics, Letters]:
    metrics, letters = LearnerMetrics(), Letters()
    config = LearningConfig(
        ttl_ms=60_000, max_pending=1000, window=100, detector="adwin", on_drift=on_drift
    )
    return Learning(spec, config, metrics, letters), metrics, letters


def sample(metrics: LearnerMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_a_joined_pair_is_scored_served_and_learned() -> None:
    learner, metrics, _ = learning(resolve("logreg"))
    learner.add_feedback(label(1, True), "record", "f/0", 0)
    assert learner.learned == 0
    learner.add_prediction(
        prediction(1, {"a": 1.0}, True, {"True": 0.9, "False": 0.1}), "r", "p/0", 0, Replay.LIVE
    )
    assert learner.learned == 1
    learner.export()
    assert sample(metrics, "riverflow_feedback_total", outcome="joined") == 1
    assert (
        sample(
            metrics,
            "riverflow_model_metric",
            source="served",
            metric="accuracy",
            window="cumulative",
        )
        == 1.0
    )
    assert (
        sample(
            metrics, "riverflow_model_metric", source="learner", metric="log_loss", window="rolling"
        )
        > 0
    )
    assert sample(metrics, "riverflow_feedback_delay_seconds_sum") == pytest.approx(0.5)


def test_anomaly_models_learn_every_prediction_and_feedback_only_evaluates() -> None:
    learner, metrics, _ = learning(resolve("hst"))
    for n in range(30):
        learner.add_prediction(
            prediction(n, {"a": float(n % 5)}, 0.1, {"anomaly": 0.1}), None, "p/0", n, Replay.LIVE
        )
    assert learner.learned == 30  # unsupervised: no label needed
    before = learner.model
    for n in range(0, 30, 3):
        learner.add_feedback(label(n, n % 2 == 0), None, "f/0", n)
    assert learner.learned == 30 and learner.model is before
    learner.export()
    assert sample(metrics, "riverflow_feedback_total", outcome="joined") == 10
    for source in ("served", "learner"):
        assert (
            sample(
                metrics,
                "riverflow_model_metric",
                source=source,
                metric="roc_auc",
                window="cumulative",
            )
            >= 0
        )
    # a prediction re-read after a restart was learned before the snapshot: it only waits again
    learner.add_prediction(prediction(99, {"a": 1.0}), None, "p/0", 99, Replay.PENDING)
    assert learner.learned == 30


class Refuses(base.Classifier):
    def learn_one(self, x: dict[Hashable, Any], y: Any, **kwargs: Any) -> None:
        raise ValueError("no")

    def predict_proba_one(self, x: dict[Hashable, Any], **kwargs: Any) -> dict[Any, float]:
        return {True: 1.0}


def test_a_pair_the_model_refuses_goes_to_dead_letters_and_nothing_crashes() -> None:
    learner, metrics, letters = learning(ModelSpec("refuses", "classification", Refuses))
    learner.add_prediction(prediction(1, {"a": 1.0}), "pred-record", "p/0", 0, Replay.LIVE)
    learner.add_feedback(label(1, True), "feedback-record", "f/0", 0)
    assert learner.learned == 0
    assert [(r, e.reason, e.stage) for r, e in letters] == [
        ("feedback-record", "model_error", "learn")
    ]
    assert sample(metrics, "riverflow_feedback_total", outcome="invalid") == 1
    assert sample(metrics, "riverflow_feedback_total", outcome="joined") == 0


def test_regression_labels_and_numeric_predictions_must_be_numbers() -> None:
    check_label("regression", 2.5)
    check_label("classification", "cat")
    for bad in ("2.5", True):
        with pytest.raises(InvalidEvent):
            check_label("regression", bad)
    check_prediction("classification", prediction(1, {"a": 1.0}, "cat"))
    check_prediction("anomaly", prediction(1, {"a": 1.0}, 0.3))
    check_prediction("regression", prediction(1, {"a": 1.0}, None))
    for task in ("regression", "anomaly"):
        with pytest.raises(InvalidEvent):
            check_prediction(task, prediction(1, {"a": 1.0}, "high"))


def test_drift_reset_replaces_the_model_and_asks_for_a_snapshot() -> None:
    learner, metrics, _ = learning(resolve("logreg"), on_drift="reset")
    models = {id(learner.model)}
    for n in range(3000):
        x = {"a": float(n % 2)}
        y = (n % 2 == 1) if n < 1500 else (n % 2 == 0)  # the concept flips at 1500
        learner.add_prediction(prediction(n, x), None, "p/0", n, Replay.LIVE)
        learner.add_feedback(label(n, y), None, "f/0", n)
        if learner.replaced:
            models.add(id(learner.model))
            learner.replaced = False  # what publishing does
    assert sample(metrics, "riverflow_concept_drift_detections_total", detector="adwin") >= 1
    assert len(models) >= 2
    assert learner.learned == 3000  # learning counts across resets: it is the checkpoint's count
