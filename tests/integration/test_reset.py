"""`riverflow reset` on the real broker: what it deletes, what it leaves, when it refuses."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from riverflow.settings import Settings, kafka_kwargs
from riverflow.transport import Admin, clients_for
from tests.integration.kit import Stack, wait_until

pytestmark = pytest.mark.integration


def commit(settings: Settings, group: str, topic: str) -> None:
    """Leave ``group`` with a committed offset on ``topic`` and no members."""
    consumer = KafkaConsumer(**kafka_kwargs(settings), group_id=group, enable_auto_commit=False)
    try:
        consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(1, "", -1)})
    finally:
        consumer.close()


def join(settings: Settings, group: str, topic: str) -> KafkaConsumer:
    """A running member of ``group`` (as a standby learner is), with no offsets committed."""
    consumer = KafkaConsumer(
        topic, **kafka_kwargs(settings), group_id=group, enable_auto_commit=False
    )
    try:
        wait_until(
            lambda: consumer.poll(timeout_ms=200) is not None and consumer.assignment(),
            60,
            f"{group} to get a partition of {topic}",
            interval=0,
        )
    except AssertionError:
        consumer.close()
        raise
    return consumer


@pytest.fixture
def client(stack: Callable[..., Stack]) -> Iterator[Admin]:
    c = clients_for(stack().settings).admin()
    yield c
    c.close()


def groups(client: Admin) -> set[str]:
    return client.list_consumer_groups()


def test_reset_deletes_riverflow_topics_and_groups_and_nothing_else(
    stack: Callable[..., Stack], client: Admin
) -> None:
    ours, theirs = stack(), stack()
    s = ours.settings
    producer = KafkaProducer(**kafka_kwargs(s))
    for topic in (s.readings_topic, theirs.settings.readings_topic):
        producer.send(topic, b"{}", partition=0)
    producer.flush()
    producer.close()
    uid = uuid.uuid4().hex[:8]
    inference, custom = f"riverflow-infer-{uid}", f"dashboards-{uid}"
    other_deployment, other_app = f"riverflow-infer-other-{uid}", f"billing-{uid}"
    commit(s, inference, s.readings_topic)
    commit(s, custom, s.predictions_topic)  # any group reading riverflow's topics goes too
    commit(s, other_deployment, theirs.settings.readings_topic)
    commit(s, other_app, theirs.settings.readings_topic)
    learner = join(s, f"riverflow-learn-{uid}", s.models_topic)

    try:
        busy = ours.run("reset", "--yes", check=False)
        assert busy.returncode == 1 and "stop riverflow's workers first" in busy.stderr
        assert f"riverflow-learn-{uid} (1 members)" in busy.stderr
    finally:
        learner.close()
    assert {inference, custom} <= groups(client)

    asked = ours.run("reset", check=False)  # stdin is not a terminal here
    assert asked.returncode == 2 and "--yes" in asked.stderr
    for name in (s.readings_topic, s.models_topic, inference, custom):
        assert name in asked.stdout  # listed before anything is deleted
    assert other_deployment not in asked.stdout and other_app not in asked.stdout
    assert s.readings_topic in client.list_topics()

    done = ours.run("reset", "--yes")
    assert "deleted 6 topics" in done.stdout
    topics = set(client.list_topics())
    ours_left = {s.readings_topic, s.feedback_topic, s.predictions_topic, s.models_topic}
    assert not ours_left & topics and s.dead_letters_topic not in topics
    assert theirs.settings.readings_topic in topics
    left = groups(client)
    assert not {inference, custom, f"riverflow-learn-{uid}"} & left
    assert {other_deployment, other_app} <= left

    again = ours.run("reset", "--yes")
    assert "nothing to reset" in again.stdout
