from __future__ import annotations

import fractions
import json
import logging

import pytest
from river import linear_model, preprocessing

from riverflow.errors import SnapshotError
from riverflow.metrics import InferenceMetrics, LearnerMetrics
from riverflow.online_model.snapshot import (
    MAGIC,
    REJECT_REASONS,
    SnapshotHeader,
    Trust,
    dumps,
    loads,
    read_header,
    verify,
)

KEY = b"k" * 16


def model():  # type: ignore[no-untyped-def]
    m = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    for i in range(50):
        m.learn_one({"x": float(i)}, i % 2 == 0)
    return m


def header(**over: object) -> SnapshotHeader:
    h = SnapshotHeader(
        "logreg",
        7,
        "classification",
        learned_count=50,
        positions={"predictions/0": 12, "feedback/1": 40},
    )
    for k, v in over.items():
        setattr(h, k, v)
    return h


def test_round_trip_keeps_header_and_model_behaviour() -> None:
    m = model()
    snap = loads(dumps(header(), m, key=KEY), Trust(KEY), task="classification", model="logreg")
    assert snap.header.version == 7 and snap.header.learned_count == 50
    assert snap.header.positions == {"predictions/0": 12, "feedback/1": 40}
    assert snap.model.predict_proba_one({"x": 3.0}) == m.predict_proba_one({"x": 3.0})
    assert snap.size > 0


def test_header_is_readable_without_unpickling() -> None:
    h, *_ = read_header(dumps(header(), object.__new__(object)))
    assert h.model == "logreg" and h.river_version and h.python_version


@pytest.mark.parametrize(
    ("blob_key", "load_key", "reason"),
    [(None, KEY, "unsigned"), (b"other" * 4, KEY, "bad_signature")],
)
def test_signature_is_enforced_when_a_key_is_set(
    blob_key: bytes | None, load_key: bytes, reason: str
) -> None:
    with pytest.raises(SnapshotError) as info:
        loads(dumps(header(), model(), key=blob_key), Trust(load_key))
    assert info.value.reason == reason


def test_a_key_wins_over_the_unsigned_opt_in() -> None:
    with pytest.raises(SnapshotError) as info:
        loads(dumps(header(), model()), Trust(KEY, allow_unsigned=True))
    assert info.value.reason == "unsigned"


def test_tampered_payload_is_refused_before_unpickling() -> None:
    blob = bytearray(dumps(header(), model(), key=KEY))
    blob[-5] ^= 0xFF
    with pytest.raises(SnapshotError) as info:
        loads(bytes(blob), Trust(KEY))
    assert info.value.reason == "bad_signature"


@pytest.mark.parametrize("blob_key", [None, KEY])
def test_without_a_key_nothing_is_loaded(blob_key: bytes | None) -> None:
    """Signed or not: a process with no key can verify nothing."""
    with pytest.raises(SnapshotError) as info:
        loads(dumps(header(), {"w": 1}, key=blob_key), Trust(None))
    assert info.value.reason == "unsigned"
    assert "no signing key" in str(info.value)


def test_the_opt_in_loads_unverified_and_warns_each_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    trust = Trust(None, allow_unsigned=True)
    with caplog.at_level(logging.WARNING, logger="riverflow.online_model.snapshot"):
        assert loads(dumps(header(), {"w": 1}), trust).model == {"w": 1}
        assert loads(dumps(header(version=8), {"w": 2}, key=KEY), trust).model == {"w": 2}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "logreg v7 unverified" in warnings[0] and "logreg v8 unverified" in warnings[1]


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"garbage",
        b"RFSNAP1\n\x00\x00\x00\x05{bad}",
        MAGIC + b"\x00\x00\x00\x02[]",  # signature length missing
    ],
)
def test_unreadable(blob: bytes) -> None:
    with pytest.raises(SnapshotError) as info:
        loads(blob, Trust(None, allow_unsigned=True))
    assert info.value.reason == "unreadable"


def frame(head: bytes, payload: bytes = b"") -> bytes:
    n = len(head).to_bytes(4, "big")
    return MAGIC + n + head + b"\x00\x00\x00\x00" + payload


@pytest.mark.parametrize(
    "fields",
    [
        {"version": "9"},
        {"version": 10**40},
        {"version": -1},
        {"version": True},
        {"version": 1.5},
        {"created_ts": 10**400},
        {"learned_count": None},
        {"model": 3},
        {"task": ["classification"]},
        {"task": "clustering"},  # not a Task
        {"positions": {"p/0": "12"}},
        {"positions": [1]},
        {"extra": "x"},
        {"unknown": 1},
    ],
)
def test_a_header_of_the_wrong_types_is_unreadable(fields: dict[str, object]) -> None:
    """The follower compares versions and computes ages with these values before anything
    else: a string version or a 400-digit timestamp must be a refusal, not a crash."""
    good = {"model": "logreg", "version": 1, "task": "classification"}
    with pytest.raises(SnapshotError) as info:
        read_header(frame(json.dumps({**good, **fields}).encode()))
    assert info.value.reason == "unreadable"


def test_deeply_nested_header_is_unreadable() -> None:
    with pytest.raises(SnapshotError) as info:
        read_header(frame(b"[" * 100_000 + b"]" * 100_000))
    assert info.value.reason == "unreadable"


def test_wrong_task_and_model_are_refused_before_the_signature() -> None:
    blob = dumps(header(), {"w": 1}, key=b"another key, not checked yet")
    with pytest.raises(SnapshotError) as info:
        verify(blob, Trust(KEY), task="regression")
    assert info.value.reason == "wrong_task"
    with pytest.raises(SnapshotError) as info:
        verify(blob, Trust(KEY), model="hst")
    assert info.value.reason == "wrong_model"


def test_a_forbidden_class_in_a_signed_snapshot_is_refused() -> None:
    with pytest.raises(SnapshotError) as info:
        loads(dumps(header(), {"w": fractions.Fraction(1, 3)}, key=KEY), Trust(KEY))
    assert info.value.reason == "forbidden_class"
    assert "fractions.Fraction" in str(info.value)


def test_both_workers_count_every_reason_from_zero() -> None:
    for metrics in (InferenceMetrics(), LearnerMetrics()):
        for reason in REJECT_REASONS:
            value = metrics.registry.get_sample_value(
                "riverflow_snapshot_rejected_total", {"reason": reason}
            )
            assert value == 0, (type(metrics).__name__, reason)
