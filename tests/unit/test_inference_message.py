"""Prediction values: the DESIGN contract, built without pydantic on the hot path."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from riverflow.consumers.inference.worker import every_nth
from riverflow.schemas import Decoder, Reading, prediction_value, wire_label

READING = Reading(event_id="e-1", sensor_id="s-7", ts=1_000, features={"a": 1, "b": -2.5})


def test_value_matches_the_prediction_contract() -> None:
    raw = prediction_value(READING, "logreg", 4, True, {"False": 0.25, "True": 0.75}, 1_012)
    decoded = Decoder(8, 4096, 60).prediction(raw)
    assert decoded.model_dump() == {
        "event_id": "e-1",
        "sensor_id": "s-7",
        "event_ts": 1_000,
        "predicted_ts": 1_012,
        "model": "logreg",
        "model_version": 4,
        "prediction": True,
        "scores": {"False": 0.25, "True": 0.75},
        "features": {"a": 1.0, "b": -2.5},
        "categories": None,
        "source": None,
    }


def test_a_mapped_reading_adds_its_categories_and_source() -> None:
    source = {"key": "pump-7", "topic": "telemetry", "partition": 1, "offset": 42}
    extra = {"categories": {"status": "running"}, "source": source}
    raw = prediction_value(READING, "logreg", 4, False, None, 1_012, extra)
    decoded = Decoder(8, 4096, 60).prediction(raw)
    assert decoded.categories == {"status": "running"} and decoded.source == source
    assert decoded.x == {"a": 1.0, "b": -2.5, "status": "running"}


def test_regression_value_has_null_scores_and_compact_json() -> None:
    raw = prediction_value(READING, "linreg", 0, 3.5, None, 1_001)
    assert b" " not in raw
    assert json.loads(raw)["scores"] is None and json.loads(raw)["prediction"] == 3.5


@pytest.mark.parametrize(
    ("prediction", "scores"),
    [
        (float("nan"), None),
        (float("inf"), None),
        (np.float64("nan"), None),
        (1, {"anomaly": float("-inf")}),
        ("a", {"a": float("nan"), "b": 0.5}),
    ],
)
def test_non_finite_outputs_raise_value_error(prediction: Any, scores: Any) -> None:
    with pytest.raises(ValueError, match="finite"):
        prediction_value(READING, "m", 1, prediction, scores, 1)


@pytest.mark.parametrize(
    ("label", "plain"),
    [
        (np.bool_(True), True),
        (np.int64(3), 3),
        (np.float32(0.5), 0.5),
        ("cat", "cat"),
        (None, None),
        (("tuple", 1), "('tuple', 1)"),
        ({"a": 1}, "{'a': 1}"),
        (np.float64(2.5), 2.5),
        (float("-inf"), None),
    ],
)
def test_labels_become_json_scalars(label: Any, plain: Any) -> None:
    out = wire_label(label)
    assert out == plain and type(out) is type(plain)


@pytest.mark.parametrize("every", [1, 3, 10])
def test_drift_sample_is_even_across_batches(every: int) -> None:
    stream = list(range(95))
    batches = [stream[0:7], stream[7:8], [], stream[8:40], stream[40:95]]
    phase, sampled = 0, []
    for batch in batches:
        picked, phase = every_nth(batch, phase, every)
        sampled += picked
    assert sampled == stream[::every]
