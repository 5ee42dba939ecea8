"""The snapshot follower's decisions: which snapshots an inference worker swaps in."""

from __future__ import annotations

from typing import Any

import pytest
from river import linear_model, preprocessing, tree

from consumers.model_follower import ModelFollower, ServedModel
from online_model.snapshot import SnapshotHeader, dumps

KEY = b"signing-key"


def follower(key: bytes | None = KEY, task: str = "classification") -> ModelFollower:
    initial = ServedModel(linear_model.LogisticRegression(), 0, created_ts=1_000)
    return ModelFollower("logreg", task, key, initial)


def snapshot(
    version: int,
    *,
    key: bytes | None = KEY,
    model: str = "logreg",
    task: str = "classification",
    estimator: Any = None,
    created_ts: int = 5_000,
) -> bytes:
    header = SnapshotHeader(model, version, task, created_ts=created_ts, learned_count=7 * version)
    est = estimator if estimator is not None else linear_model.LogisticRegression()
    return dumps(header, est, key=key)


def test_a_newer_signed_snapshot_is_swapped_in_with_its_header() -> None:
    f = follower()
    verdict = f.offer(snapshot(3, created_ts=42_000))
    assert verdict.action == "swap"
    assert (f.current.version, f.current.created_ts, f.current.learned_count) == (3, 42_000, 21)
    assert isinstance(f.current.model, linear_model.LogisticRegression)


def test_a_pipeline_snapshot_is_accepted() -> None:
    f = follower()
    pipeline = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    assert f.offer(snapshot(1, estimator=pipeline)).action == "swap"


@pytest.mark.parametrize("version", [2, 1, 0])
def test_a_snapshot_not_newer_is_ignored_not_rejected(version: int) -> None:
    f = follower()
    f.offer(snapshot(2))
    before = f.current
    verdict = f.offer(snapshot(version))
    assert (verdict.action, verdict.reason) == ("ignore", "not_newer")
    assert f.current is before


def test_an_old_snapshot_is_ignored_before_its_signature_is_checked() -> None:
    f = follower()
    f.offer(snapshot(5))
    assert f.offer(snapshot(4, key=b"forged")).action == "ignore"


@pytest.mark.parametrize(
    ("blob", "reason"),
    [
        (snapshot(1, key=None), "unsigned"),
        (snapshot(1, key=b"another-key"), "bad_signature"),
        (b"definitely not a snapshot", "unreadable"),
        (snapshot(1)[:-5], "bad_signature"),  # truncated payload no longer matches its HMAC
        (snapshot(1, task="regression"), "wrong_task"),
        (snapshot(1, model="hoeffding"), "wrong_model"),
    ],
)
def test_bad_snapshots_are_rejected_and_the_model_kept(blob: bytes, reason: str) -> None:
    f = follower()
    kept = f.current
    verdict = f.offer(blob)
    assert (verdict.action, verdict.reason) == ("reject", reason)
    assert f.current is kept
    assert verdict.message


def test_an_estimator_that_contradicts_its_header_is_wrong_task() -> None:
    f = follower()
    verdict = f.offer(snapshot(1, estimator=tree.HoeffdingTreeRegressor()))
    assert (verdict.action, verdict.reason) == ("reject", "wrong_task")
    assert "regression" in verdict.message and f.current.version == 0


def test_a_pickle_that_is_no_estimator_is_wrong_task() -> None:
    f = follower()
    verdict = f.offer(snapshot(1, estimator={"weights": [1, 2]}))
    assert (verdict.action, verdict.reason) == ("reject", "wrong_task")


def test_without_a_key_unsigned_snapshots_are_accepted() -> None:
    f = follower(key=None)
    assert f.offer(snapshot(1, key=None)).action == "swap"
    assert f.current.version == 1


def test_a_tombstone_keeps_the_model() -> None:
    f = follower()
    f.offer(snapshot(1))
    kept = f.current
    verdict = f.offer(None)
    assert (verdict.action, verdict.reason) == ("ignore", "tombstone")
    assert f.current is kept
