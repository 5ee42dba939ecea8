"""What users watch continues across a takeover, and partitions added to the inputs are learned."""

from __future__ import annotations

import random
import threading
import time
import uuid
from typing import Any

import pytest
from kafka.admin import NewPartitions

from riverflow.scrape import Page
from riverflow.topics import create_topics
from riverflow.transport.kafka_python import kafka_admin as admin
from riverflow.transport.kafka_python import kafka_producer as producer
from tests.integration.learner_support import (
    Learners,
    base_ts,
    feedback,
    prediction,
    snapshots,
)

pytestmark = pytest.mark.integration

KEY = "continuity-test-key"
SERIES = ("riverflow_model_metric", "riverflow_concept_drift_detections_total")


def events(n: int, rng: random.Random) -> list[tuple[str, bytes, bytes]]:
    """Predictions and labels, each in event order (so the learner joins them in event order
    whatever the interleaving of its two inputs); the concept flips halfway: a drift."""
    ts = base_ts()
    sends = []
    for i in range(n):
        x = {"a": rng.uniform(-1, 1), "b": rng.uniform(-1, 1)}
        y = (x["a"] > 0) if i < n // 2 else (x["a"] < 0)
        served = rng.random() < 0.7
        scores = {"True": 0.7 if served else 0.3, "False": 0.3 if served else 0.7}
        sends.append(("p", b"s1", prediction(f"e{i}", ts + i, x, served, scores)))
        sends.append(("f", b"s1", feedback(f"e{i}", ts + i, y)))
    return sends


def quality(page: Page) -> dict[tuple[str, ...], float]:
    return {
        (name, *sorted(labels.items())): value
        for name in SERIES
        for labels, value in page.select(name)
    }


def caught_up(page: Page) -> bool:
    return (
        len(page.select("riverflow_consumer_lag")) == 2
        and page.sum("riverflow_consumer_lag") == 0
        and page.sum("riverflow_pending_feedback") == 0
        and page.sum("riverflow_pending_predictions") == 0
    )


def test_a_takeover_continues_every_quality_series_and_the_drift_count(
    stack: Any, learners: Learners
) -> None:
    s = stack(partitions=1)
    topics = {"p": s.settings.predictions_topic, "f": s.settings.feedback_topic}
    sends = events(3000, random.Random(3))
    env = {"RIVERFLOW_MODEL_SIGNING_KEY": KEY}
    args = ("--model", "logreg", "--snapshot-every", "250", "--snapshot-interval", "1")

    # The reference: one learner, never interrupted, on its own models topic and group.
    ref_models = f"models-ref-{uuid.uuid4().hex[:8]}"
    create_topics(s.settings.model_copy(update={"models_topic": ref_models}))
    reference = learners.start(
        s,
        *args,
        group_id=f"ref-{uuid.uuid4().hex[:8]}",
        env={**env, "RIVERFLOW_MODELS_TOPIC": ref_models},
    )
    group = f"takeover-{uuid.uuid4().hex[:8]}"
    first = learners.start(s, *args, group_id=group, env=env)
    first.wait_active()
    standby = learners.start(s, *args, group_id=group, env=env)

    def produce() -> None:
        p = producer(s.settings)
        for start in range(0, len(sends), 300):  # ~10 s of bursts
            for topic, key, value in sends[start : start + 300]:
                p.send(topics[topic], key=key, value=value)
            p.flush()
            time.sleep(1.0)
        p.close()

    feeder = threading.Thread(target=produce, daemon=True)
    feeder.start()
    first.wait_for(lambda pg: pg.sum("riverflow_learned_total") >= 1200, timeout=120)
    first.kill()
    feeder.join(120)
    standby.wait_active(timeout=60)
    taken_over = standby.wait_for(caught_up, timeout=120)
    expected = reference.wait_for(caught_up, timeout=120)

    got, want = quality(taken_over), quality(expected)
    # Every sample carries the worker's model and deployment (logreg, by default).
    drift = ("deployment", "logreg"), ("detector", "adwin"), ("model", "logreg")
    assert want[("riverflow_concept_drift_detections_total", *drift)] >= 1
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert abs(got[key] - value) <= 1e-9, (key, got[key], value)
    assert standby.stop() == 0 and reference.stop() == 0
    assert snapshots(s, "logreg", KEY.encode())[-1].header.learned_count == 3000


def test_partitions_added_while_the_learner_runs_are_learned_exactly_once(
    stack: Any, learners: Learners
) -> None:
    s = stack(partitions=1)
    topics = [s.settings.predictions_topic, s.settings.feedback_topic]
    ts = base_ts()
    env = {"RIVERFLOW_MODEL_SIGNING_KEY": KEY, "RIVERFLOW_METADATA_REFRESH_S": "1"}
    learner = learners.start(s, "--model", "tests.learner_models:counting", env=env)
    learner.wait_active()

    p = producer(s.settings)

    def send(first: int, last: int, partitions: list[int]) -> None:
        for i in range(first, last):
            part = partitions[i % len(partitions)]
            event = f"e{i}"
            p.send(topics[0], partition=part, value=prediction(event, ts + i, {"n": float(i)}))
            p.send(topics[1], partition=part, value=feedback(event, ts + i, i % 2 == 0))
        p.flush()

    send(0, 200, [0])
    learner.wait_for(lambda pg: pg.sum("riverflow_learned_total") == 200)
    client = admin(s.settings)
    try:
        client.create_partitions({t: NewPartitions(total_count=3) for t in topics})
    finally:
        client.close()
    p.close()
    p = producer(s.settings)  # a fresh producer sees the new partitions at once
    send(200, 500, [1, 2])
    p.close()
    learner.wait_for(
        lambda pg: pg.sum("riverflow_learned_total") == 500
        and len(pg.select("riverflow_consumer_lag")) == 6,
        timeout=60,
    )
    assert learner.stop() == 0
    assert "new input partitions" in learner.text()
    seen = snapshots(s, "counting", KEY.encode())[-1].model.seen
    assert sorted(seen) == list(range(500)), "a label was lost or learned twice"
