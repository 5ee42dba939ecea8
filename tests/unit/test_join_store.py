from __future__ import annotations

import random

import pytest

from riverflow.consumers.learner.join_store import Entry, MemoryJoinStore, Outcome, Side

P, F = Side.PREDICTION, Side.FEEDBACK


def entry(event_id: str, ts: int, offset: int = 0, source: str = "t/0") -> Entry:
    return Entry(event_id, ts, source, offset, value=f"{event_id}@{offset}")


def test_prediction_first_then_label_joins() -> None:
    store = MemoryJoinStore(ttl_ms=1000, max_pending=10)
    assert store.add(P, entry("a", 10)).outcome is Outcome.PENDING
    assert store.pending(P) == 1
    result = store.add(F, entry("a", 20, offset=5, source="f/0"))
    assert result.outcome is Outcome.JOINED and result.join is not None
    assert (result.join.prediction.value, result.join.feedback.value) == ("a@0", "a@5")
    assert store.pending(P) == store.pending(F) == 0


def test_label_first_then_prediction_joins() -> None:
    store = MemoryJoinStore(ttl_ms=1000, max_pending=10)
    assert store.add(F, entry("a", 20, offset=3)).outcome is Outcome.PENDING
    result = store.add(P, entry("a", 10, offset=9))
    assert result.outcome is Outcome.JOINED and result.join is not None
    assert result.join.prediction.offset == 9 and result.join.feedback.offset == 3


def test_duplicates_while_waiting_and_after_the_join() -> None:
    store = MemoryJoinStore(ttl_ms=1000, max_pending=10)
    store.add(P, entry("a", 10))
    assert store.add(P, entry("a", 10, offset=1)).outcome is Outcome.DUPLICATE
    store.add(F, entry("b", 10))
    assert store.add(F, entry("b", 11, offset=1)).outcome is Outcome.DUPLICATE
    assert store.add(F, entry("a", 12)).outcome is Outcome.JOINED
    # redeliveries of either side after the join are recognised, not stored, never joined again
    assert store.add(P, entry("a", 10, offset=2)).outcome is Outcome.DUPLICATE
    assert store.add(F, entry("a", 12, offset=3)).outcome is Outcome.DUPLICATE
    assert store.pending(P) == 0 and store.pending(F) == 1


def test_ttl_expiry_is_in_event_time_from_the_watermark() -> None:
    store = MemoryJoinStore(ttl_ms=100, max_pending=10)
    store.add(P, entry("old", 1000))
    store.add(F, entry("lonely", 1050))
    assert store.expire() == []  # watermark 1050: nothing older than 950
    store.add(P, entry("new", 1101))  # watermark 1101: cutoff 1001
    assert [(side, e.event_id) for side, e in store.expire()] == [(P, "old")]
    store.add(F, entry("later", 1151))  # cutoff 1051 > 1050
    assert [(side, e.event_id) for side, e in store.expire()] == [(F, "lonely")]
    assert store.watermark == 1151
    # a label for the expired prediction waits like any other (it will expire in turn)
    assert store.add(F, entry("old", 1140)).outcome is Outcome.PENDING


def test_watermark_never_goes_back_and_late_arrivals_are_not_stored() -> None:
    store = MemoryJoinStore(ttl_ms=100, max_pending=10)
    store.add(P, entry("a", 5000))
    store.add(P, entry("b", 4990))
    assert store.watermark == 5000
    assert store.add(F, entry("ancient", 4000)).outcome is Outcome.LATE
    assert store.pending(F) == 0
    # ... but an old entry whose partner waits still joins
    assert store.add(F, entry("b", 4000)).outcome is Outcome.JOINED


def test_memory_bound_evicts_the_oldest_arrival_per_side() -> None:
    store = MemoryJoinStore(ttl_ms=10**9, max_pending=3)
    for i in range(3):
        assert store.add(F, entry(f"f{i}", i)).evicted is None
    result = store.add(F, entry("f3", 3))
    assert result.outcome is Outcome.PENDING and result.evicted is not None
    assert result.evicted.event_id == "f0"
    assert store.pending(F) == 3
    store.add(P, entry("p0", 0))  # the other side has its own bound
    assert store.pending(P) == 1
    assert store.add(P, entry("f0", 0)).outcome is Outcome.PENDING  # evicted: no partner
    assert store.add(P, entry("f1", 1)).outcome is Outcome.JOINED


def test_size_stays_bounded_under_a_random_stream() -> None:
    rng = random.Random(7)
    store = MemoryJoinStore(ttl_ms=500, max_pending=50)
    outcomes: dict[Outcome, int] = {}
    waiting: set[int] = set()  # offsets that should be waiting, tracked from the results
    for i in range(20_000):
        side = P if rng.random() < 0.5 else F
        event_id = str(rng.randrange(3000))
        result = store.add(side, entry(event_id, i + rng.randrange(-50, 50), offset=i))
        outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
        if result.outcome is Outcome.PENDING:
            waiting.add(i)
        if result.evicted is not None:
            waiting.remove(result.evicted.offset)
        if result.join is not None:
            partner = result.join.feedback if side is P else result.join.prediction
            waiting.remove(partner.offset)
        waiting -= {e.offset for _, e in store.expire()}
        assert store.pending(P) <= 50 and store.pending(F) <= 50
        if i % 1000 == 0:
            assert store.pending_offsets().get("t/0", []) == sorted(waiting)
    assert outcomes[Outcome.JOINED] > 100 and outcomes[Outcome.DUPLICATE] > 100


def test_pending_offsets_per_source_sorted() -> None:
    store = MemoryJoinStore(ttl_ms=1000, max_pending=10)
    store.add(P, entry("a", 1, offset=7, source="p/0"))
    store.add(P, entry("b", 1, offset=3, source="p/0"))
    store.add(F, entry("c", 1, offset=4, source="f/1"))
    store.add(F, entry("a", 1, offset=5, source="f/1"))  # joins: no longer pending
    assert store.pending_offsets() == {"p/0": [3], "f/1": [4]}


def test_invalid_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        MemoryJoinStore(ttl_ms=0, max_pending=1)
    with pytest.raises(ValueError):
        MemoryJoinStore(ttl_ms=1, max_pending=0)
