"""Prequential evaluation: the quality of served predictions and of the learner's own model.

Each :class:`Evaluator` tracks one source's metrics for a task, both since the start
(``cumulative``) and over the last ``window`` joined events (``rolling``), with River's own
metrics, so the numbers mean exactly what River's documentation says:

- classification: ``accuracy``, ``f1`` (binary F1 of ``True`` when labels are booleans, macro F1
  otherwise) and ``log_loss`` (binary log loss for boolean labels, cross-entropy otherwise);
- regression: ``mae`` and ``rmse``;
- anomaly: ``roc_auc`` of the anomaly score, a truthy label meaning "anomaly".

Like :func:`river.evaluate.progressive_val_score`, a missing prediction (``None`` or ``{}``)
updates nothing, so :func:`evaluate_one` followed by ``learn_one`` reproduces River's progressive
score.

>>> from river import linear_model
>>> model, ev = linear_model.LogisticRegression(), Evaluator("classification", window=2)
>>> for x, y in [({"a": 1.0}, True), ({"a": -1.0}, False), ({"a": 1.0}, True)]:
...     _ = evaluate_one(model, "classification", x, y, ev)
...     model.learn_one(x, y)
>>> dict(((m, w), round(v, 3)) for m, w, v in ev.values())[("accuracy", "cumulative")]
0.667
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from river import metrics, utils

CUMULATIVE = "cumulative"
ROLLING = "rolling"


def _metric_classes(task: str, y_true: Any) -> dict[str, type]:
    if task == "classification":
        binary = isinstance(y_true, bool)
        return {
            "accuracy": metrics.Accuracy,
            "f1": metrics.F1 if binary else metrics.MacroF1,
            "log_loss": metrics.LogLoss if binary else metrics.CrossEntropy,
        }
    if task == "regression":
        return {"mae": metrics.MAE, "rmse": metrics.RMSE}
    if task == "anomaly":
        return {"roc_auc": metrics.ROCAUC}
    raise ValueError(f"unknown task {task!r}")


class Evaluator:
    """Cumulative and rolling metrics of one prediction source for one task.

    The metric set is chosen at the first label (booleans make a binary problem), so an
    evaluator reports nothing until it has seen one joined event.
    """

    def __init__(self, task: str, window: int) -> None:
        _metric_classes(task, None)  # fail fast on an unknown task
        self.task = task
        self.window = window
        # name -> (cumulative, rolling); log_loss and roc_auc take scores, the rest labels.
        self._metrics: dict[str, tuple[Any, Any]] = {}

    def _build(self, y_true: Any) -> None:
        self._metrics = {
            name: (cls(), utils.Rolling(cls, window_size=self.window))
            for name, cls in _metric_classes(self.task, y_true).items()
        }

    def update(self, y_true: Any, y_pred: Any, proba: dict[Any, float] | None = None) -> None:
        """Score one event: ``y_pred`` is the label, number or anomaly score predicted and
        ``proba`` the class probabilities (classification only; needed for log_loss)."""
        if not self._metrics:
            self._build(y_true)
        if self.task == "anomaly":
            y_true = bool(y_true)
        for name, pair in self._metrics.items():
            value = proba if name == "log_loss" else y_pred
            if value is None or value == {}:
                continue
            pair[0].update(y_true, value)
            pair[1].update(y_true, value)

    def values(self) -> Iterator[tuple[str, str, float]]:
        """``(metric, window, value)`` for every metric, once at least one event was scored."""
        for name, (cumulative, rolling) in self._metrics.items():
            yield name, CUMULATIVE, float(cumulative.get())
            yield name, ROLLING, float(rolling.get())


def error(task: str, y_true: Any, y_pred: Any) -> float | None:
    """The learner's error on one event, as drift detectors consume it: 0/1 misclassification,
    absolute error for regression, and for anomaly scores the distance to the 0/1 label."""
    if y_pred is None:
        return None
    if task == "classification":
        return float(y_pred != y_true)
    if task == "anomaly":
        return abs(float(bool(y_true)) - float(y_pred))
    return abs(float(y_true) - float(y_pred))


def evaluate_one(
    model: Any, task: str, x: dict[str, float], y: Any, evaluator: Evaluator
) -> float | None:
    """The *test* half of test-then-train for a supervised model: predict ``x`` with the current
    model, score it against ``y``, and return the error (None when the model had no answer)."""
    y_pred = model.predict_one(x)
    proba = model.predict_proba_one(x) if task == "classification" else None
    evaluator.update(y, y_pred, proba)
    return error(task, y, y_pred)


def served_scores(
    task: str, y_true: Any, scores: dict[str, float] | None
) -> dict[Any, float] | None:
    """Class probabilities of a served prediction keyed by class again (the wire keys them by
    ``str(class)``); only the classes River's log losses look up need their type back."""
    if task != "classification" or not scores:
        return None
    keys: dict[str, Any] = {str(y_true): y_true}
    if isinstance(y_true, bool):
        keys.update({"True": True, "False": False})
    return {keys.get(k, k): v for k, v in scores.items()}
