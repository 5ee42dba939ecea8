"""Hostile readings on the real broker: no record stops a partition, every dead letter fits.

A 2 MB reading reaches the readings topic compressed (the broker's limit applies to the
compressed batch), a reading with a ts of 10**400, and one whose prediction the predictions
topic refuses as too large; around them, good readings. In both delivery modes, every good
reading is predicted, each bad one is dead-lettered once with its reason, the worker stays up and
its lag reaches 0.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType

from riverflow.dead_letters import MAX_VALUE_BYTES
from riverflow.settings import Settings, kafka_kwargs
from riverflow.transport.kafka_python import kafka_admin as admin
from tests.integration.inference_support import (
    committed_total,
    event_ids,
    group,
    infer_args,
    read_all,
    reading,
    scrape,
    stop,
    value,
)
from tests.integration.kit import free_port, wait_until

pytestmark = pytest.mark.integration

PREDICTIONS_MAX_BYTES = 300_000  # the verbose model's ~420 KB prediction does not fit


def lower_max_message_bytes(settings: Settings, topic: str, limit: int) -> None:
    client = admin(settings)
    try:
        client.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": str(limit)})]
        )
    finally:
        client.close()


def produce_compressed(settings: Settings, values: list[bytes]) -> None:
    """What an attacker's client can do: gzip makes 2 MB of JSON a few KB on the wire."""
    p = KafkaProducer(
        **kafka_kwargs(settings), compression_type="gzip", max_request_size=8 * 1024 * 1024
    )
    for v in values:
        p.send(settings.readings_topic, key=b"attacker", value=v)
    p.flush()
    p.close()


def dead_letter(records: list[Any], value: bytes) -> dict[str, bytes]:
    """The headers of the one dead letter whose value starts with ``value``'s first 1000 bytes."""
    found = [dict(r.headers) for r in records if r.value == value[: len(r.value)] and r.value]
    assert len(found) == 1, f"{len(found)} dead letters for {value[:80]!r}"
    return found[0]


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_hostile_readings_are_dead_lettered_and_the_partition_goes_on(
    stack: Any, tmp_path: Path, exactly_once: bool
) -> None:
    s = stack(partitions=2, exactly_once=exactly_once)
    lower_max_message_bytes(s.settings, s.settings.predictions_topic, PREDICTIONS_MAX_BYTES)
    good = [json.dumps(reading(i)).encode() for i in range(400)]
    huge = json.dumps(reading(9001, pad="x" * 2_000_000)).encode()
    far = json.dumps(reading(9002, ts=10**400)).encode()  # issue 8: OverflowError, exit, repeat
    verbose = json.dumps(reading(9003, features={"a": 1.0, "verbose": 1.0})).encode()
    produce_compressed(s.settings, [*good[:200], huge, far, verbose, *good[200:]])
    total = len(good) + 3
    g, port = group(), free_port()
    model = "tests.integration.inference_support:verbose"
    proc = s.start(
        *infer_args(g, "--metrics-port", str(port), model=model),
        log_path=str(tmp_path / "infer.log"),
    )
    started = time.monotonic()
    try:
        page = wait_until(
            lambda: (
                m
                if committed_total(s.settings, g) == total
                and (lag := (m := scrape(port)).select("riverflow_consumer_lag"))
                and sum(v for _, v in lag) == 0
                else None
            ),
            timeout=120,
            what="every reading committed and lag 0",
        )
        took = time.monotonic() - started
        assert proc.poll() is None, "the worker died"
    finally:
        assert stop(proc) == 0

    predictions = event_ids(read_all(s.settings, s.settings.predictions_topic))
    assert set(predictions) == {json.loads(r)["event_id"] for r in good}
    if exactly_once:
        assert set(predictions.values()) == {1}

    # At-least-once re-sends a batch's dead letters with it each time it is re-read.
    letters = read_all(s.settings, s.settings.dead_letters_topic)
    by_source = {dict(r.headers)["riverflow-source"]: r for r in letters}
    assert len(by_source) == 3 and (not exactly_once or len(letters) == 3)
    assert all(k.decode().startswith(s.settings.readings_topic + "/") for k in by_source)
    dead = list(by_source.values())

    # The 2 MB reading: a prefix that fits, with the original's size and digest.
    h = dead_letter(dead, huge)
    assert (h["riverflow-stage"], h["riverflow-truncated"]) == (b"validate", b"value")
    assert h["riverflow-original-bytes"] == str(len(huge)).encode()
    assert h["riverflow-original-sha256"] == hashlib.sha256(huge).hexdigest().encode()
    assert b"max_message_bytes" in h["riverflow-reason"]
    assert [len(r.value) for r in dead if r.value == huge[: len(r.value)]] == [MAX_VALUE_BYTES]

    # The 10**400 ts: a schema refusal naming the field, the original kept whole.
    h = dead_letter(dead, far)
    assert h["riverflow-stage"] == b"validate" and h["riverflow-reason"].startswith(b"ts: ")
    assert "riverflow-truncated" not in h

    # The reading whose prediction the topic refuses: given up after bounded attempts.
    h = dead_letter(dead, verbose)
    assert h["riverflow-stage"] == b"produce"
    assert b"RecordTooLarge" in h["riverflow-reason"]  # the transport's type, either client

    assert value(page, "riverflow_dead_letters", stage="produce") == 1
    assert value(page, "riverflow_invalid_events", reason="undeliverable") == 1
    assert value(page, "riverflow_invalid_events", reason="oversize") == 1
    assert value(page, "riverflow_invalid_events", reason="schema") == 1
    assert value(page, "riverflow_invalid_events", reason="internal") == 0
    print(f"{'exactly' if exactly_once else 'at-least'}-once: {total} committed in {took:.1f} s")
