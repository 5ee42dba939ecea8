"""The dead letter of a refused record: its bytes and why, bounded so that it always fits.

A dead letter carries the original key and value, with headers saying what was wrong and where
the record came from (DESIGN.md). The original can be larger than any record Kafka accepts (a
compressed 2 MB reading passes a 1 MiB limit): a dead letter that does not fit would fail its
batch forever. So every part is bounded, and when the original does not fit the dead letter
carries its first :data:`MAX_VALUE_BYTES`, its size and its SHA-256, and says so:

>>> from types import SimpleNamespace as Record
>>> big = Record(topic="r", partition=0, offset=7, key=b"s1", value=b"x" * 2_000_000)
>>> letter = build(big, ValueError("too big"))
>>> len(letter.value) == MAX_VALUE_BYTES, dict(letter.headers)["riverflow-truncated"]
(True, b'value')
>>> dict(letter.headers)["riverflow-original-bytes"]
b'2000000'
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from riverflow.errors import InvalidEvent

# The dead-letters topic's max.message.bytes: topics.py sets it (Kafka's default, stated so that
# it holds whatever the broker's message.max.bytes), and clients.producer() never allows less.
MAX_RECORD_BYTES = 1_048_588
# A sensor_id is at most 256 characters, 1 KiB of UTF-8: a longer key is not one of ours.
MAX_KEY_BYTES = 1024
MAX_REASON_BYTES = 1024
# Every header but the reason is a few dozen bytes; a record batch's framing is under 100.
HEADROOM_BYTES = 4096
# The most of an original value that always fits, with key and headers at their bounds.
MAX_VALUE_BYTES = MAX_RECORD_BYTES - MAX_KEY_BYTES - MAX_REASON_BYTES - HEADROOM_BYTES


@dataclass(frozen=True)
class DeadLetter:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    stage: str  # decode, validate, predict, learn or produce


def build(record: Any, error: BaseException, bare: bool = False) -> DeadLetter:
    """The dead letter of ``record``, refused with ``error`` (its stage when an InvalidEvent).

    ``bare`` leaves out key and value (size and digest stay): the last resort for a record whose
    bounded dead letter Kafka refused too.
    """
    stage = error.stage if isinstance(error, InvalidEvent) else "validate"
    reason = str(error) or type(error).__name__
    headers = [
        ("riverflow-error", type(error).__name__[:100].encode()),
        ("riverflow-reason", _cut_utf8(reason, MAX_REASON_BYTES)),
        ("riverflow-source", f"{record.topic}/{record.partition}/{record.offset}".encode()),
        ("riverflow-stage", stage.encode()),
    ]
    if isinstance(error, InvalidEvent):
        # The bounded reason (the invalid_events_total label): what a script filters on.
        headers.append(("riverflow-reason-code", error.reason.encode()))
    key, value = record.key, record.value
    truncated = []
    if key is not None and (bare or len(key) > MAX_KEY_BYTES):
        key = None if bare else key[:MAX_KEY_BYTES]
        truncated.append("key")
    if value is not None and (bare or len(value) > MAX_VALUE_BYTES):
        headers += [
            ("riverflow-original-bytes", str(len(value)).encode()),
            ("riverflow-original-sha256", hashlib.sha256(value).hexdigest().encode()),
        ]
        value = b"" if bare else value[:MAX_VALUE_BYTES]
        truncated.append("value")
    if truncated:
        headers.append(("riverflow-truncated", ",".join(truncated).encode()))
    if key is None and value is None:
        value = b""  # kafka-python sends no record without both; the reason says it was null
    return DeadLetter(key, value, headers, stage)


def _cut_utf8(text: str, limit: int) -> bytes:
    """``text`` as UTF-8 in at most ``limit`` bytes, never ending inside a character."""
    raw = text.encode("utf-8", "replace")
    return raw if len(raw) <= limit else raw[:limit].decode("utf-8", "ignore").encode()
