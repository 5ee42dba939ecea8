from __future__ import annotations

import pytest
from river import linear_model, preprocessing

from online_model.snapshot import SnapshotHeader, dumps, loads, read_header
from riverflow.errors import SnapshotError


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
    snap = loads(dumps(header(), m, key=b"k"), key=b"k", task="classification", model="logreg")
    assert snap.header.version == 7 and snap.header.learned_count == 50
    assert snap.header.positions == {"predictions/0": 12, "feedback/1": 40}
    assert snap.model.predict_proba_one({"x": 3.0}) == m.predict_proba_one({"x": 3.0})
    assert snap.size > 0


def test_header_is_readable_without_unpickling() -> None:
    h, *_ = read_header(dumps(header(), object.__new__(object)))
    assert h.model == "logreg" and h.river_version and h.python_version


@pytest.mark.parametrize(
    ("blob_key", "load_key", "reason"),
    [(None, b"k", "unsigned"), (b"other", b"k", "bad_signature")],
)
def test_signature_is_enforced_when_a_key_is_set(
    blob_key: bytes | None, load_key: bytes, reason: str
) -> None:
    with pytest.raises(SnapshotError) as info:
        loads(dumps(header(), model(), key=blob_key), key=load_key)
    assert info.value.reason == reason


def test_tampered_payload_is_refused_before_unpickling() -> None:
    blob = bytearray(dumps(header(), model(), key=b"k"))
    blob[-5] ^= 0xFF
    with pytest.raises(SnapshotError) as info:
        loads(bytes(blob), key=b"k")
    assert info.value.reason == "bad_signature"


def test_unsigned_is_accepted_without_a_key() -> None:
    assert loads(dumps(header(), {"w": 1})).model == {"w": 1}


@pytest.mark.parametrize("blob", [b"", b"garbage", b"RFSNAP1\n\x00\x00\x00\x05{bad}"])
def test_unreadable(blob: bytes) -> None:
    with pytest.raises(SnapshotError) as info:
        loads(blob)
    assert info.value.reason == "unreadable"


def test_wrong_task_and_model_are_refused() -> None:
    blob = dumps(header(), {"w": 1})
    with pytest.raises(SnapshotError) as info:
        loads(blob, task="regression")
    assert info.value.reason == "wrong_task"
    with pytest.raises(SnapshotError) as info:
        loads(blob, model="hst")
    assert info.value.reason == "wrong_model"
