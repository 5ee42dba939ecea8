from __future__ import annotations

from typing import Any

import pytest
from kafka.partitioner import DefaultPartitioner

from riverflow.clients import KeyHashPartitioner


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
