"""The learner against the real broker: River-exact quality, drift, expiry, bounded memory."""

from __future__ import annotations

import itertools
import json
import re
import uuid
from typing import Any

import pytest
from river import datasets, evaluate, linear_model, metrics, preprocessing
from river.datasets import synth

from riverflow.errors import SnapshotError
from riverflow.transport.kafka_python import kafka_producer as producer
from tests.integration.learner_support import (
    Learners,
    base_ts,
    feedback,
    prediction,
    snapshots,
)

pytestmark = pytest.mark.integration


def group() -> str:
    """A group of its own, so learners of other tests never rebalance with this one."""
    return f"riverflow-learn-test-{uuid.uuid4().hex[:8]}"


def test_learner_equals_river_progressive_validation_end_to_end(
    stack: Any, learners: Learners
) -> None:
    s = stack(partitions=1)
    s.run("replay", "phishing", "--label-delay-events", "0")
    s.run("infer", "--model", "logreg", "--idle-exit", "3", "--metrics-port", "0")
    learner = learners.start(s, "--model", "logreg", group_id=group())
    page = learner.wait_for(lambda p: p.sum("riverflow_learned_total") >= 1250)
    assert learner.stop() == 0

    reference = evaluate.progressive_val_score(
        datasets.Phishing(),
        preprocessing.StandardScaler() | linear_model.LogisticRegression(),
        metrics.Accuracy(),
    ).get()
    accuracy = page.max(
        "riverflow_model_metric", source="learner", metric="accuracy", window="cumulative"
    )
    assert accuracy is not None and abs(accuracy - reference) < 1e-9
    assert page.sum("riverflow_learned_total") == 1250
    assert page.sum("riverflow_feedback_total", outcome="joined") == 1250
    # served quality: what inference predicted, against the labels, as the topics hold them
    labels = {
        json.loads(r.value)["event_id"]: json.loads(r.value)["label"]
        for r in s.read(s.settings.feedback_topic, expect=1250)
    }
    served_hits = [
        json.loads(r.value)["prediction"] == labels[json.loads(r.value)["event_id"]]
        for r in s.read(s.settings.predictions_topic, expect=1250)
    ]
    served = page.max(
        "riverflow_model_metric", source="served", metric="accuracy", window="cumulative"
    )
    assert served == pytest.approx(sum(served_hits) / len(served_hits), abs=1e-12)
    for metric in ("f1", "log_loss"):
        assert page.select("riverflow_model_metric", source="learner", metric=metric)
    final = snapshots(s, "logreg")[-1]
    assert final.header.learned_count == 1250
    assert final.header.positions == {
        f"{s.settings.predictions_topic}/0": 1250,
        f"{s.settings.feedback_topic}/0": 1250,
    }


def test_concept_switch_is_detected_after_it_and_not_before(stack: Any) -> None:
    """Sine1 for 4,000 events, then its reversal: no detection in the stationary 3,000 events
    before the switch (after 1,000 of warm-up), at least one in the 3,000 after it; with
    ``--on-drift reset`` each detection publishes a fresh model at once."""
    s = stack(partitions=1)
    stream = itertools.chain(
        itertools.islice(synth.Sine(classification_function=0, seed=3), 4000),
        itertools.islice(synth.Sine(classification_function=1, seed=4), 3000),
    )
    p = producer(s.settings)
    ts = base_ts()
    for i, (x, y) in enumerate(stream):
        p.send(s.settings.predictions_topic, prediction(f"e{i}", ts + i, x, prediction=y))
        p.send(s.settings.feedback_topic, feedback(f"e{i}", ts + i, y))
    p.flush()
    p.close()

    run = s.run(
        "learn",
        "--model",
        "logreg",
        "--group-id",
        group(),
        "--metrics-port",
        "0",
        "--idle-exit",
        "3",
        "--on-drift",
        "reset",
        "--snapshot-every",
        "100000",
        "--snapshot-interval",
        "3600",
    )
    found = re.findall(r"concept drift detected by adwin at event e(\d+)", run.stderr)
    at = [int(i) for i in found]
    assert [i for i in at if 1000 <= i < 4000] == [], at
    assert [i for i in at if 4000 <= i < 7000], at
    published = snapshots(s, "logreg")
    with pytest.raises(SnapshotError):
        snapshots(s, "logreg", b"another-key-of-16+")
    # no periodic snapshots here: every one but the last is a reset, published mid-stream
    assert len(published) >= 2
    assert [snap.header.version for snap in published] == list(range(1, len(published) + 1))
    assert 4000 <= published[0].header.learned_count < 7000
    assert published[-1].header.learned_count == 7000


