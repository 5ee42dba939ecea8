from __future__ import annotations

import random

import pytest

from riverflow.producers.pacing import DueQueue, Pacer


def test_event_k_is_due_at_start_plus_k_over_rate() -> None:
    pacer = Pacer(rate=200.0, start=100.0)
    assert pacer.wait(0, now=100.0) == 0.0
    assert pacer.wait(1, now=100.0) == pytest.approx(0.005)
    assert pacer.wait(10, now=100.02) == pytest.approx(0.03)
    assert pacer.due_at(400) == pytest.approx(102.0)


def test_rate_zero_never_waits() -> None:
    pacer = Pacer(rate=0.0, start=5.0)
    assert all(pacer.wait(k, now=5.0) == 0.0 for k in range(1000))


def test_negative_rate_is_refused() -> None:
    with pytest.raises(ValueError):
        Pacer(rate=-1.0, start=0.0)


def test_oversleeping_is_paid_back_so_the_long_run_rate_holds() -> None:
    """Simulate a loop whose every sleep overshoots by up to 2 ms (four event intervals at
    2,000/s): a per-event sleep would lose most of its rate, the schedule loses none."""
    rate, n = 2000.0, 20_000
    rng = random.Random(0)
    now = 0.0
    pacer = Pacer(rate, start=now)
    sent = 0
    while sent < n:
        wait = pacer.wait(sent, now)
        if wait > 0:
            now += wait + rng.uniform(0, 0.002)
            continue
        sent += 1
        now += 0.000_05  # the cost of one send
    achieved = n / now
    assert achieved == pytest.approx(rate, rel=0.01)
    assert pacer.rebased == 0


def test_a_long_stall_restarts_the_schedule_instead_of_bursting() -> None:
    pacer = Pacer(rate=100.0, start=0.0, max_backlog_s=1.0)
    assert pacer.wait(10, now=0.5) == 0.0  # 0.4 s behind: catch up
    assert pacer.rebased == 0
    assert pacer.wait(10, now=30.0) == 0.0  # 29.9 s behind: start over from now
    assert pacer.rebased == 1
    assert pacer.wait(11, now=30.0) == pytest.approx(0.01)
    assert pacer.due_at(20) == pytest.approx(30.1)


def test_due_queue_pops_in_due_order_and_keeps_ties_in_push_order() -> None:
    queue: DueQueue[str] = DueQueue()
    for due, item in [(3.0, "c"), (1.0, "a1"), (2.0, "b"), (1.0, "a2"), (5.0, "e")]:
        queue.push(due, item)
    assert len(queue) == 5 and queue.next_due() == 1.0
    assert queue.pop_due(0.999) == []
    assert queue.pop_due(1.0) == ["a1", "a2"]  # due exactly now counts as due
    assert queue.pop_due(3.5) == ["b", "c"]
    assert queue.next_due() == 5.0
    assert queue.drain() == ["e"]
    assert len(queue) == 0 and queue.next_due() is None


def test_due_queue_never_compares_items() -> None:
    queue: DueQueue[object] = DueQueue()
    a, b = object(), object()  # unorderable
    queue.push(1.0, a)
    queue.push(1.0, b)
    assert queue.drain() == [a, b]


def test_jittered_delays_come_out_in_due_order_not_send_order() -> None:
    rng = random.Random(4)
    queue: DueQueue[int] = DueQueue()
    dues = {}
    for i in range(500):
        sent_at = i * 0.01
        dues[i] = sent_at + 2.0 * (1 + 0.5 * rng.uniform(-1, 1))
        queue.push(dues[i], i)
    popped: list[int] = []
    for tick in range(1, 800):
        popped += queue.pop_due(tick * 0.01)
    popped += queue.drain()
    assert sorted(popped) == list(range(500))
    assert [dues[i] for i in popped] == sorted(dues.values())
    assert popped != sorted(popped)  # jitter reorders labels relative to their readings
