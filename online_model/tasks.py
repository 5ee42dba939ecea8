"""What a model does (its :data:`Task`), and how each task turns a reading into what is served.

>>> from river import compose, linear_model, preprocessing
>>> task_of(compose.Pipeline(preprocessing.StandardScaler(), linear_model.LinearRegression()))
'regression'
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from river import base, compose

from riverflow.errors import ConfigError

Task = Literal["classification", "regression", "anomaly"]
TASKS: tuple[Task, ...] = get_args(Task)

Prediction = tuple[Any, dict[str, float] | None]


def final_step(model: Any) -> Any:
    """The estimator that answers for ``model``: a pipeline's last step, else the model."""
    return list(model.steps.values())[-1] if isinstance(model, compose.Pipeline) else model


def task_of(model: Any) -> Task:
    """The task of a River estimator (a pipeline's task is its last step's)."""
    final = final_step(model)
    if isinstance(final, base.AnomalyDetector):
        return "anomaly"
    if isinstance(final, base.Classifier):
        return "classification"
    if isinstance(final, base.Regressor):
        return "regression"
    raise ConfigError(
        f"{type(final).__name__} is not a River classifier, regressor or anomaly detector"
    )


def predict(model: Any, task: Task, x: dict[str, float]) -> Prediction:
    """Return ``(prediction, scores)`` for one reading.

    Classification: the most likely class, and each class's probability keyed by ``str(class)``
    (JSON keys are strings); ``predict_one`` when the model has no probabilities yet.
    Regression: the predicted number, no scores. Anomaly: the anomaly score, also as
    ``scores["anomaly"]``.
    """
    if task == "classification":
        proba = model.predict_proba_one(x)
        if not proba:
            return model.predict_one(x), None
        best = max(proba, key=proba.__getitem__)
        return best, {str(k): float(v) for k, v in proba.items()}
    if task == "regression":
        y = model.predict_one(x)
        return (None if y is None else float(y)), None
    score = float(model.score_one(x))
    return score, {"anomaly": score}
