"""Riding out a broker outage, the logic without a broker: the connected state and its log lines,
what reaches the log from kafka-python, a Kafka error at the top of a command, and a learner
that cannot become active yet."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaConnectionError, KafkaTimeoutError
from prometheus_client import CollectorRegistry, Gauge

import riverflow.consumers.learner.worker as learner_module
from riverflow import cli
from riverflow.connectivity import DOWN_AFTER_S, BrokerLink
from riverflow.lifecycle import Stopper
from riverflow.metrics import LearnerMetrics
from riverflow.online_model.presets import resolve
from riverflow.settings import load_settings
from riverflow.transport import clients_for
from riverflow.transport.errors import Timeout
from riverflow.transport.kafka_python import KafkaPythonConsumer, KafkaPythonProducer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def link_with(live: list[bool], clock: Clock) -> tuple[BrokerLink, Gauge]:
    gauge = Gauge("connected", "test", registry=CollectorRegistry())
    link = BrokerLink("broker:9092", gauge, clock=clock)
    link.watch_probe(1, lambda: live[0])
    return link, gauge


def test_one_line_per_change_of_state_never_per_sample(caplog: pytest.LogCaptureFixture) -> None:
    live, clock = [True], Clock()
    link, gauge = link_with(live, clock)
    assert link.connected is None
    assert link.sample() is True and gauge._value.get() == 1
    live[0] = False
    clock.now += DOWN_AFTER_S / 2
    assert link.sample() is True  # a client replacing its connection is not an outage
    states = []
    for _ in range(20):  # the broker stays away: many samples, one line
        clock.now += 1
        states.append(link.sample())
    assert states == [True] + [False] * 19  # cut off once DOWN_AFTER_S have passed
    assert gauge._value.get() == 0
    live[0] = True
    clock.now += 1
    assert link.sample() is True and gauge._value.get() == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "riverflow.connectivity"]
    assert lines == [
        "Kafka unreachable at broker:9092: waiting for it, reconnecting every second or so",
        "Kafka reachable again at broker:9092 after 21.0s",
    ]


def test_a_flapping_connection_shorter_than_the_grace_changes_nothing() -> None:
    live, clock = [True], Clock()
    link, gauge = link_with(live, clock)
    link.sample()
    for i in range(10):
        live[0] = i % 2 == 1
        clock.now += DOWN_AFTER_S / 3
        assert link.sample() is True
    assert gauge._value.get() == 1


def test_no_clients_no_state_and_forgotten_clients_do_not_count() -> None:
    link = BrokerLink("broker:9092", clock=Clock())
    assert link.sample() is None
    client = object()
    link.watch_probe(id(client), lambda: True)
    assert link.sample() is True
    link.forget(client)
    assert link.sample() is True  # nothing watched: the state stays as it was


def test_the_connection_state_of_real_clients_reads_without_a_broker() -> None:
    # kafka-python keeps connections in private attributes: this fails if a release moves them.
    # api_version given: the clients do not bootstrap, so no broker is needed.
    kw: dict[str, Any] = {"bootstrap_servers": "127.0.0.1:1", "api_version": (4, 0)}
    settings = load_settings()
    consumer = KafkaPythonConsumer(KafkaConsumer(**kw), settings)
    producer = KafkaPythonProducer(KafkaProducer(**kw))
    try:
        assert consumer.connected() is False
        assert producer.connected() is False
    finally:
        consumer.close(1)
        producer.close(0)


def record(name: str, exc: BaseException | None = None) -> logging.LogRecord:
    info = (type(exc), exc, None) if exc is not None else None
    return logging.LogRecord(name, logging.ERROR, __file__, 1, "msg", (), info)


def test_kafka_pythons_broker_trouble_is_dropped_its_crashes_are_not() -> None:
    keep = cli._BrokerTroubleFilter().filter
    assert not keep(record("kafka.net.manager"))  # "Connection failed", many times a second
    assert not keep(record("kafka.net.transport", ConnectionResetError(104, "reset")))
    assert not keep(record("kafka.coordinator", KafkaConnectionError("gone")))
    assert keep(record("kafka.net.selector", RuntimeError("IO loop crashed")))
    assert keep(record("riverflow.consumers.learner.worker")) and keep(record("kafkaesque"))


def test_a_kafka_error_that_ends_a_command_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(args: Any) -> int:
        raise KafkaTimeoutError("Timeout after waiting for 10 secs.")

    monkeypatch.setattr(cli, "_topics", fail)
    assert cli.main(["topics", "create"]) == 1
    err = capsys.readouterr().err
    assert err == "riverflow: Kafka failed: KafkaTimeoutError: Timeout after waiting for 10 secs.\n"


class Inputs:
    def connected(self) -> bool:
        return True


class FakeSession:
    """Session.start() fails while the broker is away, then works."""

    away = 2

    def __init__(self, *args: Any) -> None:
        self.inputs = Inputs()

    def start(self) -> None:
        if FakeSession.away:
            FakeSession.away -= 1
            raise Timeout("models not read to its end in 10s")


class FakeGroup:
    def pause(self, partitions: Any) -> None:
        pass


def test_a_learner_that_cannot_become_active_retries_and_says_so_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="riverflow.consumers.learner.worker")
    monkeypatch.setattr(learner_module, "Session", FakeSession)
    settings = load_settings(model="logreg", model_signing_key="k" * 32)
    learner = learner_module.Learner(
        settings, clients_for(settings), resolve("logreg"), LearnerMetrics(), Stopper()
    )
    learner.group = FakeGroup()  # type: ignore[assignment]
    learner.dead_letters = object()  # type: ignore[assignment]
    for _ in range(2):
        learner._activate()
        assert learner.session is None and learner._activate_at > 0
        learner._activate_at = 0.0  # the retry is due
    learner._activate()
    assert learner.session is not None
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1  # for the run of failed attempts, not one per attempt
    assert warnings[0].startswith("cannot become active yet (models not read")
    assert "active learner for logreg" in caplog.text
