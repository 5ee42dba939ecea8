"""Warm start: `riverflow models train` on the first half of Phishing, then the second half
streamed through infer and learn: the learner's metrics equal River's progressive validation
over the two halves."""

from __future__ import annotations

import csv
import itertools
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from river import datasets, evaluate, linear_model, metrics, preprocessing

from riverflow.transport import clients_for
from tests.integration.learner_support import Learners, snapshots

pytestmark = pytest.mark.integration

HALF = 625  # Phishing has 1,250 rows


def write_csv(path: Path, rows: list[tuple[dict[str, Any], Any]]) -> None:
    names = list(rows[0][0])
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow([*names, "label"])
        for x, y in rows:
            out.writerow([*(repr(float(x[n])) for n in names), str(y)])


def model() -> Any:
    return preprocessing.StandardScaler() | linear_model.LogisticRegression()


def test_train_then_learn_equals_progressive_validation(
    stack: Any, learners: Learners, tmp_path: Path
) -> None:
    s = stack(partitions=1)
    rows = list(datasets.Phishing())
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    write_csv(first, rows[:HALF])
    write_csv(second, rows[HALF:])

    out = s.run(
        "models", "train", "--model", "logreg", "--from", str(first), "--target", "label"
    ).stdout
    assert f"trained logreg on {HALF:,} rows" in out and "published logreg v1" in out
    reference_first = evaluate.progressive_val_score(rows[:HALF], model(), metrics.Accuracy())
    trained = snapshots(s, "logreg")[-1]
    assert trained.header.extra["operation"]["kind"] == "train"
    assert f"accuracy   {reference_first.get():.6f}" in out

    s.run("replay", str(second), "--target", "label", "--label-delay-events", "0")
    s.run("infer", "--model", "logreg", "--idle-exit", "3", "--metrics-port", "0")
    group = f"riverflow-learn-test-{uuid.uuid4().hex[:8]}"
    learner = learners.start(s, "--model", "logreg", group_id=group)
    page = learner.wait_for(lambda p: p.sum("riverflow_learned_total") >= HALF)
    assert learner.stop() == 0
    assert "resuming logreg from snapshot v1 (625 learned" in learner.text()

    # River over the two halves: the same model learning the first, then the second
    reference = evaluate.progressive_val_score(rows, model(), metrics.Accuracy()).get()
    accuracy = page.max(
        "riverflow_model_metric", source="learner", metric="accuracy", window="cumulative"
    )
    assert accuracy is not None and abs(accuracy - reference) < 1e-9
    # ... and the second half alone: River's model warm from the first half
    warm, second_half = model(), metrics.Accuracy()
    for x, y in rows[:HALF]:
        warm.learn_one(x, y)
    for x, y in itertools.islice(rows, HALF, None):
        second_half.update(y, warm.predict_one(x))
        warm.learn_one(x, y)
    learner_second = (accuracy * len(rows) - reference_first.get() * HALF) / HALF
    assert abs(learner_second - second_half.get()) < 1e-9
    assert page.sum("riverflow_learned_total") == HALF
    assert snapshots(s, "logreg")[-1].header.learned_count == len(rows)


def test_train_through_a_mapping_reads_the_mapped_topics(stack: Any, tmp_path: Path) -> None:
    s = stack(partitions=1)
    rows = list(datasets.Phishing())[:300]
    names = list(rows[0][0])
    p = clients_for(s.settings).producer()
    for i, (x, y) in enumerate(rows):
        doc = {"id": f"r{i}", "m": {n: float(v) for n, v in x.items()}}
        p.send(s.settings.readings_topic, b"site", json.dumps(doc).encode())
        if i % 3:  # a third unlabelled: tested (nothing), not learned
            label = {"id": f"r{i}", "outcome": "phish" if y else "ok"}
            p.send(s.settings.feedback_topic, b"site", json.dumps(label).encode())
    p.send(s.settings.readings_topic, b"site", b"not json")
    assert p.flush(60) == 0
    p.close(10)
    mapping = tmp_path / "site.toml"
    mapping.write_text(
        '[readings]\nevent_id = "id"\n'
        f"features = [{', '.join(json.dumps('m.' + n) for n in names)}]\n"
        '[feedback]\nevent_id = "id"\nlabel = "outcome"\n'
        "labels = { phish = true, ok = false }\n"
    )
    out = s.run("models", "train", "--model", "logreg", "--mapping", str(mapping)).stdout
    labelled = [(x, y) for i, (x, y) in enumerate(rows) if i % 3]
    assert f"trained logreg on {len(labelled):,} rows" in out and "published logreg v1" in out
    reference = evaluate.progressive_val_score(
        [({f"m.{n}": float(v) for n, v in x.items()}, y) for x, y in labelled],
        model(),
        metrics.Accuracy(),
    )
    assert f"accuracy   {reference.get():.6f}" in out
    trained = snapshots(s, "logreg")[-1]
    assert trained.header.learned_count == len(labelled)
