"""The inference loop over the in-memory Kafka (tests/fakes.py): offsets whose commit failed are
committed when the partitions move, and a worker another process took the place of stops."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from riverflow.consumers.inference.worker import InferenceWorker
from riverflow.errors import ConfigError
from riverflow.metrics import InferenceMetrics
from riverflow.schemas import now_ms
from riverflow.settings import Settings
from riverflow.transport import TopicPartition
from riverflow.transport.errors import CommitFailed, InstanceFenced
from tests.fakes import FakeConsumer, FakeKafka

GROUP = "g"


@pytest.fixture
def kafka() -> FakeKafka:
    kafka = FakeKafka()
    admin = kafka.clients().admin()
    for topic, partitions in (("r", 2), ("p", 1), ("dl", 1), ("m", 1)):
        admin.create_topic(topic, partitions)
    return kafka


@pytest.fixture
def workers(kafka: FakeKafka) -> Iterator[list[InferenceWorker]]:
    made: list[InferenceWorker] = []
    yield made
    for worker in made:
        worker.close()


def start(
    kafka: FakeKafka, workers: list[InferenceWorker], started: bool = True, **overrides: Any
) -> InferenceWorker:
    settings = Settings(
        readings_topic="r",
        predictions_topic="p",
        dead_letters_topic="dl",
        models_topic="m",
        group_id=GROUP,
        **overrides,
    )
    worker = InferenceWorker(settings, kafka.clients(), metrics=InferenceMetrics())
    workers.append(worker)
    if started:
        worker.start()
    return worker


def produce(kafka: FakeKafka, n: int) -> None:
    producer = kafka.clients().producer()
    for i in range(n):
        reading = {"event_id": f"e{i}", "sensor_id": f"s{i}", "ts": now_ms(), "features": {}}
        producer.send("r", f"s{i}".encode(), json.dumps(reading).encode())
    assert producer.flush(1) == 0


def predictions(kafka: FakeKafka) -> list[str]:
    log = kafka.log(TopicPartition("p", 0))
    return [json.loads(e.message.value or b"")["event_id"] for e in log if e.message is not None]


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_revocation_commits_what_is_done_and_the_newcomer_repeats_nothing(
    kafka: FakeKafka, workers: list[InferenceWorker], exactly_once: bool
) -> None:
    first = start(kafka, workers, exactly_once=exactly_once)
    produce(kafka, 40)
    refused = []

    def refuse(offsets: Any, asynchronous: bool = False) -> None:
        refused.append(offsets)
        raise CommitFailed("the group is rebalancing", "REBALANCE_IN_PROGRESS")

    first.consumer.commit = refuse  # type: ignore[method-assign]
    while first.step(0):
        pass
    assert sorted(predictions(kafka)) == sorted(f"e{i}" for i in range(40))
    # At-least-once, the offsets wait in the worker; exactly-once, they went with the
    # transactions and never through the consumer.
    assert bool(refused) is not exactly_once
    assert sum(kafka.offsets.get(GROUP, {}).values()) == (0 if not exactly_once else 40)

    second = start(kafka, workers, exactly_once=exactly_once)
    second.step(0)  # joins: the group rebalances
    first.step(0)  # gives its partitions up, committing what was pending first
    second.step(0)
    assert sum(kafka.offsets[GROUP].values()) == 40
    assert second.consumer.assignment() and second.step(0) == 0  # nothing read again
    assert len(predictions(kafka)) == 40


def test_a_worker_whose_instance_id_another_process_took_stops_with_a_usage_error(
    kafka: FakeKafka, workers: list[InferenceWorker], monkeypatch: pytest.MonkeyPatch
) -> None:
    poll_batch = FakeConsumer.poll_batch

    def fenced(consumer: FakeConsumer, timeout_s: float, max_records: int | None = None) -> Any:
        if consumer.group_id is not None:  # the group member, not the models reader
            raise InstanceFenced("FENCED_INSTANCE_ID: another member took this instance id")
        return poll_batch(consumer, timeout_s, max_records)

    monkeypatch.setattr(FakeConsumer, "poll_batch", fenced)
    worker = start(kafka, workers, started=False, instance_id="worker-a")
    with pytest.raises(ConfigError, match="give each worker its own --instance-id"):
        worker.run()
    assert worker.consumer.closed and worker.delivery.producer.closed  # type: ignore[attr-defined]
