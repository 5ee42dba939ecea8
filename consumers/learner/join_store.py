"""Where predictions wait for their labels, and labels that came first wait for their predictions.

The contract (:class:`JoinStore`), which the learner relies on:

- ``add(side, entry)`` joins ``entry`` with the entry of the *other* side that waits under the
  same ``event_id`` (outcome ``joined``), or keeps it waiting (``pending``). Nothing is joined
  twice: an ``event_id`` that already waits on the same side, or that was joined within the
  last ``ttl`` of event time (and among the last ``max_pending`` joins), is a ``duplicate`` and
  is not stored.
- Waiting is bounded in event time: :meth:`JoinStore.expire` removes the entries whose ``ts`` is
  more than ``ttl`` behind the watermark (the largest ``ts`` added so far; it never goes back).
  An entry that is already that old when it arrives, and finds no partner, is ``late`` and is
  not stored.
- Waiting is bounded in memory: each side holds at most ``max_pending`` entries; adding to a
  full side evicts that side's oldest arrival, which ``add`` returns.
- :meth:`JoinStore.pending_offsets` lists, per input partition, the offsets of the entries that
  still wait. With the consumed positions, that is all a restarted learner needs to rebuild the
  store by re-adding those records: the store persists nothing itself.
- Pure and single-threaded: no Kafka, no clock (time is the entries' own ``ts``).

>>> store = MemoryJoinStore(ttl_ms=60_000, max_pending=100)
>>> store.add(Side.FEEDBACK, Entry("e1", 1_000, "feedback/0", 7, "label")).outcome
<Outcome.PENDING: 'pending'>
>>> result = store.add(Side.PREDICTION, Entry("e1", 900, "predictions/0", 3, "pred"))
>>> result.outcome, result.join.feedback.value
(<Outcome.JOINED: 'joined'>, 'label')
>>> store.add(Side.PREDICTION, Entry("e1", 900, "predictions/0", 4, "pred")).outcome
<Outcome.DUPLICATE: 'duplicate'>
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Side(StrEnum):
    PREDICTION = "prediction"
    FEEDBACK = "feedback"


class Outcome(StrEnum):
    JOINED = "joined"
    PENDING = "pending"
    DUPLICATE = "duplicate"
    LATE = "late"


@dataclass(slots=True)
class Entry:
    """One message waiting for its partner: its id, event time (epoch ms) and input position."""

    event_id: str
    ts: int
    source: Hashable  # the input partition the message came from
    offset: int
    value: Any


@dataclass(slots=True)
class Join:
    prediction: Entry
    feedback: Entry


@dataclass(frozen=True, slots=True)
class AddResult:
    outcome: Outcome
    join: Join | None = None
    evicted: Entry | None = None  # the oldest entry of a full side, dropped to make room


# The results that carry nothing but their outcome, shared (add() runs once per message).
_PENDING = AddResult(Outcome.PENDING)
_DUPLICATE = AddResult(Outcome.DUPLICATE)
_LATE = AddResult(Outcome.LATE)


class JoinStore(ABC):
    """Joins predictions and feedback by ``event_id``, bounded in event time and memory.

    See the module docstring for the full contract.
    """

    @abstractmethod
    def add(self, side: Side, entry: Entry) -> AddResult: ...

    @abstractmethod
    def expire(self) -> list[tuple[Side, Entry]]:
        """Remove and return the entries that waited longer than the ttl (event time)."""

    @abstractmethod
    def pending(self, side: Side) -> int:
        """How many entries wait on ``side``."""

    @abstractmethod
    def pending_offsets(self) -> dict[Hashable, list[int]]:
        """Sorted offsets of the waiting entries, per source partition."""

    @property
    @abstractmethod
    def watermark(self) -> int:
        """The largest event time added so far (epoch ms)."""


class MemoryJoinStore(JoinStore):
    """Two insertion-ordered dicts, one per side, plus the ids joined recently.

    Expiry walks each side from its oldest arrival and stops at the first entry still inside
    the ttl: arrivals are close to event-time order within a partition, so an entry may outstay
    the ttl only while an older arrival with a newer ``ts`` is still waiting in front of it.
    """

    def __init__(self, ttl_ms: int, max_pending: int, watermark: int = 0) -> None:
        if ttl_ms <= 0 or max_pending < 1:
            raise ValueError("ttl_ms must be > 0 and max_pending >= 1")
        self.ttl_ms = ttl_ms
        self.max_pending = max_pending
        self._watermark = watermark
        predictions: OrderedDict[str, Entry] = OrderedDict()
        feedback: OrderedDict[str, Entry] = OrderedDict()
        self._waiting = {Side.PREDICTION: predictions, Side.FEEDBACK: feedback}
        # side -> (its waiting entries, the other side's): one lookup per add().
        self._sides = {
            Side.PREDICTION: (predictions, feedback),
            Side.FEEDBACK: (feedback, predictions),
        }
        # event_id -> ts of the join, so redeliveries after the join are recognised.
        self._joined: OrderedDict[str, int] = OrderedDict()
        # source -> offsets of its waiting entries (dict as an ordered set): a checkpoint reads
        # them without walking every entry.
        self._offsets: dict[Hashable, dict[int, None]] = {}

    @property
    def watermark(self) -> int:
        return self._watermark

    def add(self, side: Side, entry: Entry) -> AddResult:
        if entry.ts > self._watermark:
            self._watermark = entry.ts
        event_id = entry.event_id
        waiting, others = self._sides[side]
        partner = others.pop(event_id, None)
        if partner is not None:
            del self._offsets[partner.source][partner.offset]
            # The join's ts, kept so that redeliveries after the join are recognised (inline:
            # once per joined pair).
            joined = self._joined
            joined[event_id] = entry.ts if entry.ts > partner.ts else partner.ts
            if len(joined) > self.max_pending:
                joined.popitem(last=False)
            if side is Side.PREDICTION:
                return AddResult(Outcome.JOINED, Join(entry, partner))
            return AddResult(Outcome.JOINED, Join(partner, entry))
        if event_id in waiting or event_id in self._joined:
            return _DUPLICATE
        if entry.ts < self._watermark - self.ttl_ms:
            return _LATE
        evicted = None
        if len(waiting) >= self.max_pending:
            evicted = waiting.popitem(last=False)[1]
            del self._offsets[evicted.source][evicted.offset]
        waiting[event_id] = entry
        offsets = self._offsets.get(entry.source)
        if offsets is None:
            offsets = self._offsets[entry.source] = {}
        offsets[entry.offset] = None
        return _PENDING if evicted is None else AddResult(Outcome.PENDING, evicted=evicted)

    def expire(self) -> list[tuple[Side, Entry]]:
        cutoff = self._watermark - self.ttl_ms
        expired: list[tuple[Side, Entry]] = []
        for side, waiting in self._waiting.items():
            while waiting:
                oldest = next(iter(waiting.values()))
                if oldest.ts >= cutoff:
                    break
                waiting.popitem(last=False)
                del self._offsets[oldest.source][oldest.offset]
                expired.append((side, oldest))
        joined = self._joined
        while joined and next(iter(joined.values())) < cutoff:
            joined.popitem(last=False)
        return expired

    def pending(self, side: Side) -> int:
        return len(self._waiting[side])

    def pending_offsets(self) -> dict[Hashable, list[int]]:
        # Mostly added in offset order already, so sorting is a linear pass.
        return {source: sorted(offsets) for source, offsets in self._offsets.items() if offsets}
