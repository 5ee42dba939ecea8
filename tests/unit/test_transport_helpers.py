"""The kafka-python key partitioner, the seam's partition and lag helpers, the metrics port,
confluent's statistics."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kafka import errors as ke
from kafka.partitioner import DefaultPartitioner

from riverflow.settings import Settings
from riverflow.transport import TopicPartition, lag_samples, topic_partitions
from riverflow.transport.confluent import ConfluentConsumer, _Links, _View
from riverflow.transport.errors import BrokerUnavailable, InstanceFenced, TransportError
from riverflow.transport.kafka_python import KafkaPythonConsumer, KeyHashPartitioner


class Cluster:
    """The two ClusterMetadata calls a partitioner makes."""

    def __init__(self, partitions: dict[str, set[int]]) -> None:
        self.parts = partitions

    def topics(self) -> set[str]:
        return set(self.parts)

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.parts.get(topic)

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.parts.get(topic, set())


@pytest.mark.parametrize("n", [1, 3, 6, 7])
def test_same_partitions_as_kafkas_default(n: int) -> None:
    cluster: Any = Cluster({"t": set(range(n))})
    ours, default = KeyHashPartitioner(), DefaultPartitioner()
    for i in range(500):
        key = f"sensor-{i}".encode()
        for _ in range(2):  # the second call is served from the cache
            got = ours.partition("t", None, key, None, None, cluster)
            assert got == default.partition("t", None, key, None, None, cluster)


def test_cache_is_bounded_and_unknown_topics_refused() -> None:
    cluster: Any = Cluster({"t": {0, 1, 2}})
    p = KeyHashPartitioner()
    p.MAX_KEYS = 10
    for i in range(25):
        p.partition("t", None, str(i).encode(), None, None, cluster)
    assert len(p._hashes) <= 10
    with pytest.raises(ValueError):
        p.partition("nope", None, b"k", None, None, cluster)
    assert p.partition("t", None, None, None, None, cluster) in {0, 1, 2}


def test_topic_partitions_in_order_and_missing_topic_is_a_usage_error() -> None:
    from riverflow.errors import ConfigError

    cluster: Any = Cluster({"t": {2, 0, 1}})
    assert topic_partitions(cluster, "t") == [TopicPartition("t", p) for p in (0, 1, 2)]
    with pytest.raises(ConfigError, match="riverflow topics create"):
        topic_partitions(cluster, "missing")


def test_lag_samples_skip_unknown_ends_and_positions() -> None:
    ends = {TopicPartition("t", 0): 10, TopicPartition("t", 1): None, TopicPartition("t", 2): 5}

    class Consumer:
        def highwater(self, tp: TopicPartition) -> int | None:
            return ends[tp]

    positions = {TopicPartition("t", 0): 4, TopicPartition("t", 1): 3, TopicPartition("t", 2): None}
    assert lag_samples(Consumer(), positions) == [(["t", "0"], 6.0)]  # type: ignore[arg-type]


def test_a_taken_metrics_port_is_a_usage_error() -> None:
    import socket

    from prometheus_client import CollectorRegistry

    from riverflow.errors import ConfigError
    from riverflow.metrics import serve

    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match="--metrics-port"):
            serve(CollectorRegistry(), None, port)
    serve(CollectorRegistry(), 0, port)  # 0: metrics off, nothing is bound


def test_confluent_statistics_give_positions_only_where_nothing_was_returned_or_fetched() -> None:
    def partition(state: str, next_offset: int, app_offset: int, queued: int) -> dict[str, Any]:
        return dict(
            fetch_state=state, next_offset=next_offset, app_offset=app_offset, fetchq_cnt=queued
        )

    links = _Links()
    report = {
        "type": "consumer",
        "ts": 1,
        "brokers": {"b1": {"state": "UP"}},
        "topics": {
            "t": {
                "partitions": {
                    "0": partition("active", 10, -1001, 0),  # empty or caught up: starts at 10
                    "1": partition("active", 7, 7, 0),  # returned records: the client knows
                    "2": partition("active", 9, -1001, 3),  # fetched, not returned: unknown
                    "3": partition("offset-wait", 0, -1001, 0),  # start not known yet
                    "-1": partition("none", -1001, -1001, 0),  # librdkafka's unassigned queue
                }
            }
        },
    }
    links.on_stats(json.dumps(report))
    assert links.up and links.starts == {TopicPartition("t", 0): 10}


def test_confluent_clients_answer_with_the_newest_statistics_of_any_of_them() -> None:
    # A consumer unpolled while its owner waits in a flush keeps its last report: the
    # producer's newer one (the broker gone) is the answer for both.
    view = _View()
    consumer, producer = _Links(view), _Links(view)
    assert consumer.up and producer.up  # nothing reported yet

    def report(links: _Links, at_us: int, state: str) -> None:
        links.on_stats(json.dumps({"type": "x", "ts": at_us, "brokers": {"b": {"state": state}}}))

    report(consumer, 1_000, "UP")
    report(producer, 2_000, "DOWN")
    assert not consumer.up and not producer.up
    report(consumer, 3_000, "UP")  # polled again, the broker back
    assert consumer.up and producer.up
    report(producer, 4_000, "DOWN")
    producer.close()  # a closed client's last word does not count
    assert consumer.up


def test_a_confluent_synchronous_commit_is_refused_at_once_while_no_broker_is_known() -> None:
    # librdkafka's synchronous commit would wait for the broker's return, deaf to a stop.
    class Client:
        commits: list[Any] = []

        def commit(self, **kwargs: Any) -> None:
            self.commits.append(kwargs)

    links = _Links()
    links.on_stats(json.dumps({"type": "consumer", "ts": 1, "brokers": {"b": {"state": "DOWN"}}}))
    client = Client()
    consumer = ConfluentConsumer(client, Settings(), "g", links)  # type: ignore[arg-type]
    with pytest.raises(BrokerUnavailable):
        consumer.commit({TopicPartition("t", 0): 5})
    consumer.commit({TopicPartition("t", 0): 5}, asynchronous=True)  # queued, not waited for
    assert [c["asynchronous"] for c in client.commits] == [True]


def test_a_kafka_python_poll_that_meets_no_broker_found_nothing() -> None:
    # kafka-python's poll raises what its metadata refresh met while the broker is away.
    class Client:
        def __init__(self, error: Exception) -> None:
            self.error = error

        def poll(self, **kwargs: Any) -> dict[Any, Any]:
            raise self.error

    away = KafkaPythonConsumer(Client(ke.KafkaConnectionError("111 ECONNREFUSED")), Settings())  # type: ignore[arg-type]
    assert away.poll_batch(0.01) == {}
    fenced = KafkaPythonConsumer(Client(ke.FencedInstanceIdError()), Settings())  # type: ignore[arg-type]
    with pytest.raises(InstanceFenced):
        fenced.poll_batch(0.01)
    # Other errors, retriable ones too, are the caller's: hidden, they could stall it for good.
    other = KafkaPythonConsumer(Client(ke.UnknownTopicOrPartitionError()), Settings())  # type: ignore[arg-type]
    with pytest.raises(TransportError):
        other.poll_batch(0.01)
