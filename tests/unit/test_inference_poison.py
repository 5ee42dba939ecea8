"""The inference loop over in-memory clients: a record that makes the model raise anything is
dead-lettered and the batch goes on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import TopicPartition
from river import linear_model

import consumers.inference as inference
from consumers.delivery import AtLeastOnce
from riverflow.metrics import InferenceMetrics
from riverflow.schemas import now_ms
from riverflow.settings import Settings
from tests.unit.kafka_fakes import FakeConsumer, FakeProducer, Record

TP = TopicPartition("r", 0)


class Unprintable(Exception):
    def __str__(self) -> str:
        return str(10**5000)  # str() of this exception raises ValueError


# What the model raises for a reading whose "kind" feature has this value.
RAISES: dict[float, Exception] = {
    1.0: ArithmeticError("boom"),
    2.0: KeyError("missing"),
    3.0: RecursionError("deep"),
    4.0: MemoryError(),
    5.0: Unprintable(),
    6.0: OverflowError("x" * 100_000),
}


class Exploding(linear_model.LogisticRegression):
    def predict_proba_one(self, x: dict[Any, Any], **kwargs: Any) -> dict[Any, float]:
        error = RAISES.get(x.get("kind", 0.0))
        if error is not None:
            raise error
        return super().predict_proba_one(x, **kwargs)


def exploding() -> Exploding:
    return Exploding()


class NoFeed:
    def __init__(self, settings: Settings, model_name: str) -> None:
        pass

    def poll(self) -> list[bytes]:
        return []


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[inference.InferenceWorker]:
    """An inference worker whose Kafka clients are the in-memory fakes."""
    consumer, producer = FakeConsumer(), FakeProducer()
    monkeypatch.setattr(inference, "consumer", lambda settings, group_id: consumer)
    monkeypatch.setattr(inference, "delivery_for", lambda s, c, g: AtLeastOnce(producer, c))
    monkeypatch.setattr(inference, "SnapshotFeed", NoFeed)
    settings = Settings(
        model=f"{__name__}:exploding",
        predictions_topic="p",
        dead_letters_topic="dl",
        feature_drift_every=1,
    )
    yield inference.InferenceWorker(settings, metrics=InferenceMetrics())


def reading(i: int, kind: float) -> bytes:
    return json.dumps(
        {"event_id": f"e{i}", "sensor_id": "s", "ts": now_ms(), "features": {"kind": kind}}
    ).encode()


def test_a_record_whose_model_call_raises_anything_is_dead_lettered_and_the_batch_goes_on(
    worker: inference.InferenceWorker,
) -> None:
    kinds = [0.0, *RAISES, 0.0]
    batch = {TP: [Record("r", 0, i, reading(i, k)) for i, k in enumerate(kinds)]}

    assert worker.process(batch) is True

    producer = worker.delivery.producer
    predicted = [json.loads(v)["event_id"] for t, _, v in producer.sent if t == "p"]
    dead = [
        (h, v) for (t, _, v), h in zip(producer.sent, producer.headers, strict=True) if t == "dl"
    ]
    assert predicted == ["e0", f"e{len(kinds) - 1}"]
    assert [v for _, v in dead] == [batch[TP][i].value for i in range(1, len(kinds) - 1)]
    for (headers, _), error in zip(dead, RAISES.values(), strict=True):
        h = dict(headers)
        assert h["riverflow-stage"] == b"predict"
        assert type(error).__name__.encode() in h["riverflow-reason"]
        assert len(h["riverflow-reason"]) <= 1000
    assert worker.consumer.committed == {TP: len(kinds)}
    sample = worker.metrics.registry.get_sample_value
    assert sample("riverflow_invalid_events_total", {"reason": "model_error"}) == len(RAISES)
    assert sample("riverflow_dead_letters_total", {"stage": "predict"}) == len(RAISES)
    assert sample("riverflow_predictions_total", {}) == 2
