"""Takeover in the inference group: static members come back at once, --idle-exit waits for
the group, a clean stop hands partitions over, and one instance id in two processes is refused.

The session timeout is set long (45 s, Kafka's default) in these tests so that "at once" is told
apart from "after the dead member's session expired" even on a slow, loaded machine.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest

from tests.integration.inference_support import (
    committed_total,
    event_ids,
    group,
    infer_args,
    produce,
    read_all,
    reading,
)
from tests.integration.kit import Stack, WorkerProcess, Workers, wait_until

pytestmark = pytest.mark.integration

SESSION_S = 45.0


def worker(workers: Workers, s: Stack, g: str, *extra: str) -> WorkerProcess:
    """`riverflow infer` in the test's group (``infer_args`` without the command)."""
    return workers.spawn(s, *infer_args(g, *extra))


def partitions(w: WorkerProcess) -> set[str]:
    return {labels["partition"] for labels, _ in w.page().select("riverflow_consumer_lag")}


def predictions(w: WorkerProcess) -> float:
    return w.value("riverflow_predictions") or 0


class Feeder(threading.Thread):
    """Produces readings in small bursts until stopped: readings flow through a takeover."""

    def __init__(self, s: Stack) -> None:
        super().__init__(daemon=True)
        self.settings = s.settings
        self.sent: list[dict[str, Any]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            burst = [reading(len(self.sent) + i) for i in range(20)]
            produce(self.settings, burst)
            self.sent += burst

    def finish(self) -> list[dict[str, Any]]:
        self.done.set()
        self.join(30)
        return self.sent


def split(ws: list[WorkerProcess]) -> list[set[str]]:
    """Each worker's partitions once the group has settled on a 2 + 2 split."""

    def settled() -> list[set[str]] | None:
        owned = [partitions(w) for w in ws]
        return owned if [len(p) for p in owned] == [2, 2] else None

    return wait_until(settled, what="a 2 + 2 split")


def test_a_sigkilled_static_worker_restarted_gets_its_partitions_back_at_once(
    stack: Any, workers: Workers
) -> None:
    s = stack(partitions=4, session_timeout_s=SESSION_S)
    g = group()
    a = worker(workers, s, g, "--instance-id", "worker-a")
    # a joins alone first, so a leads the group: the broker rebalances when a group's leader
    # rejoins (it must be able to assign again), and only a follower's restart keeps the group.
    wait_until(lambda: len(partitions(a)) == 4, what="a to own every partition")
    b = worker(workers, s, g, "--instance-id", "worker-b")
    feeder = Feeder(s)
    owned = split([a, b])
    feeder.start()
    try:
        wait_until(lambda: predictions(b) > 0, what="b to predict")
        b.kill()
        killed = time.monotonic()
        a_assignments = a.text().count("assigned")
        b = worker(workers, s, g, "--instance-id", "worker-b")
        wait_until(lambda: partitions(b) == owned[1], what="b's restart to own its partitions")
        assigned_s = time.monotonic() - killed
        wait_until(lambda: predictions(b) > 0, what="b's restart to predict")
        predicting_s = time.monotonic() - killed
    finally:
        sent = feeder.finish()
    print(f"takeover: assigned {assigned_s:.1f} s, predicting {predicting_s:.1f} s after SIGKILL")
    # The restart started Python and joined within seconds; a dynamic member would have waited
    # for the dead one's 45 s session, and the other worker would have been rebalanced.
    assert assigned_s < SESSION_S / 2, assigned_s
    assert a.text().count("assigned") == a_assignments, "the other worker was not rebalanced"
    wait_until(lambda: committed_total(s.settings, g) == len(sent), what="every reading done")
    assert [a.stop(), b.stop()] == [0, 0]
    predicted = event_ids(read_all(s.settings, s.settings.predictions_topic))
    assert set(predicted) == {r["event_id"] for r in sent}  # at least once, none lost
    assert "left group" in b.text()


def test_a_static_worker_that_stops_cleanly_hands_its_partitions_over_at_once(
    stack: Any, workers: Workers
) -> None:
    s = stack(partitions=4, session_timeout_s=SESSION_S)
    g = group()
    a = worker(workers, s, g, "--instance-id", "worker-a")
    b = worker(workers, s, g, "--instance-id", "worker-b")
    split([a, b])
    assert b.stop() == 0
    stopped = time.monotonic()
    wait_until(lambda: len(partitions(a)) == 4, what="a to take over all four partitions")
    assert time.monotonic() - stopped < SESSION_S / 2
    sent = [reading(i) for i in range(400)]
    produce(s.settings, sent)
    wait_until(lambda: predictions(a) >= 400, what="a to predict everything")
    assert a.stop() == 0
    assert "left group" in b.text()
    assert event_ids(read_all(s.settings, s.settings.predictions_topic)) == Counter(
        r["event_id"] for r in sent
    )


def test_idle_exit_counts_from_the_assignment_not_from_start(stack: Any, workers: Workers) -> None:
    # A dynamic member killed: its restart cannot join before the dead one's session expires,
    # far longer than --idle-exit. It must wait, predict the backlog, and only then stop idle.
    s = stack(partitions=2, session_timeout_s=15)
    g = group()
    first = worker(workers, s, g)
    wait_until(lambda: len(partitions(first)) == 2, what="the first worker's assignment")
    first.kill()
    sent = [reading(i) for i in range(1000)]
    produce(s.settings, sent)
    started = time.monotonic()
    result = s.run(*infer_args(g, "--idle-exit", "3", "--metrics-port", "0"), timeout=120)
    assert time.monotonic() - started > 3 + 5, "it waited for the group, not just 3 s"
    assert "assigned" in result.stderr and "no input for 3.0s" in result.stderr
    assert event_ids(read_all(s.settings, s.settings.predictions_topic)) == Counter(
        r["event_id"] for r in sent
    )


def test_two_processes_with_one_instance_id_the_older_stops_with_a_usage_error(
    stack: Any, workers: Workers
) -> None:
    s = stack(partitions=2, session_timeout_s=SESSION_S)
    g = group()
    older = worker(workers, s, g, "--instance-id", "twin")
    wait_until(lambda: len(partitions(older)) == 2, what="the older worker's assignment")
    newer = worker(workers, s, g, "--instance-id", "twin")
    wait_until(lambda: len(partitions(newer)) == 2, what="the newer one to take the place")
    sent = [reading(i) for i in range(300)]
    produce(s.settings, sent)  # the older one finds out when it commits
    assert older.proc.wait(60) == 2, older.text()[-3000:]
    assert "another process joined group" in older.text()
    wait_until(lambda: predictions(newer) >= 300, what="the newer one to predict all")
    assert newer.stop() == 0
    predicted = event_ids(read_all(s.settings, s.settings.predictions_topic))
    assert set(predicted) == {r["event_id"] for r in sent}