def test_expiry_eviction_duplicates_and_invalid_input(stack: Any, learners: Learners) -> None:
    s = stack(partitions=2)
    st = s.settings
    p = producer(st)
    ts = base_ts()
    learner = learners.start(
        s, "--model", "logreg", "--max-pending", "50", "--feedback-ttl", "3600", group_id=group()
    )
    learner.wait_active()

    def counts(page: Any) -> dict[str, float]:
        outcomes = ("joined", "expired", "duplicate", "invalid")
        out = {o: page.sum("riverflow_feedback_total", outcome=o) for o in outcomes}
        out["pending_feedback"] = page.sum("riverflow_pending_feedback")
        out["pending_predictions"] = page.sum("riverflow_pending_predictions")
        out["unlabelled"] = page.sum("riverflow_unlabelled_predictions_total")
        return out

    # 300 labels that never get a prediction: the memory bound keeps the newest 50
    for i in range(300):
        p.send(st.feedback_topic, feedback(f"orphan{i}", ts + i, True))
    p.flush()
    page = learner.wait_for(lambda pg: counts(pg)["expired"] == 250)
    assert counts(page)["pending_feedback"] == 50

    # 100 predictions that never get a label: the same on the other side
    for i in range(100):
        p.send(st.predictions_topic, prediction(f"lonely{i}", ts + i, {"a": 1.0}))
    p.flush()
    page = learner.wait_for(
        lambda pg: pg.sum("riverflow_unlabelled_predictions_total", reason="evicted") == 50
    )
    assert counts(page)["pending_predictions"] == 50

    # 20 pairs, each side once more (redeliveries), and garbage on both inputs
    for i in range(20):
        p.send(st.predictions_topic, prediction(f"pair{i}", ts + 1000 + i, {"a": float(i)}))
        p.send(st.feedback_topic, feedback(f"pair{i}", ts + 1000 + i, i % 2 == 0))
    p.flush()
    for i in range(5):
        p.send(st.predictions_topic, prediction(f"pair{i}", ts + 1000 + i, {"a": float(i)}))
        p.send(st.feedback_topic, feedback(f"pair{i}", ts + 1000 + i, i % 2 == 0))
    for raw in (b"not json", b'{"event_id": "x"}', feedback("nan", ts, "a")[:-3]):
        p.send(st.feedback_topic, raw)
    for raw in (b"[]", prediction("bad", ts, {"a": 1.0}).replace(b"1.0", b"NaN")):
        p.send(st.predictions_topic, raw)
    p.flush()
    page = learner.wait_for(
        lambda pg: counts(pg)["joined"] == 20 and counts(pg)["invalid"] == 5
        and counts(pg)["duplicate"] == 10
    )  # fmt: skip
    c = counts(page)
    assert c["pending_feedback"] <= 50 and c["pending_predictions"] <= 50
    assert c["expired"] + c["pending_feedback"] + c["joined"] == 320  # every distinct label
    assert c["unlabelled"] + c["pending_predictions"] + c["joined"] == 120
    assert page.sum("riverflow_learned_total") == 20

    # a label an hour later in event time: everything older than the ttl expires
    p.send(st.feedback_topic, feedback("tick", ts + 2 * 3_600_000, True))
    p.flush()
    page = learner.wait_for(lambda pg: counts(pg)["pending_predictions"] == 0)
    c = counts(page)
    assert c["pending_feedback"] == 1 and c["expired"] == 300 and c["unlabelled"] == 100
    p.close()
    assert learner.stop() == 0

    letters = s.read(st.dead_letters_topic, expect=5)
    assert len(letters) == 5
    for record in letters:
        headers = dict(record.headers)
        assert headers["riverflow-stage"] in (b"decode", b"validate")
        assert headers["riverflow-source"].decode().rsplit("/", 2)[0] in (
            st.feedback_topic,
            st.predictions_topic,
        )
