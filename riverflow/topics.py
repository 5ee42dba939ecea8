"""The topics riverflow uses, and their idempotent creation."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import TopicAlreadyExistsError

from riverflow import dead_letters
from riverflow.clients import admin
from riverflow.settings import Settings

log = logging.getLogger(__name__)

# Pickled ensembles (ARF, many trees) grow to several MiB; 16 MiB leaves headroom.
MODELS_MAX_MESSAGE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


def topic_specs(settings: Settings, partitions: int | None = None) -> list[TopicSpec]:
    n = partitions or settings.partitions
    return [
        TopicSpec(settings.readings_topic, n),
        TopicSpec(settings.feedback_topic, n),
        TopicSpec(settings.predictions_topic, n),
        TopicSpec(
            settings.models_topic,
            1,
            {
                "cleanup.policy": "compact",
                "max.message.bytes": str(MODELS_MAX_MESSAGE_BYTES),
                # Compact soon so a restarting worker reads few stale snapshots.
                "min.cleanable.dirty.ratio": "0.1",
                "segment.ms": "600000",
            },
        ),
        # Set, not left to the broker's message.max.bytes: every dead letter is built to fit it.
        TopicSpec(
            settings.dead_letters_topic,
            n,
            {"max.message.bytes": str(dead_letters.MAX_RECORD_BYTES)},
        ),
    ]


def create_topics(settings: Settings, partitions: int | None = None) -> list[str]:
    """Create every topic that is missing; report (never change) existing ones that differ.

    Returns one human line per topic.
    """
    specs = topic_specs(settings, partitions)
    client = admin(settings)
    report: list[str] = []
    try:
        existing = set(client.list_topics())
        missing = [s for s in specs if s.name not in existing]
        for spec in missing:
            try:
                client.create_topics(
                    [NewTopic(spec.name, spec.partitions, 1, topic_configs=spec.configs)]
                )
                report.append(f"created  {spec.name} ({spec.partitions} partitions)")
            except TopicAlreadyExistsError:  # another process won the race
                existing.add(spec.name)
        present = [s for s in specs if s.name in existing]
        if present:
            described = {t["name"]: t for t in client.describe_topics([s.name for s in present])}
            configs = _configs(client, [s.name for s in present])
            for spec in present:
                report.append(_compare(spec, described.get(spec.name), configs.get(spec.name, {})))
    finally:
        client.close()
    return report


def _configs(client: Any, names: list[str]) -> dict[str, dict[str, str]]:
    resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
    topics = client.describe_configs(resources).get("topic", {})
    return {name: {k: e["value"] for k, e in entries.items()} for name, entries in topics.items()}


def _compare(spec: TopicSpec, described: dict[str, Any] | None, configs: dict[str, str]) -> str:
    diffs = []
    have = len(described["partitions"]) if described else None
    if have is not None and have != spec.partitions:
        diffs.append(f"partitions {have} (riverflow would use {spec.partitions})")
    for key, want in spec.configs.items():
        if key in configs and configs[key] != want:
            diffs.append(f"{key}={configs[key]} (riverflow would use {want})")
    if diffs:
        return f"exists   {spec.name}, left unchanged but differs: " + "; ".join(diffs)
    return f"exists   {spec.name} ({have} partitions)"
