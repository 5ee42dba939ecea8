from __future__ import annotations

from typing import Any

import pytest
from kafka.admin import ConfigResource, ConfigResourceType

from riverflow.transport.kafka_python import kafka_admin as admin
from tests.integration.kit import wait_until

pytestmark = pytest.mark.integration


def test_topics_have_partitions_and_configs(stack: Any) -> None:
    s = stack(partitions=4)
    client = admin(s.settings)
    try:
        names = [
            s.settings.readings_topic,
            s.settings.feedback_topic,
            s.settings.predictions_topic,
            s.settings.dead_letters_topic,
            s.settings.models_topic,
            s.settings.models_history_topic,
        ]
        expected = {
            **{n: 4 for n in names[:4]},
            s.settings.models_topic: 1,
            s.settings.models_history_topic: 1,
        }

        def described() -> dict[str, int]:
            return {t["name"]: len(t["partitions"]) for t in client.describe_topics(names)}

        # A loaded broker may describe a topic before its partitions have leaders.
        wait_until(lambda: described() == expected, 30, "topics with their partitions")
        for topic in (s.settings.models_topic, s.settings.models_history_topic):
            configs = client.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic)]
            )["topic"][topic]
            assert configs["cleanup.policy"]["value"] == "compact"
            assert int(configs["max.message.bytes"]["value"]) >= 16 * 1024 * 1024
    finally:
        client.close()


def test_topics_create_is_idempotent_and_reports_differences(stack: Any) -> None:
    s = stack(partitions=2)
    again = s.run("topics", "create", "--partitions", "2")
    assert again.stdout.count("exists") == 6 and "differs" not in again.stdout
    other = s.run("topics", "create", "--partitions", "5")
    assert "left unchanged but differs: partitions 2" in other.stdout
    # nothing was changed
    assert "differs" not in s.run("topics", "create", "--partitions", "2").stdout
