"""The topics riverflow uses, and their idempotent creation."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from riverflow import dead_letters
from riverflow.settings import Settings
from riverflow.transport import Admin, clients_for
from riverflow.transport.errors import TopicExists

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
    snapshots = {
        "cleanup.policy": "compact",
        "max.message.bytes": str(MODELS_MAX_MESSAGE_BYTES),
        # Compact soon so a restarting worker reads few stale snapshots.
        "min.cleanable.dirty.ratio": "0.1",
        "segment.ms": "600000",
    }
    return [
        TopicSpec(settings.readings_topic, n),
        TopicSpec(settings.feedback_topic, n),
        TopicSpec(settings.predictions_topic, n),
        TopicSpec(settings.models_topic, 1, snapshots),
        # The last model_history versions per model: publishers tombstone older ones.
        TopicSpec(settings.models_history_topic, 1, snapshots),
        # Set, not left to the broker's message.max.bytes: every dead letter is built to fit it.
        TopicSpec(
            settings.dead_letters_topic,
            n,
            {"max.message.bytes": str(dead_letters.MAX_RECORD_BYTES)},
        ),
    ]


def create_topics(
    settings: Settings, partitions: int | None = None, admin: Admin | None = None
) -> list[str]:
    """Create every topic that is missing; report (never change) existing ones that differ.
    Uses ``admin`` when given, else one of the configured transport's, closed after.

    Returns one human line per topic.
    """
    specs = topic_specs(settings, partitions)
    client = admin or clients_for(settings).admin()
    report: list[str] = []
    try:
        existing = client.list_topics()
        for spec in [s for s in specs if s.name not in existing]:
            try:
                client.create_topic(spec.name, spec.partitions, spec.configs)
                report.append(f"created  {spec.name} ({spec.partitions} partitions)")
            except TopicExists:  # another process won the race
                existing.add(spec.name)
        present = [s.name for s in specs if s.name in existing]
        if present:
            counts = client.describe_topics(present)
            configs = client.describe_configs(present)
            for spec in specs:
                if spec.name in existing:
                    report.append(_compare(spec, counts.get(spec.name), configs.get(spec.name, {})))
    finally:
        if admin is None:
            client.close()
    return report


def _compare(spec: TopicSpec, have: int | None, configs: dict[str, str]) -> str:
    diffs = []
    if have is not None and have != spec.partitions:
        diffs.append(f"partitions {have} (riverflow would use {spec.partitions})")
    for key, want in spec.configs.items():
        if key in configs and configs[key] != want:
            diffs.append(f"{key}={configs[key]} (riverflow would use {want})")
    if diffs:
        return f"exists   {spec.name}, left unchanged but differs: " + "; ".join(diffs)
    return f"exists   {spec.name} ({have} partitions)"
