"""What a contestant of ``benchmarks/peers.py`` wrote, read back and checked.

Output topics stamp records with the broker's append time (``message.timestamp.type=
LogAppendTime``): one clock for every contestant, whatever its client or framework does with
timestamps (Quix's ``to_topic`` copies the input record's).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from kafka.admin import NewTopic

from riverflow.settings import Settings
from riverflow.transport.kafka_python import kafka_admin as admin


@dataclass
class Outputs:
    """What a run wrote: per output record, its event_id, its event's ts and its timestamp."""

    event_ids: list[str] = field(default_factory=list)
    event_ts: list[int] = field(default_factory=list)
    stamps: list[int] = field(default_factory=list)
    append_time: bool = True  # every record stamped by the broker


def create_output_topic(settings: Settings, name: str) -> None:
    client = admin(settings)
    try:
        configs = {"message.timestamp.type": "LogAppendTime"}
        client.create_topics([NewTopic(name, settings.partitions, 1, topic_configs=configs)])
    finally:
        client.close()


def read_outputs(bootstrap: str, topic: str, ts_field: str = "event_ts") -> Outputs:
    """Every record of ``topic``, from the start to its end when called."""
    from confluent_kafka import (
        OFFSET_BEGINNING,
        TIMESTAMP_LOG_APPEND_TIME,
        Consumer,
        KafkaError,
        KafkaException,
        TopicPartition,
    )

    c = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "unused", "enable.partition.eof": True}
    )
    partitions = c.list_topics(topic, timeout=10).topics[topic].partitions
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    out, pending = Outputs(), set(partitions)
    try:
        while pending:
            for m in c.consume(num_messages=10_000, timeout=5):
                if m.error():
                    if m.error().code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(m.error())
                    pending.discard(m.partition())
                    continue
                value = json.loads(m.value())
                kind, stamp = m.timestamp()
                out.event_ids.append(value["event_id"])
                out.event_ts.append(value[ts_field])
                out.stamps.append(stamp)
                out.append_time &= kind == TIMESTAMP_LOG_APPEND_TIME
        return out
    finally:
        c.close()


def check(name: str, out: Outputs, n: int, event_ids: set[str] | None = None) -> None:
    """Exactly one output per event (of ``event_ids`` when known), stamped by the broker."""
    distinct = set(out.event_ids)
    missing = len(event_ids - distinct) if event_ids is not None else n - len(distinct)
    if len(out.event_ids) != n or len(distinct) != n or missing:
        raise SystemExit(
            f"{name}: {len(out.event_ids)} outputs, {len(distinct)} distinct, "
            f"{missing} events without an output, of {n} events"
        )
    if not out.append_time:
        raise SystemExit(f"{name}: the output topic does not keep the broker's append time")


def rate(out: Outputs) -> float:
    """Outputs per second, from the first output's timestamp to the last's."""
    return len(out.stamps) / ((max(out.stamps) - min(out.stamps)) / 1000)
