"""The learner's checkpoint and resume rule, without Kafka: crashes at random points of a stream
and restarts from the last snapshot must learn every labelled event exactly once."""

from __future__ import annotations

import pickle
import random
from dataclasses import dataclass
from typing import Any

from riverflow.consumers.learner.checkpoint import Checkpoint, PartitionReplay, Replay, to_runs
from riverflow.consumers.learner.join_store import Side
from riverflow.consumers.learner.state import Learning, LearningConfig
from riverflow.metrics import LearnerMetrics
from riverflow.online_model.presets import resolve
from riverflow.online_model.snapshot import SnapshotHeader, Trust, dumps, loads
from riverflow.schemas import Feedback, Prediction


def test_runs() -> None:
    assert to_runs([]) == []
    assert to_runs([4]) == [[4, 5]]
    assert to_runs([1, 2, 3, 7, 9, 10]) == [[1, 4], [7, 8], [9, 11]]


def runs_one_by_one(offsets: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for offset in offsets:
        if runs and offset == runs[-1][1]:
            runs[-1][1] = offset + 1
        else:
            runs.append([offset, offset + 1])
    return runs


def test_runs_found_by_halving_are_the_runs_one_by_one() -> None:
    rng = random.Random(5)
    for _ in range(300):
        n, gap = rng.randint(0, 400), rng.choice([0.0, 0.001, 0.05, 0.5])
        offsets = sorted(rng.sample(range(10_000), n)) if gap == 0.5 else []
        if gap < 0.5:  # long runs with a few holes, as a learner's waiting offsets are
            offset = rng.randint(0, 100)
            for _ in range(n):
                offsets.append(offset)
                offset += 1 + (rng.randint(1, 50) if rng.random() < gap else 0)
        assert to_runs(offsets) == runs_one_by_one(offsets)
        assert to_runs(iter(offsets)) == runs_one_by_one(offsets)


def test_start_and_classification() -> None:
    cp = Checkpoint({"a/0": 20, "a/1": 8}, {"a/0": [[5, 7], [12, 13]]}, watermark=99)
    assert cp.start("a/0") == 5  # first waiting offset
    assert cp.start("a/1") == 8  # nothing waiting: the consumed position
    assert cp.start("b/0") is None  # unknown partition
    replay = cp.replay("a/0")
    got = {o: replay.classify(o) for o in (5, 6, 7, 11, 12, 13, 19, 20, 25)}
    assert got == {
        5: Replay.PENDING,
        6: Replay.PENDING,
        7: Replay.SKIP,
        11: Replay.SKIP,
        12: Replay.PENDING,
        13: Replay.SKIP,
        19: Replay.SKIP,
        20: Replay.LIVE,
        25: Replay.LIVE,
    }


def test_a_snapshot_during_the_rereading_keeps_what_was_not_reread() -> None:
    replay = Checkpoint({"a/0": 20}, {"a/0": [[5, 7], [12, 15]]}).replay("a/0")
    assert replay.unread() == [[5, 7], [12, 15]]
    for offset in (5, 6, 7, 8, 9, 10, 11, 12, 13):
        replay.classify(offset)
    assert replay.unread() == [[14, 15]]
    # 5, 6, 12 and 13 went back into the store; 22 is a live record waiting since
    cp = Checkpoint.capture({"a/0": 20}, {"a/0": [5, 6, 12, 13, 22]}, {"a/0": replay.unread()}, 7)
    assert cp.pending == {"a/0": [[5, 7], [12, 15], [22, 23]]}
    assert Checkpoint.capture({"a/0": 20}, {}, {"a/0": []}, 7).pending == {}


def test_checkpoint_travels_in_a_snapshot_header() -> None:
    cp = Checkpoint({"p/0": 10, "f/0": 4}, {"p/0": [[3, 5]]}, watermark=1234)
    header = SnapshotHeader(
        "m", 2, "classification", positions=cp.positions, extra=cp.header_extra()
    )
    back = Checkpoint.from_header(loads(dumps(header, None, b"k"), Trust(b"k")).header)
    assert back == cp
    assert Checkpoint.from_header(SnapshotHeader("m", 1, "classification")) == Checkpoint()


# -- crash and resume over a simulated stream ---------------------------------------------

TS0 = 1_700_000_000_000


def prediction(n: int) -> Prediction:
    return Prediction.model_validate(
        {
            "event_id": f"e{n}",
            "sensor_id": "s",
            "event_ts": TS0 + n,
            "predicted_ts": TS0 + n,
            "model": "counting",
            "model_version": 0,
            "prediction": True,
            "features": {"n": float(n)},
        }
    )


def feedback(n: int) -> Feedback:
    return Feedback.model_validate(
        {"event_id": f"e{n}", "sensor_id": "s", "ts": TS0 + n, "label": n % 3 == 0}
    )


@dataclass
class Snapshot:
    model: bytes
    learned: int
    checkpoint: Checkpoint


def make_stream(rng: random.Random, n: int) -> tuple[dict[str, list[Any]], set[int]]:
    """Two partitions per input; labels for 80% of events, some before their prediction,
    and 5% of predictions delivered twice (at-least-once inference)."""
    partitions: dict[str, list[Any]] = {"p/0": [], "p/1": [], "f/0": [], "f/1": []}
    labelled = set()
    for i in range(n):
        partitions[f"p/{i % 2}"].append(prediction(i))
        if rng.random() < 0.05:
            partitions[f"p/{i % 2}"].append(prediction(i))
    order = list(range(n))
    for j in range(len(order) - 1):  # labels come roughly in order, some early, some late
        if rng.random() < 0.3:
            k = min(len(order) - 1, j + rng.randrange(1, 40))
            order[j], order[k] = order[k], order[j]
    for i in order:
        if rng.random() < 0.8:
            partitions[f"f/{i % 2}"].append(feedback(i))
            labelled.add(i)
    return partitions, labelled


def consume(
    learning: Learning,
    partitions: dict[str, list[Any]],
    cursors: dict[str, int],
    replays: dict[str, PartitionReplay],
    positions: dict[str, int],
    rng: random.Random,
    limit: int | None,
) -> None:
    """Read ``limit`` records on from ``cursors`` like the learner's batch loop does, in a
    random interleaving of the partitions."""
    steps = 0
    while True:
        open_ = [k for k, records in partitions.items() if cursors[k] < len(records)]
        if not open_ or (limit is not None and steps >= limit):
            return
        key = rng.choice(open_)
        offset = cursors[key]
        cursors[key] += 1
        replay = replays.get(key)
        kind = replay.classify(offset) if replay else Replay.LIVE
        message = partitions[key][offset]
        if kind is not Replay.SKIP:
            if key.startswith("p"):
                learning.add_prediction(message, None, key, offset, kind)
            else:
                learning.add_feedback(message, None, key, offset)
        positions[key] = max(positions[key], offset + 1)
        if rng.random() < 0.1:  # end of a batch
            learning.expire()
        steps += 1


def snapshot(
    learning: Learning, positions: dict[str, int], replays: dict[str, PartitionReplay]
) -> Snapshot:
    cp = Checkpoint.capture(
        positions,
        {str(k): v for k, v in learning.store.pending_offsets().items()},
        {k: r.unread() for k, r in replays.items()},
        learning.store.watermark,
    )
    return Snapshot(pickle.dumps(learning.model), learning.learned, cp)


def start(snap: Snapshot | None) -> tuple[Learning, dict[str, int], dict[str, int], dict]:
    config = LearningConfig(
        ttl_ms=10**9, max_pending=10**6, window=100, detector="adwin", on_drift="alert"
    )

    def no_dead_letters(record: Any, exc: Exception) -> None:
        raise AssertionError(f"unexpected dead letter: {exc}")

    spec = resolve("tests.learner_models:counting")
    if snap is None:
        learning = Learning(spec, config, LearnerMetrics(), no_dead_letters)
        zero = {k: 0 for k in ("p/0", "p/1", "f/0", "f/1")}
        return learning, dict(zero), dict(zero), {}
    cp = snap.checkpoint
    learning = Learning(
        spec,
        config,
        LearnerMetrics(),
        no_dead_letters,
        model=pickle.loads(snap.model),
        learned=snap.learned,
        watermark=cp.watermark,
    )
    starts = {k: cp.start(k) or 0 for k in cp.positions}
    replays = {k: cp.replay(k) for k in cp.positions if starts[k] < cp.positions[k]}
    return learning, starts, dict(cp.positions), replays


def test_crashes_at_random_points_learn_each_label_exactly_once() -> None:
    for seed in range(8):
        rng = random.Random(seed)
        partitions, labelled = make_stream(rng, 600)
        snap: Snapshot | None = None
        for _ in range(4):  # run a while, snapshot, run on (lost), crash; restart
            learning, cursors, positions, replays = start(snap)
            consume(learning, partitions, cursors, replays, positions, rng, rng.randrange(50, 400))
            snap = snapshot(learning, positions, replays)
            consume(learning, partitions, cursors, replays, positions, rng, rng.randrange(0, 200))
        learning, cursors, positions, replays = start(snap)
        consume(learning, partitions, cursors, replays, positions, rng, None)
        seen = learning.model.seen
        assert sorted(seen) == sorted(labelled), f"seed {seed}"
        assert learning.learned == len(labelled)
        assert learning.store.pending(Side.FEEDBACK) == 0
