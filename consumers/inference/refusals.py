"""When Kafka keeps refusing a record's output, and what to do about it: pure logic, no Kafka.

Kafka refuses some records for their own content: too large for the topic or the producer,
invalid (:class:`~riverflow.transport.errors.RecordRejected`). Re-reading the batch sends the
same bytes again, so without a bound one record would fail its batch forever. The inference
worker keeps a :class:`Refusals` and asks it about each record of a batch that follows a
refusal:

- a **suspect** (one of several outputs that failed together: kafka-python fails every later
  record of a producer after one refusal, so which record caused it is unknown) has its outputs
  sent alone, flushed before and after, so that a refusal then is surely its own;
- a record refused :data:`MAX_ATTEMPTS` times is **given up**: the worker sends its dead letter
  (reason ``undeliverable``, stage ``produce``) instead of its output; if Kafka refuses that
  dead letter too, the next one is bare (headers only), which any topic takes.

Entries go when the batch holding their record commits, or when its partition is revoked.

>>> from types import SimpleNamespace as Record
>>> r, refusals = Record(topic="r", partition=0, offset=5), Refusals()
>>> for _ in range(MAX_ATTEMPTS):
...     refusals.refused(r, ValueError("1.2 MB prediction"))
>>> give_up = refusals.give_up(r)
>>> give_up.error.reason, give_up.error.stage, give_up.bare
('undeliverable', 'produce', False)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from riverflow.errors import InvalidEvent, describe

# A refusal for size or validity repeats for the same bytes; the retries cover a topic whose
# limit an operator is raising meanwhile, and cost one re-read of the batch each.
MAX_ATTEMPTS = 3

Coords = tuple[str, int, int]  # topic, partition, offset


def coords(record: Any) -> Coords:
    return record.topic, record.partition, record.offset


@dataclass(frozen=True)
class GiveUp:
    error: InvalidEvent
    bare: bool  # the whole dead letter was refused too: send it without key and value


class Refusals:
    """Per source record: suspected, or refused how many times and why. Used by one thread."""

    def __init__(self, max_attempts: int = MAX_ATTEMPTS) -> None:
        self.max_attempts = max_attempts
        self._suspects: set[Coords] = set()
        self._refused: dict[Coords, tuple[int, BaseException]] = {}

    def __bool__(self) -> bool:
        return bool(self._suspects or self._refused)

    def suspect(self, records: Iterable[Any]) -> None:
        self._suspects.update(coords(r) for r in records)

    def refused(self, record: Any, error: BaseException) -> None:
        """Kafka refused an output that ``record``'s own content caused (sent alone, or refused
        by the client's size check before it was sent)."""
        key = coords(record)
        attempts = self._refused.get(key, (0, error))[0] + 1
        self._refused[key] = (attempts, error)

    def alone(self, record: Any) -> bool:
        """Whether ``record``'s outputs must be sent alone."""
        key = coords(record)
        return key in self._suspects or key in self._refused

    def give_up(self, record: Any) -> GiveUp | None:
        """The dead letter to send instead of ``record``'s outputs, once it was refused enough."""
        attempts, error = self._refused.get(coords(record), (0, None))
        if error is None or attempts < self.max_attempts:
            return None
        message = f"Kafka refused this record's output {attempts} times: {describe(error)}"
        return GiveUp(
            InvalidEvent("undeliverable", message, "produce"), attempts > self.max_attempts
        )

    def settle(self, next_offsets: Mapping[Any, int]) -> None:
        """Forget records a committed batch is past (``next_offsets``: partition -> offset)."""
        done = {(tp.topic, tp.partition): offset for tp, offset in next_offsets.items()}

        def pending(key: Coords) -> bool:
            end = done.get(key[:2])
            return end is None or key[2] >= end

        self._suspects = {k for k in self._suspects if pending(k)}
        self._refused = {k: v for k, v in self._refused.items() if pending(k)}

    def forget(self, partitions: Iterable[Any]) -> None:
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self._suspects = {k for k in self._suspects if k[:2] not in gone}
        self._refused = {k: v for k, v in self._refused.items() if k[:2] not in gone}
