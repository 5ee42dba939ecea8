"""A dead letter always fits: whole when it can be, else a prefix with the original's size and
digest; every header and the key bounded."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from riverflow.dead_letters import (
    MAX_KEY_BYTES,
    MAX_REASON_BYTES,
    MAX_RECORD_BYTES,
    MAX_VALUE_BYTES,
    build,
)
from riverflow.errors import InvalidEvent
from tests.unit.kafka_fakes import Record

# What Kafka adds around one record in its own batch: 61 bytes of batch header, at most 21 of
# record framing and 5 per header.
FRAMING = 61 + 21 + 5 * 8


def size(letter: object) -> int:
    key, value, headers = letter.key, letter.value, letter.headers  # type: ignore[attr-defined]
    return len(key or b"") + len(value or b"") + sum(len(k) + len(v) for k, v in headers) + FRAMING


def test_a_value_that_fits_is_kept_whole_with_the_five_headers() -> None:
    record = Record("readings", 2, 41, b'{"event_id": 1}', key=b"s1")
    letter = build(record, InvalidEvent("schema", "event_id: not a string"))
    assert (letter.key, letter.value, letter.stage) == (b"s1", record.value, "validate")
    assert dict(letter.headers) == {
        "riverflow-error": b"InvalidEvent",
        "riverflow-reason": b"event_id: not a string",
        "riverflow-reason-code": b"schema",
        "riverflow-source": b"readings/2/41",
        "riverflow-stage": b"validate",
    }


def test_a_2_mb_value_becomes_a_prefix_with_its_size_and_digest() -> None:
    value = bytes(range(256)) * 8192  # 2 MiB
    letter = build(Record("r", 0, 7, value), InvalidEvent("oversize", "2 MiB"))
    headers = dict(letter.headers)
    assert letter.value == value[:MAX_VALUE_BYTES]
    assert headers["riverflow-truncated"] == b"value"
    assert headers["riverflow-original-bytes"] == b"2097152"
    assert headers["riverflow-original-sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert headers["riverflow-source"] == b"r/0/7"
    assert size(letter) <= MAX_RECORD_BYTES


def test_a_long_key_and_a_long_multibyte_reason_are_cut() -> None:
    letter = build(Record("r", 0, 1, b"{}", key=b"k" * 5000), ValueError("é" * 5000))
    headers = dict(letter.headers)
    assert letter.key == b"k" * MAX_KEY_BYTES
    assert headers["riverflow-truncated"] == b"key"
    assert len(headers["riverflow-reason"]) <= MAX_REASON_BYTES
    assert headers["riverflow-reason"].decode() == "é" * (MAX_REASON_BYTES // 2)
    assert headers["riverflow-stage"] == b"validate"  # what is not an InvalidEvent


def test_a_bare_dead_letter_keeps_only_headers() -> None:
    letter = build(Record("r", 0, 1, b"x" * 10, key=b"s"), ValueError("refused"), bare=True)
    headers = dict(letter.headers)
    assert (letter.key, letter.value) == (None, b"")
    assert headers["riverflow-truncated"] == b"key,value"
    assert headers["riverflow-original-bytes"] == b"10"


def test_a_tombstone_without_a_key_gets_an_empty_value() -> None:
    # kafka-python refuses to send a record with neither key nor value.
    letter = build(Record("r", 0, 1, None, key=None), InvalidEvent("schema", "tombstone"))
    assert (letter.key, letter.value) == (None, b"")
    assert "riverflow-truncated" not in dict(letter.headers)


@settings(max_examples=50, deadline=None)
@given(
    key=st.none() | st.binary(max_size=2 * MAX_KEY_BYTES),
    value_size=st.none() | st.integers(0, 3 * MAX_RECORD_BYTES),
    reason=st.text(max_size=3000),
    topic=st.text(min_size=1, max_size=249),
    bare=st.booleans(),
)
def test_every_dead_letter_fits(
    key: bytes | None, value_size: int | None, reason: str, topic: str, bare: bool
) -> None:
    value = None if value_size is None else b"v" * value_size
    letter = build(Record(topic, 2**31 - 1, 2**63 - 1, value, key=key), ValueError(reason), bare)
    assert size(letter) <= MAX_RECORD_BYTES
    assert letter.key is not None or letter.value is not None
