"""How each task turns a model and a reading into what inference serves."""

from __future__ import annotations

from typing import Any

Prediction = tuple[Any, dict[str, float] | None]


def predict(model: Any, task: str, x: dict[str, float]) -> Prediction:
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
