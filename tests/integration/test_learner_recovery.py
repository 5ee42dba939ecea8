"""Exactly-once learning across SIGKILLs, with standby learners taking over."""

from __future__ import annotations

import random
import signal
import threading
import time
import uuid
from typing import Any

import pytest

from riverflow.transport.kafka_python import kafka_producer as producer
from tests.integration.kit import wait_until
from tests.integration.learner_support import (
    LearnerProcess,
    Learners,
    base_ts,
    feedback,
    prediction,
    snapshots,
)

pytestmark = pytest.mark.integration

MODEL = "tests.learner_models:counting"


def plan(rng: random.Random, n: int) -> tuple[list[tuple[str, bytes, bytes]], set[int]]:
    """Sends for ``n`` events over the predictions (p) and feedback (f) topics: 85% labelled,
    some labels before their prediction, most up to 150 events after it; 3% of predictions
    redelivered later (at-least-once inference)."""
    ts = base_ts()
    sends: list[tuple[float, str, bytes, bytes]] = []
    labelled = set()
    for i in range(n):
        key = f"s{i % 10}".encode()
        event = f"e{i}"
        sends.append((i, "p", key, prediction(event, ts + 10 * i, {"n": float(i)})))
        if rng.random() < 0.03:
            again = prediction(event, ts + 10 * i, {"n": float(i)})
            sends.append((i + rng.randrange(1, 200), "p", key, again))
        if rng.random() < 0.85:
            labelled.add(i)
            lag = -rng.random() * 3 if rng.random() < 0.1 else rng.random() * 150
            sends.append((i + lag, "f", key, feedback(event, ts + 10 * i + 5, i % 2 == 0)))
    sends.sort(key=lambda s: s[0])
    return [(topic, key, value) for _, topic, key, value in sends], labelled


def test_sigkilled_learners_learn_every_label_exactly_once(stack: Any, learners: Learners) -> None:
    s = stack(partitions=3)
    topics = {"p": s.settings.predictions_topic, "f": s.settings.feedback_topic}
    sends, labelled = plan(random.Random(11), 4000)
    group = f"riverflow-learn-test-{uuid.uuid4().hex[:8]}"
    args = ("--model", MODEL, "--snapshot-every", "200", "--snapshot-interval", "1")

    def learner() -> LearnerProcess:
        return learners.start(s, *args, group_id=group)

    def produce() -> None:
        p = producer(s.settings)
        for start in range(0, len(sends), 150):  # ~30 s of bursts
            for topic, key, value in sends[start : start + 150]:
                p.send(topics[topic], key=key, value=value)
            p.flush()
            time.sleep(0.5)
        p.close()

    def wait_for_activation(timeout: float) -> LearnerProcess:
        """The running learner that reports itself active (the previous one was killed)."""
        active: LearnerProcess = wait_until(
            lambda: next((lp for lp in running if lp.value("riverflow_learner_active")), None),
            timeout,
            lambda: "an active learner:\n" + running[0].text()[-3000:],
        )
        return active

    running = [learner(), learner()]
    active = wait_for_activation(60)
    feeder = threading.Thread(target=produce, daemon=True)
    feeder.start()
    rng = random.Random(5)
    takeovers = []
    for _ in range(3):
        time.sleep(rng.uniform(2, 5))
        active.kill()
        running.remove(active)
        killed_at = time.monotonic()
        running.append(learner())  # the replacement joins as a standby
        active = wait_for_activation(40)
        takeovers.append(time.monotonic() - killed_at)
    feeder.join(120)
    active.wait_for(
        lambda pg: (
            pg.sum("riverflow_consumer_lag") == 0
            and len(pg.select("riverflow_consumer_lag")) == 6
            and pg.sum("riverflow_pending_feedback") == 0
        ),
        timeout=90,
    )
    for lp in sorted(running, key=lambda lp: lp is active):  # standbys first
        # A replacement still starting up on a loaded machine would die of the SIGTERM: its
        # metrics page answers once it stops cleanly on one.
        lp.wait_for(lambda pg: bool(pg.select("riverflow_learner_active")))
        assert lp.stop() == 0, lp.text()[-3000:]

    final = snapshots(s, "counting")[-1]
    seen = final.model.seen
    assert len(seen) == len(set(seen)), "an event was learned twice"
    assert set(seen) == labelled, f"{len(labelled - set(seen))} events never learned"
    assert final.header.learned_count == len(labelled)
    assert max(takeovers) < 20, takeovers


def test_a_paused_learner_cannot_publish_after_a_standby_took_over(
    stack: Any, learners: Learners
) -> None:
    """The zombie case: the active learner is frozen (SIGSTOP) past its session timeout, a
    standby takes over, then the frozen one wakes up with unpublished changes. Its late
    snapshot must not land: versions on the models topic stay strictly increasing and the final
    model has learned every label once."""
    s = stack(partitions=2)
    topics = {"p": s.settings.predictions_topic, "f": s.settings.feedback_topic}
    sends, labelled = plan(random.Random(3), 3000)
    group = f"riverflow-learn-test-{uuid.uuid4().hex[:8]}"
    args = ("--model", MODEL, "--snapshot-every", "100000", "--snapshot-interval", "2")
    first = learners.start(s, *args, group_id=group)
    first.wait_active()
    second = learners.start(s, *args, group_id=group)
    p = producer(s.settings)
    half = len(sends) // 2
    for i, (topic, key, value) in enumerate(sends):
        p.send(topics[topic], key=key, value=value)
        if i == half:  # the first learner has learned part of it, some of that unpublished
            p.flush()
            first.wait_for(lambda pg: pg.sum("riverflow_learned_total") > 0)
            first.proc.send_signal(signal.SIGSTOP)
            second.wait_active(timeout=40)
    p.flush()
    p.close()
    second.wait_for(
        lambda pg: (
            pg.sum("riverflow_consumer_lag") == 0
            and len(pg.select("riverflow_consumer_lag")) == 4
            and pg.sum("riverflow_pending_feedback") == 0
        ),
        timeout=90,
    )
    first.proc.send_signal(signal.SIGCONT)

    def refused() -> bool:  # woken, it tries to go on and learns it was replaced
        return "took over" in first.text() or "membership lost" in first.text()

    wait_until(refused, timeout=60, what="the woken learner to find it was replaced")
    assert first.stop() == 0 and second.stop() == 0

    published = snapshots(s, "counting")
    versions = [snap.header.version for snap in published]
    assert versions == list(range(1, len(versions) + 1)), versions
    seen = published[-1].model.seen
    assert len(seen) == len(set(seen)) and set(seen) == labelled
