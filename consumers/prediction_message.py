"""The value inference writes to the predictions topic, built for the hot path.

:class:`riverflow.schemas.Prediction` is the contract. Validating a model instance per reading
would only re-check what is already valid, so the value is a plain dict serialised by
pydantic-core's Rust encoder (``to_json``): ~1.5 us against ~8 us for ``json.dumps`` of the
same dict, whose float formatting dominates (docs/PERFORMANCE.md). It writes NaN and infinity
as bare constants, which are not JSON, so the model's outputs are checked here; the features
were checked by the decoder.

>>> from riverflow.schemas import Reading
>>> r = Reading(event_id="e1", sensor_id="s1", ts=1000, features={"x": 1.0})
>>> prediction_value(r, "logreg", 3, True, {"False": 0.2, "True": 0.8}, 1005)
b'{"event_id":"e1","sensor_id":"s1","event_ts":1000,"predicted_ts":1005,"model":"logreg",\
"model_version":3,"prediction":true,"scores":{"False":0.2,"True":0.8},"features":{"x":1.0}}'
"""

from __future__ import annotations

import math
from typing import Any

from pydantic_core import to_json

from riverflow.schemas import Label, Reading

_PLAIN = (bool, int, float, str, type(None))


def json_label(value: Any) -> Label | None:
    """A model's output as a JSON scalar: numpy scalars become Python numbers, other class
    objects their ``str``, so any River estimator's classes can be served."""
    if isinstance(value, _PLAIN):
        return value
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        plain = item()
        if isinstance(plain, _PLAIN):
            return plain
    return str(value)


def prediction_value(
    reading: Reading,
    model: str,
    version: int,
    prediction: Any,
    scores: dict[str, float] | None,
    predicted_ts: int,
) -> bytes:
    """The JSON bytes of one prediction; raises ``ValueError`` for NaN or infinite outputs."""
    label = json_label(prediction)
    if isinstance(label, float) and not math.isfinite(label):
        raise ValueError(f"prediction {label} is not a finite number")
    if scores is not None and not all(map(math.isfinite, scores.values())):
        raise ValueError(f"scores {scores} are not all finite numbers")
    return to_json(
        {
            "event_id": reading.event_id,
            "sensor_id": reading.sensor_id,
            "event_ts": reading.ts,
            "predicted_ts": predicted_ts,
            "model": model,
            "model_version": version,
            "prediction": label,
            "scores": scores,
            "features": reading.features,
        }
    )
