"""SIGKILL loops: workers killed and restarted again and again while readings and labels flow.

Inference at-least-once predicts every reading at least once, --exactly-once exactly once (as
read_committed readers see it); a learner killed between snapshots learns every label once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from riverflow.scrape import Page
from tests.chaos.support import (
    Feeder,
    assert_alive,
    sample,
    settled,
    strict_page,
)
from tests.integration.inference_support import (
    committed_total,
    event_ids,
    group,
    infer_args,
    read_all,
)
from tests.integration.kit import WorkerProcess, Workers, wait_until
from tests.integration.learner_support import LearnerProcess, Learners, snapshots

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

KILLS = 4
# Each kill lands once the victim has done this much since the last one: mid-stream, with
# batches (and, exactly-once, a transaction) in flight.
WORK_BETWEEN_KILLS = 150
COUNTING = "tests.learner_models:counting"


def at_least(name: str, goal: float) -> Callable[[Page], bool]:
    return lambda page: sample(page, name) >= goal


@pytest.mark.parametrize("mode", ["at-least-once", "exactly-once"])
def test_sigkilled_inference_workers_predict_every_reading(
    stack: Any, workers: Workers, mode: str
) -> None:
    s = stack(partitions=4)
    g = group()
    extra = ["--exactly-once"] if mode == "exactly-once" else []

    def start(i: int) -> WorkerProcess:
        return workers.spawn(s, *infer_args(g, "--instance-id", f"{g}-{i}", *extra))

    running = [start(0), start(1)]
    for w in running:
        w.wait_for(lambda pg: bool(pg.select("riverflow_consumer_lag")), timeout=120)
    feeder = Feeder(s.settings, rate=200)
    feeder.start()
    for k in range(KILLS):
        i = k % 2
        victim = running[i]
        done = victim.page().sum("riverflow_predictions_total")
        victim.wait_for(at_least("riverflow_predictions", done + WORK_BETWEEN_KILLS), timeout=120)
        victim.kill()
        running[i] = start(i)
    sent = feeder.finish()
    wait_until(
        lambda: committed_total(s.settings, g) == sent,
        timeout=120,
        what="every reading committed",
    )
    assert_alive(*running)
    for w in running:
        # The last restart may still be starting on a loaded machine (its partitions then went
        # to the other worker once its session expired): wait until it is in its loop.
        w.wait_for(lambda pg: bool(pg.select("riverflow_consumer_lag")), timeout=120)
        strict_page(w)
    assert [w.stop() for w in running] == [0, 0], [w.text()[-3000:] for w in running]
    # A killed worker's open transaction blocks read_committed readers until the broker aborts it.
    wait_until(lambda: settled(s.settings, s.settings.predictions_topic), timeout=60)

    predicted = event_ids(read_all(s.settings, s.settings.predictions_topic))
    assert set(predicted) == feeder.event_ids
    if mode == "exactly-once":
        assert predicted == Counter(feeder.event_ids)
    assert committed_total(s.settings, g) == sent
    repeated = sum(predicted.values()) - sent
    print(f"\n{mode}: {KILLS} kills, {sent} readings predicted, {repeated} repeated")


def test_sigkilled_learner_learns_every_label_once(
    stack: Any, workers: Workers, learners: Learners
) -> None:
    s = stack(partitions=3)
    inference = workers.spawn(s, *infer_args(group(), model=COUNTING))
    learn_group = f"chaos-learn-{group()}"
    args = ("--model", COUNTING, "--snapshot-every", "200", "--snapshot-interval", "1")

    def start() -> LearnerProcess:
        return learners.start(s, *args, "--instance-id", learn_group, group_id=learn_group)

    learner = start()
    learner.wait_active(timeout=120)
    feeder = Feeder(s.settings, rate=150, labels=True)
    feeder.start()
    for _ in range(KILLS - 1):
        learner.wait_for(at_least("riverflow_learned", WORK_BETWEEN_KILLS), timeout=120)
        learner.kill()
        learner = start()
        learner.wait_active(timeout=120)
    sent = feeder.finish()
    learner.wait_for(
        lambda pg: (
            len(pg.select("riverflow_consumer_lag")) == 6
            and pg.sum("riverflow_consumer_lag") == 0
            and pg.sum("riverflow_pending_feedback") == 0
            and pg.sum("riverflow_pending_predictions") == 0
        ),
        timeout=120,
    )
    assert_alive(inference, learner)
    strict_page(inference)
    strict_page(learner)
    assert learner.stop() == 0 and inference.stop() == 0

    final = snapshots(s, "counting")[-1]
    seen = final.model.seen
    assert len(seen) == len(set(seen)), "a label was learned twice"
    assert sorted(seen) == list(range(sent))
    assert final.header.learned_count == sent
    print(f"\nlearner: {KILLS - 1} kills, {sent} labels each learned once")
