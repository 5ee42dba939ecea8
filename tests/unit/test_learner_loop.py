"""The learner's loop over the in-memory Kafka (tests/fakes.py): it becomes active, learns each
labelled event once, publishes snapshots in transactions, and stands by when another learner
fences it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from riverflow.consumers.learner.model_publisher import SnapshotPublisher
from riverflow.consumers.learner.worker import Learner
from riverflow.lifecycle import Stopper
from riverflow.metrics import LearnerMetrics
from riverflow.online_model.presets import resolve
from riverflow.online_model.snapshot import Trust, loads
from riverflow.settings import Settings
from riverflow.transport import TopicPartition
from tests.fakes import FakeClients, FakeKafka
from tests.integration.kit import wait_until
from tests.integration.learner_support import base_ts, feedback, prediction

KEY = "k" * 32
MODELS = TopicPartition("m", 0)


@pytest.fixture
def kafka() -> FakeKafka:
    kafka = FakeKafka()
    admin = kafka.clients().admin()
    for topic, partitions in (("m", 1), ("mh", 1), ("p", 2), ("f", 2), ("dl", 1)):
        admin.create_topic(topic, partitions)
    return kafka


def settings() -> Settings:
    return Settings(
        model="logreg",
        models_topic="m",
        models_history_topic="mh",
        predictions_topic="p",
        feedback_topic="f",
        dead_letters_topic="dl",
        model_signing_key=KEY,
        auto_offset_reset="earliest",
        snapshot_every=10,
    )


@pytest.fixture
def learner(kafka: FakeKafka) -> Iterator[Learner]:
    made = Learner(settings(), kafka.clients(), resolve("logreg"), LearnerMetrics(), Stopper())
    with made:
        made.start()
        yield made


def send_events(clients: FakeClients, first: int, n: int, bad: bool = False) -> None:
    producer = clients.producer()
    ts = base_ts()
    for i in range(first, first + n):
        key = f"s{i % 3}".encode()
        producer.send("p", key, prediction(f"e{i}", ts + i, {"x": float(i)}))
        producer.send("f", key, feedback(f"e{i}", ts + i, i % 2 == 0))
    if bad:
        producer.send("f", b"s0", b"not json")
    assert producer.flush(1) == 0


def become_active(learner: Learner) -> None:
    learner.group.poll_batch(0)  # the group assigns the models partition: active
    assert learner._may_activate()
    learner._activate()
    assert learner.session is not None


def run_until_published(learner: Learner, published: int) -> None:
    def done() -> bool:
        learner._step()
        return bool(learner.metrics.snapshots_published._value.get() >= published)

    wait_until(done, timeout=30, what=f"{published} snapshots published")


def committed_snapshots(kafka: FakeKafka) -> list[bytes]:
    return [
        e.message.value
        for e in kafka.log(MODELS)
        if e.message is not None and e.state == "committed" and e.message.value is not None
    ]


def test_an_active_learner_learns_each_event_once_and_publishes_in_transactions(
    kafka: FakeKafka, learner: Learner
) -> None:
    become_active(learner)
    send_events(kafka.clients(), 0, 25, bad=True)
    run_until_published(learner, 1)
    learner._step_down(publish=True, timeout_s=1)

    blobs = committed_snapshots(kafka)
    last = loads(blobs[-1], Trust(KEY.encode()))
    assert last.header.learned_count == 25 and last.header.version == len(blobs)
    # The checkpoint is the inputs' positions: a successor resumes after every event.
    assert sum(last.header.positions.values()) == 2 * 25 + 1
    dead = [e.message for e in kafka.log(TopicPartition("dl", 0)) if e.message is not None]
    assert [m.value for m in dead] == [b"not json"]
    # The snapshots were written by the model's transactional producer, whose epoch counts
    # every fence: this learner's one.
    assert kafka.epochs == {"riverflow-learn-m-logreg": 0}


def test_a_fenced_learner_stands_by_without_publishing_and_stops_cleanly(
    kafka: FakeKafka, learner: Learner
) -> None:
    become_active(learner)
    send_events(kafka.clients(), 0, 12)
    run_until_published(learner, 1)
    before = committed_snapshots(kafka)

    # Another learner of the model takes over (its session fences the transactional id).
    SnapshotPublisher(settings(), kafka.clients()).fence(1)
    send_events(kafka.clients(), 12, 12)

    def stood_by() -> bool:  # the refused snapshot is seen once its thread is done
        learner._step()
        return learner.session is None

    wait_until(stood_by, timeout=30, what="the fenced learner to stand by")
    assert learner._await_rebalance
    assert learner.metrics.learner_active._value.get() == 0
    assert not learner._may_activate()  # not before the group has rebalanced
    assert committed_snapshots(kafka) == before  # nothing of the fenced learner is visible


def test_inputs_delivered_again_by_the_client_are_not_learned_twice(kafka: FakeKafka) -> None:
    # librdkafka may move a position back on its own (a log it finds truncated after a broker
    # restart): what it delivers again is in the model already. The join store remembers
    # only the last max_pending joins: alone, it would learn the older ones again.
    small = settings().model_copy(update={"max_pending": 5})
    with Learner(small, kafka.clients(), resolve("logreg"), LearnerMetrics(), Stopper()) as learner:
        learner.start()
        become_active(learner)
        session = learner.session
        assert session is not None and session.inputs is not None
        for first in range(0, 20, 4):  # joined a few at a time: none evicted while waiting
            send_events(kafka.clients(), first, 4)
            while session.batch():
                pass
        assert session.learning.learned == 20
        for tp, position in session.positions.items():  # e12 to e19 again (e15 on remembered)
            session.inputs.seek(tp, min(position, 12))
        while session.batch():
            pass
        assert session.learning.learned == 20
