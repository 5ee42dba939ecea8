"""The learner's checkpoint: where it stopped reading, and which records were still waiting.

A snapshot carries the model together with, per input partition (``"topic/partition"``):

- ``next``: the offset after the last record the model has seen the effect of;
- the offsets below ``next`` whose records were still waiting in the join store, as sorted
  ``[start, end)`` runs (waiting records are mostly contiguous, so runs stay short).

A restarted learner seeks each partition to its *low* position (the first waiting offset, else
``next``). Re-read records below ``next`` go back into the join store only if they were
waiting; every other record below ``next`` was joined, expired, refused or was a duplicate
before the snapshot, and its effect is already in the model, so it is skipped. Records from
``next`` on are new. The rebuilt store therefore equals the one that was snapshotted: a pair is
learned once, whether it joined before the snapshot (inside the model) or after (live).

A snapshot taken while the re-reading is still under way must keep the waiting offsets that
were not re-read yet (:meth:`PartitionReplay.unread`), or they would be lost at the next restart.

>>> cp = Checkpoint({"p/0": 10}, {"p/0": to_runs([3, 4, 7])}, watermark=5)
>>> cp.start("p/0"), cp.pending["p/0"]
(3, [[3, 5], [7, 8]])
>>> r = cp.replay("p/0")
>>> [str(r.classify(o)) for o in (3, 5, 7, 10)]
['pending', 'skip', 'pending', 'live']
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from riverflow.online_model.snapshot import SnapshotHeader


def partition_key(topic: str, partition: int) -> str:
    """The ``"topic/partition"`` form positions use in snapshot headers."""
    return f"{topic}/{partition}"


# Stretches of at most this many offsets are walked one by one rather than halved further.
_SHORT = 16


def to_runs(offsets: Iterable[int]) -> list[list[int]]:
    """Sorted, distinct offsets as ``[start, end)`` runs of consecutive offsets.

    A stretch of sorted, distinct offsets is one run when its last offset minus its first is
    its length minus one; stretches that are not are halved. The waiting offsets of a running
    learner are a few long runs, so a checkpoint takes a few dozen steps rather than one per
    waiting offset (34,500 waiting in the benchmark: 5 ms per snapshot, one every 1,000
    events). Fragmented offsets cost about what walking them one by one does.
    """
    offs = offsets if isinstance(offsets, list) else list(offsets)
    runs: list[list[int]] = []
    last: list[int] = [-1, -1]  # the run being extended (a placeholder before the first)
    stack = [(0, len(offs))] if offs else []
    while stack:  # left halves first, so runs come out in order
        i, j = stack.pop()
        if offs[j - 1] - offs[i] == j - 1 - i:  # one run
            if offs[i] == last[1]:
                last[1] = offs[j - 1] + 1
            else:
                last = [offs[i], offs[j - 1] + 1]
                runs.append(last)
        elif j - i <= _SHORT:
            for offset in offs[i:j]:
                if offset == last[1]:
                    last[1] = offset + 1
                else:
                    last = [offset, offset + 1]
                    runs.append(last)
        else:
            mid = (i + j) // 2
            stack += [(mid, j), (i, mid)]
    return runs


def _merge(runs: list[list[int]]) -> list[list[int]]:
    """Disjoint runs in any order as sorted runs, adjacent ones joined."""
    merged: list[list[int]] = []
    for start, end in sorted(runs):
        if merged and start == merged[-1][1]:
            merged[-1][1] = end
        else:
            merged.append([start, end])
    return merged


class Replay(StrEnum):
    PENDING = "pending"  # below next and was waiting: back into the join store, not learned
    SKIP = "skip"  # below next and already handled before the snapshot
    LIVE = "live"  # at or after next: new


class PartitionReplay:
    """Classifies the re-read offsets of one partition against its checkpoint, in offset order,
    and remembers how far the re-reading got."""

    def __init__(self, next_offset: int, runs: list[list[int]]) -> None:
        self.next = next_offset
        self._starts = [start for start, _ in runs]
        self._ends = [end for _, end in runs]
        self.cursor = self._starts[0] if runs else next_offset  # the next offset to re-read

    def classify(self, offset: int) -> Replay:
        self.cursor = offset + 1
        if offset >= self.next:
            return Replay.LIVE
        i = bisect_right(self._starts, offset) - 1
        return Replay.PENDING if i >= 0 and offset < self._ends[i] else Replay.SKIP

    def unread(self) -> list[list[int]]:
        """The waiting runs not re-read yet: they still wait, as far as any checkpoint knows."""
        cursor = self.cursor
        return [
            [max(s, cursor), e] for s, e in zip(self._starts, self._ends, strict=True) if e > cursor
        ]


@dataclass
class Checkpoint:
    positions: dict[str, int] = field(default_factory=dict)
    pending: dict[str, list[list[int]]] = field(default_factory=dict)
    watermark: int = 0

    @classmethod
    def capture(
        cls,
        positions: dict[str, int],
        waiting: dict[str, list[int]],
        unread: dict[str, list[list[int]]],
        watermark: int,
    ) -> Checkpoint:
        """The checkpoint of a running learner: its positions, the sorted offsets waiting in its
        join store, and the runs of a previous checkpoint it has not re-read yet."""
        pending = {}
        for key in waiting.keys() | unread.keys():
            runs = _merge(to_runs(waiting.get(key, [])) + unread.get(key, []))
            if runs:
                pending[key] = runs
        return cls(dict(positions), pending, watermark)

    @classmethod
    def from_header(cls, header: SnapshotHeader) -> Checkpoint:
        extra = header.extra
        pending = dict(extra.get("pending", {}))
        return cls(dict(header.positions), pending, extra.get("watermark", 0))

    def header_extra(self) -> dict[str, Any]:
        return {"pending": self.pending, "watermark": self.watermark}

    def start(self, key: str) -> int | None:
        """Where to seek a partition on resume (None: the checkpoint does not know it)."""
        if key not in self.positions:
            return None
        runs = self.pending.get(key)
        return runs[0][0] if runs else self.positions[key]

    def replay(self, key: str) -> PartitionReplay:
        return PartitionReplay(self.positions[key], self.pending.get(key, []))
