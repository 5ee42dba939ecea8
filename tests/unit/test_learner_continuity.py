"""A learner that resumes from a snapshot continues every quality series and the concept drift
detector exactly: crashes at random points give the metrics of an uninterrupted run."""

from __future__ import annotations

import random
from typing import Any

from riverflow.consumers.learner.checkpoint import Checkpoint, PartitionReplay, Replay
from riverflow.consumers.learner.state import Learning, LearningConfig
from riverflow.metrics import LearnerMetrics
from riverflow.online_model.presets import resolve
from riverflow.online_model.snapshot import SnapshotHeader, Trust, dumps, loads
from riverflow.schemas import Feedback, Prediction

TS0 = 1_700_000_000_000
CONFIG = LearningConfig(
    ttl_ms=10**9, max_pending=10**6, window=50, detector="adwin", on_drift="alert"
)
SPEC = resolve("logreg")
KEY = b"continuity"


def stream(n: int, rng: random.Random) -> dict[str, list[Any]]:
    """One prediction and one feedback partition in event order; the concept flips halfway,
    so the learner's error stream drifts."""
    p: list[Any] = []
    f: list[Any] = []
    for i in range(n):
        x = {"a": rng.uniform(-1, 1), "b": rng.uniform(-1, 1)}
        y = (x["a"] > 0) if i < n // 2 else (x["a"] < 0)
        served = rng.random() < 0.7
        p.append(
            Prediction.model_validate(
                {
                    "event_id": f"e{i}",
                    "sensor_id": "s",
                    "event_ts": TS0 + i,
                    "predicted_ts": TS0 + i,
                    "model": "logreg",
                    "model_version": i // 200,
                    "prediction": served,
                    "scores": {"True": 0.7 if served else 0.3, "False": 0.3 if served else 0.7},
                    "features": x,
                }
            )
        )
        f.append(
            Feedback.model_validate(
                {"event_id": f"e{i}", "sensor_id": "s", "ts": TS0 + i, "label": y}
            )
        )
    return {"p/0": p, "f/0": f}


def metrics_of(learning: Learning) -> dict[tuple[str, ...], float]:
    learning.export()
    values: dict[tuple[str, ...], float] = {}
    for family in learning.metrics.registry.collect():
        for sample in family.samples:
            if sample.name in (
                "riverflow_model_metric",
                "riverflow_concept_drift_detections_total",
            ):
                values[(sample.name, *sorted(sample.labels.values()))] = sample.value
    return values


class Run:
    """The learner's loop over the two partitions, restartable from a snapshot blob."""

    def __init__(
        self, data: dict[str, list[Any]], blob: bytes | None, metrics: LearnerMetrics
    ) -> None:
        self.data = data
        self.cursors = {k: 0 for k in data}
        self.positions = {k: 0 for k in data}
        self.replays: dict[str, PartitionReplay] = {}
        kw: dict[str, Any] = {}
        self.version = 0
        if blob is not None:
            snap = loads(blob, Trust(KEY), evaluation=True)
            cp = Checkpoint.from_header(snap.header)
            kw = dict(
                model=snap.model,
                learned=snap.header.learned_count,
                watermark=cp.watermark,
                evaluation=snap.evaluation,
                version=snap.header.version,
            )
            self.version = snap.header.version
            self.positions = dict(cp.positions)
            self.cursors = {k: cp.start(k) or 0 for k in cp.positions}
            self.replays = {
                k: cp.replay(k) for k in cp.positions if self.cursors[k] < cp.positions[k]
            }
        self.learning = Learning(SPEC, CONFIG, metrics, lambda r, e: None, **kw)

    def consume(self, rng: random.Random, limit: int | None) -> None:
        steps = 0
        while limit is None or steps < limit:
            open_ = [k for k, records in self.data.items() if self.cursors[k] < len(records)]
            if not open_:
                return
            key = rng.choice(open_)
            offset = self.cursors[key]
            self.cursors[key] += 1
            replay = self.replays.get(key)
            kind = replay.classify(offset) if replay else Replay.LIVE
            if kind is not Replay.SKIP:
                message = self.data[key][offset]
                if key.startswith("p"):
                    self.learning.add_prediction(message, None, key, offset, kind)
                else:
                    self.learning.add_feedback(message, None, key, offset)
            self.positions[key] = max(self.positions[key], offset + 1)
            steps += 1

    def snapshot(self) -> bytes:
        learning = self.learning
        cp = Checkpoint.capture(
            self.positions,
            {str(k): v for k, v in learning.store.pending_offsets().items()},
            {k: r.unread() for k, r in self.replays.items()},
            learning.store.watermark,
        )
        self.version += 1
        learning.version = self.version
        header = SnapshotHeader(
            "logreg",
            self.version,
            "classification",
            learned_count=learning.learned,
            positions=cp.positions,
            extra=cp.header_extra(),
        )
        return dumps(header, learning.model, KEY, evaluation=learning.evaluation())


def test_a_resumed_learner_continues_every_series_and_the_drift_detector() -> None:
    data = stream(3000, random.Random(1))
    whole = Run(data, None, LearnerMetrics())
    whole.consume(random.Random(2), None)
    expected = metrics_of(whole.learning)
    assert expected[("riverflow_concept_drift_detections_total", "adwin")] >= 1, "no drift to carry"

    for seed in range(4):
        rng = random.Random(100 + seed)
        run = Run(data, None, LearnerMetrics())
        for _ in range(3):  # run, snapshot, run on (lost), crash; a fresh process resumes
            run.consume(rng, rng.randrange(300, 1500))
            blob = run.snapshot()
            run.consume(rng, rng.randrange(0, 400))
            run = Run(data, blob, LearnerMetrics())
        run.consume(rng, None)
        got = metrics_of(run.learning)
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            assert abs(got[key] - value) <= 1e-9, (seed, key, got[key], value)


def test_a_snapshot_without_evaluation_state_starts_the_series_over() -> None:
    data = stream(400, random.Random(3))
    run = Run(data, None, LearnerMetrics())
    run.consume(random.Random(4), 300)
    header = SnapshotHeader("logreg", 1, "classification", learned_count=run.learning.learned)
    resumed = Run(data, dumps(header, run.learning.model, KEY), LearnerMetrics())
    assert resumed.learning.evaluator.values() is not None
    assert list(resumed.learning.evaluator.values()) == []  # nothing scored yet


def test_evaluation_state_for_another_window_is_not_used() -> None:
    run = Run(stream(200, random.Random(5)), None, LearnerMetrics())
    run.consume(random.Random(6), None)
    other = LearningConfig(**{**CONFIG.__dict__, "window": 10})
    learning = Learning(
        SPEC, other, LearnerMetrics(), lambda r, e: None, evaluation=run.learning.evaluation()
    )
    assert list(learning.evaluator.values()) == []


def test_served_version_lag_counts_versions_behind_the_learner() -> None:
    data = stream(400, random.Random(7))  # served by versions 0 and 1
    run = Run(data, None, LearnerMetrics())
    run.learning.version = 3
    run.consume(random.Random(8), None)
    run.learning.export()
    registry = run.learning.metrics.registry
    count = registry.get_sample_value("riverflow_served_version_lag_count")
    total = registry.get_sample_value("riverflow_served_version_lag_sum")
    assert count == 400
    assert total == 200 * 3 + 200 * 2
