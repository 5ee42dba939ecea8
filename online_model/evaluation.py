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

import math
from collections import deque
from collections.abc import Iterator
from typing import Any

from river import base, metrics, stats

from riverflow.online_model.tasks import TASKS, Task, final_step

CUMULATIVE = "cumulative"
# River's clamp of a probability before its logarithm (ClassificationMetric._clamp_proba).
_P_MIN, _P_MAX = 1e-15, 1 - 1e-15
ROLLING = "rolling"


class Evaluator:
    """Cumulative and rolling metrics of one prediction source for one task.

    The metric set is chosen at the first label (booleans make a binary problem), so an
    evaluator reports nothing until it has seen one joined event. Per event, the work is kept
    to one update per window: accuracy and F1 read a shared confusion matrix (River's ``cm=``
    argument), and the log loss, a mean of River's per-event loss, computes that loss once for
    both means (``utils.Rolling`` of the metric itself would compute it three times).

    The rolling metrics are River's own objects kept over a window the way ``utils.Rolling``
    keeps them (revert the oldest update, then update), with one window for all the metrics
    fed the same arguments instead of one ``utils.Rolling`` each: the same operations in the
    same order, so the same values, without a wrapper call and a window per metric.

    The binary log loss is River's ``LogLoss`` per-event loss computed inline (the same clamp
    and logarithm, so the same floats): it ran twice per joined event, three calls deep.
    """

    # Set by _build for boolean labels; a class default, so evaluators pickled before it existed
    # (snapshots of earlier versions) load and take River's own path.
    _binary_log_loss = False

    def __init__(self, task: Task, window: int) -> None:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}")
        self.task = task
        self.window = window
        # Updated with (y_true, y_pred): every metric, and the rolling ones with their window.
        self._by_label: list[Any] = []
        self._by_label_rolling: list[Any] = []
        self._labels: deque[tuple[Any, Any]] = deque()
        # The River log loss whose per-event value the two means average, and its window.
        self._loss: Any = None
        self._loss_cumulative: Any = None
        self._loss_rolling: Any = None
        self._losses: deque[float] = deque()
        self._report: list[tuple[str, str, Any]] = []  # (metric, window, object with .get())

    def _build(self, y_true: Any) -> None:
        if self.task == "classification":
            binary = isinstance(y_true, bool)
            f1 = metrics.F1 if binary else metrics.MacroF1
            cumulative, rolling = metrics.ConfusionMatrix(), metrics.ConfusionMatrix()
            self._by_label, self._by_label_rolling = [cumulative, rolling], [rolling]
            self._loss = metrics.LogLoss() if binary else metrics.CrossEntropy()
            self._binary_log_loss = binary
            self._loss_cumulative, self._loss_rolling = stats.Mean(), stats.Mean()
            self._report = [
                ("accuracy", CUMULATIVE, metrics.Accuracy(cm=cumulative)),
                ("accuracy", ROLLING, metrics.Accuracy(cm=rolling)),
                ("f1", CUMULATIVE, f1(cm=cumulative)),
                ("f1", ROLLING, f1(cm=rolling)),
                ("log_loss", CUMULATIVE, self._loss_cumulative),
                ("log_loss", ROLLING, self._loss_rolling),
            ]
            return
        classes: dict[str, type] = {"mae": metrics.MAE, "rmse": metrics.RMSE}
        if self.task == "anomaly":
            classes = {"roc_auc": metrics.ROCAUC}
        for name, cls in classes.items():
            cumulative, rolling = cls(), cls()
            self._by_label += [cumulative, rolling]
            self._by_label_rolling.append(rolling)
            self._report += [(name, CUMULATIVE, cumulative), (name, ROLLING, rolling)]

    def update(self, y_true: Any, y_pred: Any, proba: dict[Any, float] | None = None) -> None:
        """Score one event: ``y_pred`` is the label, number or anomaly score predicted and
        ``proba`` the class probabilities (classification only; needed for log_loss)."""
        if not self._report:
            self._build(y_true)
        if self.task == "anomaly":
            y_true = bool(y_true)
        if y_pred is not None:
            labels = self._labels
            if len(labels) == self.window:
                oldest = labels.popleft()
                for m in self._by_label_rolling:
                    m.revert(*oldest)
            for m in self._by_label:
                m.update(y_true, y_pred)
            labels.append((y_true, y_pred))
        if proba:
            if self._binary_log_loss:  # River's LogLoss._eval, inline
                p_true = max(min(proba.get(True, 0.0), _P_MAX), _P_MIN)
                loss = -math.log(p_true) if y_true else -math.log(1 - p_true)
            else:
                loss = self._loss._eval(y_true, proba)  # what LogLoss.update adds to its mean
            losses = self._losses
            if len(losses) == self.window:
                self._loss_rolling.revert(losses.popleft())
            self._loss_cumulative.update(loss)
            self._loss_rolling.update(loss)
            losses.append(loss)

    def values(self) -> Iterator[tuple[str, str, float]]:
        """``(metric, window, value)`` for every metric, once at least one event was scored."""
        for name, window, m in self._report:
            yield name, window, float(m.get())


def error(task: Task, y_true: Any, y_pred: Any) -> float | None:
    """The learner's error on one event, as drift detectors consume it: 0/1 misclassification,
    absolute error for regression, and for anomaly scores the distance to the 0/1 label."""
    if y_pred is None:
        return None
    if task == "classification":
        return float(y_pred != y_true)
    if task == "anomaly":
        return abs(float(bool(y_true)) - float(y_pred))
    return abs(float(y_true) - float(y_pred))


def predicts_by_argmax(model: Any) -> bool:
    """True when the classifier's ``predict_one`` is River's default, the most probable class of
    ``predict_proba_one``: one call then gives both (a pipeline predicts with its last step)."""
    return type(final_step(model)).predict_one is base.Classifier.predict_one


def evaluate_one(
    model: Any, task: Task, x: dict[str, float], y: Any, evaluator: Evaluator, argmax: bool = False
) -> float | None:
    """The *test* half of test-then-train for a supervised model: predict ``x`` with the current
    model, score it against ``y``, and return the error (None when the model had no answer).

    ``argmax`` (from :func:`predicts_by_argmax`) derives the label from the probabilities
    exactly as River's ``predict_one`` would, instead of computing them twice.
    """
    if task != "classification":
        y_pred = model.predict_one(x)
        evaluator.update(y, y_pred)
        return error(task, y, y_pred)
    proba = model.predict_proba_one(x)
    # River's default predict_one: the first most probable class, None without probabilities
    y_pred = (max(proba, key=proba.get) if proba else None) if argmax else model.predict_one(x)
    evaluator.update(y, y_pred, proba)
    return error(task, y, y_pred)


def served_scores(
    task: Task, y_true: Any, scores: dict[str, float] | None
) -> dict[Any, float] | None:
    """Class probabilities of a served prediction keyed by class again (the wire keys them by
    ``str(class)``); only the classes River's log losses look up need their type back."""
    if task != "classification" or not scores:
        return None
    if isinstance(y_true, bool):
        return {_BOOLEANS.get(k, k): v for k, v in scores.items()}
    key = str(y_true)
    return {y_true if k == key else k: v for k, v in scores.items()}


# A binary problem's wire keys, typed again (built once: served_scores runs per joined pair).
_BOOLEANS: dict[str, Any] = {"True": True, "False": False}
