"""Operators' records: pins and unpins as an inference worker follows them, derived versions,
payload splitting and the version checks."""

from __future__ import annotations

import pickle

import pytest
from river import linear_model

from riverflow.errors import SnapshotError
from riverflow.online_model.operations import (
    compatibility,
    derive,
    kind_of,
    pin_record,
    split_payload,
    unpin_record,
)
from riverflow.online_model.snapshot import RIVER_VERSION, SnapshotHeader, dumps, read_header
from tests.unit.test_inference_follower import KEY, follower, snapshot


def test_a_pin_holds_the_served_version_until_unpinned() -> None:
    f = follower()
    assert f.offer(snapshot(3)).action == "swap"
    assert f.offer(pin_record(snapshot(2), KEY, now_ms=10)).action == "swap"
    assert (f.current.version, f.pinned is not None) == (2, True)
    held = f.offer(snapshot(4))  # the learner goes on publishing: followed, not served
    assert (held.action, held.reason, f.current.version, f.latest.version) == (
        "ignore",
        "pinned",
        2,
        4,
    )
    assert f.offer(unpin_record("logreg", "classification", KEY, now_ms=20)).action == "swap"
    assert (f.current.version, f.pinned) == (4, None)


def test_pins_that_do_not_verify_or_are_stale_change_nothing() -> None:
    f = follower()
    f.offer(snapshot(3))
    forged = f.offer(pin_record(snapshot(1, key=b"x" * 16), b"x" * 16, now_ms=10))
    assert (forged.action, forged.reason, f.current.version) == ("reject", "bad_signature", 3)
    unsigned_unpin = unpin_record("logreg", "classification", None, now_ms=11)
    assert f.offer(unsigned_unpin).reason == "unsigned"
    f.offer(pin_record(snapshot(2), KEY, now_ms=30))
    # a replayed older pin (or unpin) is passed over: the newest decision stands
    assert f.offer(unpin_record("logreg", "classification", KEY, now_ms=20)).reason == "stale"
    assert f.current.version == 2
    # deleting the model removes its pin too
    assert f.offer(None).action == "swap" and f.current.version == 3 and f.pinned is None


def test_derive_keeps_the_lineage_and_takes_the_estimator() -> None:
    src = dumps(SnapshotHeader("m", 2, "classification", learned_count=5), {"w": 1}, KEY, [1])
    base_header = SnapshotHeader(
        "m",
        7,
        "classification",
        learned_count=70,
        positions={"p/0": 9},
        extra={"watermark": 3, "operation": {"kind": "import"}},
    )
    base = dumps(base_header, {"w": 2}, KEY, evaluation=["base"])
    new = derive(src, base, 8, {"kind": "rollback", "from_version": 2}, KEY, now_ms=1)
    header, _, _, payload = read_header(new)
    model, evaluation = split_payload(payload)
    assert pickle.loads(model) == {"w": 1} and pickle.loads(evaluation) == ["base"]
    assert (header.version, header.learned_count, header.positions) == (8, 70, {"p/0": 9})
    assert header.extra == {
        "watermark": 3,
        "operation": {"kind": "rollback", "from_version": 2, "at": 1},
    }
    assert kind_of(header) == "operation"
    fresh = read_header(derive(src, None, 1, {"kind": "import"}, KEY, now_ms=1, name="n"))[0]
    assert (fresh.model, fresh.positions, fresh.learned_count) == ("n", {}, 5)


def test_split_payload_refuses_what_is_not_a_pickle() -> None:
    with pytest.raises(SnapshotError, match="not a pickle|no complete pickle"):
        split_payload(b"\x80\x05garbage")
    assert split_payload(pickle.dumps(linear_model.LinearRegression()))[1] == b""


def test_other_river_minor_is_refused_other_patch_or_python_warned() -> None:
    major, minor, *_ = RIVER_VERSION.split(".")
    other_minor = SnapshotHeader("m", 1, "regression", river_version=f"{major}.{int(minor) + 1}.0")
    refusal, _ = compatibility(other_minor)
    assert refusal is not None and "retrain it here" in refusal
    patch = SnapshotHeader(
        "m", 1, "regression", river_version=f"{major}.{minor}.999", python_version="3.0.1"
    )
    refusal, warnings = compatibility(patch)
    assert refusal is None and len(warnings) == 2
    assert compatibility(SnapshotHeader("m", 1, "regression")) == (None, [])
