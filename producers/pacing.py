"""Rate pacing and the delayed-label schedule: the timing logic of the publisher, without Kafka.

>>> pacer = Pacer(rate=100.0, start=10.0)
>>> round(pacer.wait(sent=5, now=10.0), 6)  # event 5 is due at 10.05
0.05
>>> queue: DueQueue[str] = DueQueue()
>>> queue.push(2.0, "b"); queue.push(1.0, "a")
>>> queue.pop_due(1.5), queue.drain()
(['a'], ['b'])
"""

from __future__ import annotations

import heapq
import itertools
from typing import Generic, TypeVar

T = TypeVar("T")

# After a stall longer than this (a paused process, a broker that blocked sends), the schedule
# restarts from now instead of bursting the whole backlog to catch up; shorter hiccups are
# caught up so the average rate holds.
MAX_BACKLOG_S = 1.0


class Pacer:
    """Event ``k`` (0-based) is due at ``start + k / rate`` on a monotonic clock.

    Pacing against the schedule, not sleeping a fixed interval per event, keeps the long-run rate
    exact: an oversleep is paid back by sending the next due events back to back. ``rate`` 0
    means as fast as possible.
    """

    def __init__(self, rate: float, start: float, max_backlog_s: float = MAX_BACKLOG_S) -> None:
        if rate < 0:
            raise ValueError("rate must be >= 0")
        self.rate = rate
        self.start = start
        self.max_backlog_s = max_backlog_s
        self.rebased = 0  # stalls after which the schedule restarted
        self._base = 0  # events sent before the current schedule started

    def due_at(self, sent: int) -> float:
        """When event number ``sent`` is due."""
        return self.start + (sent - self._base) / self.rate if self.rate else self.start

    def wait(self, sent: int, now: float) -> float:
        """Seconds until the next event (number ``sent``) is due; 0 when it is due now."""
        if not self.rate:
            return 0.0
        ahead = self.due_at(sent) - now
        if ahead < -self.max_backlog_s:
            self.start, self._base = now, sent
            self.rebased += 1
            return 0.0
        return max(0.0, ahead)


class DueQueue(Generic[T]):
    """Items that become due at a time (or a count); popped in due order, ties in push order."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, T]] = []
        self._order = itertools.count()  # tie-break: never compare the items themselves

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, due: float, item: T) -> None:
        heapq.heappush(self._heap, (due, next(self._order), item))

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[T]:
        """Every item due at or before ``now``, earliest first."""
        out: list[T] = []
        while self._heap and self._heap[0][0] <= now:
            out.append(heapq.heappop(self._heap)[2])
        return out

    def drain(self) -> list[T]:
        """Every item left, earliest first, whether due or not."""
        out = [item for _, _, item in sorted(self._heap)]
        self._heap.clear()
        return out
