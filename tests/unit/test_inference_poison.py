"""The inference loop over in-memory clients: a record that makes the model raise anything, or
whose output Kafka keeps refusing, is dead-lettered and the batch goes on."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from river import linear_model

import riverflow.consumers.inference.worker as inference
from riverflow.consumers.inference.refusals import MAX_ATTEMPTS
from riverflow.metrics import InferenceMetrics
from riverflow.schemas import now_ms, reading_value
from riverflow.settings import Settings
from riverflow.transport import TopicPartition
from tests.fakes import FakeClients, FakeKafka, FakeProducer
from tests.unit.kafka_fakes import Record

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
HUGE = 9.0  # a reading whose prediction is too large for Kafka: 300 KB of class scores


class Exploding(linear_model.LogisticRegression):
    def predict_proba_one(self, x: dict[Any, Any], **kwargs: Any) -> dict[Any, float]:
        kind = x.get("kind", 0.0)
        error = RAISES.get(kind)
        if error is not None:
            raise error
        if kind == HUGE:
            return {f"class-{i:06d}-" + "x" * 300: 0.001 for i in range(1000)}
        return super().predict_proba_one(x, **kwargs)


def exploding() -> Exploding:
    return Exploding()


class LimitedClients(FakeClients):
    """Producers whose client refuses records over ``client_limit`` bytes itself."""

    def __init__(self, kafka: FakeKafka, client_limit: int | None) -> None:
        super().__init__(kafka, 500)
        self.client_limit = client_limit

    def producer(self, **options: Any) -> FakeProducer:
        if self.client_limit is not None:
            options["max_request_bytes"] = self.client_limit
        return super().producer(**options)


class Worker(inference.InferenceWorker):
    kafka: FakeKafka

    def delivered(self, topic: str) -> list[tuple[bytes | None, bytes | None, dict[str, bytes]]]:
        """(key, value, headers) of every record in ``topic`` that read_committed sees."""
        return [
            (e.message.key, e.message.value, dict(e.message.headers))  # type: ignore[arg-type]
            for e in self.kafka.log(TopicPartition(topic, 0))
            if e.message is not None and e.state == "committed"
        ]

    def metric(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)


@pytest.fixture(params=[False, True], ids=["at-least-once", "exactly-once"])
def make_worker(request: pytest.FixtureRequest) -> Iterator[Callable[..., Worker]]:
    """Started inference workers over the in-memory Kafka, in both delivery modes:
    ``client_limit`` bounds what the producer's client takes, ``broker_limit`` what the
    predictions topic takes."""
    made: list[Worker] = []

    def make(client_limit: int | None = None, broker_limit: int | None = None) -> Worker:
        kafka = FakeKafka()
        clients = LimitedClients(kafka, client_limit)
        admin = clients.admin()
        limit = {} if broker_limit is None else {"max.message.bytes": str(broker_limit)}
        for topic, configs in (("r", {}), ("p", limit), ("dl", {}), ("m", {})):
            admin.create_topic(topic, 1, configs)
        settings = Settings(
            model=f"{__name__}:exploding",
            readings_topic="r",
            predictions_topic="p",
            dead_letters_topic="dl",
            models_topic="m",
            feature_drift_every=1,
            exactly_once=request.param,
        )
        worker = Worker(settings, clients, metrics=InferenceMetrics())
        worker.kafka = kafka
        made.append(worker)
        worker.start()
        worker.step(0)  # joins the group: the readings partition is the worker's
        return worker

    yield make
    for worker in made:
        worker.close()


def reading(i: int, kind: float) -> bytes:
    return reading_value(f"e{i}", "s", now_ms(), {"kind": kind})


def predicted(worker: Worker) -> list[str]:
    return [json.loads(v or b"")["event_id"] for _, v, _ in worker.delivered("p")]


def until_done(worker: Worker, batch: dict[TopicPartition, list[Record]]) -> int:
    """Process ``batch`` as re-reading it would, until it commits; returns the attempts."""
    for attempt in range(1, 11):
        if worker.process(batch):
            return attempt
    raise AssertionError("the batch never committed")


def test_a_record_whose_model_call_raises_anything_is_dead_lettered_and_the_batch_goes_on(
    make_worker: Callable[..., Worker],
) -> None:
    worker = make_worker()
    kinds = [0.0, *RAISES, 0.0]
    batch = {TP: [Record("r", 0, i, reading(i, k)) for i, k in enumerate(kinds)]}

    assert worker.process(batch) is True

    dead = worker.delivered("dl")
    assert predicted(worker) == ["e0", f"e{len(kinds) - 1}"]
    assert [v for _, v, _ in dead] == [batch[TP][i].value for i in range(1, len(kinds) - 1)]
    for (_, _, headers), error in zip(dead, RAISES.values(), strict=True):
        assert headers["riverflow-stage"] == b"predict"
        assert type(error).__name__.encode() in headers["riverflow-reason"]
        assert len(headers["riverflow-reason"]) <= 1000
    assert worker.kafka.offsets["riverflow-infer-" + worker.name] == {TP: len(kinds)}
    assert worker.metric("riverflow_invalid_events_total", reason="model_error") == len(RAISES)
    assert worker.metric("riverflow_dead_letters_total", stage="predict") == len(RAISES)
    assert worker.metric("riverflow_predictions_total") == 2


@pytest.mark.parametrize(
    "limits",
    [
        {"client_limit": 100_000},  # send() itself refuses: the record is known at once
        {"broker_limit": 100_000},  # the topic refuses: which record it was is found out
    ],
    ids=["client", "broker"],
)
def test_a_record_whose_output_kafka_keeps_refusing_is_dead_lettered_after_bounded_attempts(
    make_worker: Callable[..., Worker], limits: dict[str, int]
) -> None:
    worker = make_worker(**limits)
    kinds = [0.0] * 5 + [HUGE] + [0.0] * 5
    batch = {TP: [Record("r", 0, i, reading(i, k)) for i, k in enumerate(kinds)]}

    attempts = until_done(worker, batch)

    # MAX_ATTEMPTS refused rounds, then the one that dead-letters; the broker's refusal first
    # costs a round that only tells which records failed together (the suspects).
    assert attempts == MAX_ATTEMPTS + (1 if "client_limit" in limits else 2)
    assert sorted(set(predicted(worker))) == sorted(f"e{i}" for i in range(11) if i != 5)
    dead = worker.delivered("dl")
    assert [v for _, v, _ in dead] == [batch[TP][5].value]
    headers = dead[0][2]
    assert headers["riverflow-stage"] == b"produce"
    assert headers["riverflow-source"] == b"r/0/5"
    assert b"RecordTooLarge" in headers["riverflow-reason"]
    assert worker.metric("riverflow_dead_letters_total", stage="produce") == 1
    assert worker.metric("riverflow_invalid_events_total", reason="undeliverable") == 1
    assert not worker.refusals  # settled with the batch

    # The next batch runs as usual again: nothing is sent alone, nothing retried.
    batch = {TP: [Record("r", 0, 11 + i, reading(11 + i, 0.0)) for i in range(3)]}
    assert until_done(worker, batch) == 1


def test_a_record_whose_dead_letter_is_refused_too_gets_a_bare_one(
    make_worker: Callable[..., Worker],
) -> None:
    worker = make_worker(client_limit=1000)
    big = json.dumps(
        {"event_id": "big", "sensor_id": "s", "ts": 1, "features": {}, "pad": "x" * 2000}
    ).encode()
    batch = {TP: [Record("r", 0, 0, reading(0, 0.0)), Record("r", 0, 1, big)]}

    until_done(worker, batch)

    assert set(predicted(worker)) == {"e0"}
    dead = worker.delivered("dl")
    assert len(dead) == 1
    key, value, headers = dead[0]
    assert (key, value, headers["riverflow-truncated"]) == (None, b"", b"key,value")
    assert headers["riverflow-original-bytes"] == str(len(big)).encode()
    assert headers["riverflow-stage"] == b"produce"
