from __future__ import annotations

import json
import math

import pytest

from riverflow.errors import InvalidEvent
from riverflow.schemas import Decoder, Prediction, Reading, dumps

NOW = 1_800_000_000_000


@pytest.fixture
def decoder() -> Decoder:
    return Decoder(max_features=4, max_message_bytes=512, max_ts_skew_s=60)


def reading(**over: object) -> bytes:
    value = {"event_id": "e1", "sensor_id": "s1", "ts": NOW, "features": {"a": 1.5, "b": 2}}
    value.update(over)
    return json.dumps(value).encode()


def feedback(**over: object) -> bytes:
    value = {"event_id": "e1", "sensor_id": "s1", "ts": NOW, "label": True}
    value.update(over)
    return json.dumps(value).encode()


def reason(fn, *args: object) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidEvent) as info:
        fn(*args)
    return info.value.reason, info.value.stage


def test_good_reading_is_decoded_with_float_features(decoder: Decoder) -> None:
    r = decoder.reading(reading(), NOW)
    assert r == Reading(event_id="e1", sensor_id="s1", ts=NOW, features={"a": 1.5, "b": 2.0})
    assert all(isinstance(v, float) for v in r.features.values())


def test_unknown_fields_are_ignored(decoder: Decoder) -> None:
    assert decoder.reading(reading(extra="x"), NOW).event_id == "e1"


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2027-01-15T08:00:00Z", NOW),
        ("2027-01-15T08:00:00+00:00", NOW),
        ("2027-01-15T10:00:00+02:00", NOW),
        ("2027-01-15T08:00:00", NOW),  # naive is UTC
        ("2027-01-15T08:00:00.250Z", NOW + 250),
    ],
)
def test_iso_8601_ts_is_accepted_and_becomes_epoch_ms(ts: str, expected: int) -> None:
    d = Decoder(max_features=4, max_message_bytes=512, max_ts_skew_s=10**9)
    assert d.reading(reading(ts=ts), NOW).ts == expected


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"not json", "not_json"),
        (b'{"event_id": "e1"', "not_json"),
        (b"\xff\xfe", "not_json"),
        (b"[]", "schema"),
        (b"null", "schema"),
        (reading(event_id=""), "schema"),
        (reading(event_id=None), "schema"),
        (reading(sensor_id=7), "schema"),
        (reading(features=[1, 2]), "schema"),
        (reading(features={"a": "1.5"}), "schema"),
        (reading(features={"a": True}), "schema"),
        (reading(features={"a": None}), "schema"),
        (reading(features={"": 1.0}), "schema"),
        (reading(ts="yesterday"), "schema"),
        (reading(ts=True), "schema"),
        (reading(ts=-5), "schema"),
        (json.dumps({"event_id": "e", "sensor_id": "s", "ts": NOW}).encode(), "schema"),
        (b'{"event_id":"e","sensor_id":"s","ts":1,"features":{"a":NaN}}', "non_finite"),
        (b'{"event_id":"e","sensor_id":"s","ts":1,"features":{"a":Infinity}}', "non_finite"),
        (b'{"event_id":"e","sensor_id":"s","ts":1,"features":{"a":-Infinity}}', "non_finite"),
        (b'{"event_id":"e","sensor_id":"s","ts":1,"features":{"a":1e400}}', "non_finite"),
        (reading(features={f"f{i}": 1.0 for i in range(5)}), "too_many_features"),
        (reading(ts=NOW - 61_000), "ts_skew"),
        (reading(ts=NOW + 61_000), "ts_skew"),
        (reading(pad="x" * 600), "oversize"),
    ],
)
def test_bad_readings_are_refused_with_a_reason(decoder: Decoder, raw: bytes, why: str) -> None:
    got, stage = reason(decoder.reading, raw, NOW)
    assert got == why
    assert stage == ("decode" if why == "not_json" else "validate")


def test_tombstone_is_refused(decoder: Decoder) -> None:
    assert reason(decoder.reading, None, NOW)[0] == "schema"


def test_skew_edge_is_inclusive(decoder: Decoder) -> None:
    assert decoder.reading(reading(ts=NOW - 60_000), NOW).ts == NOW - 60_000


def test_reason_text_names_the_field(decoder: Decoder) -> None:
    with pytest.raises(InvalidEvent, match=r"features\.a"):
        decoder.reading(b'{"event_id":"e","sensor_id":"s","ts":1,"features":{"a":NaN}}', NOW)


@pytest.mark.parametrize("label", [True, False, 0, 3, "cat", 2.5])
def test_feedback_labels_keep_their_type(decoder: Decoder, label: object) -> None:
    fb = decoder.feedback(feedback(label=label), NOW)
    assert fb.label == label and type(fb.label) is type(label)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (feedback(label=None), "schema"),
        (feedback(label=[1]), "schema"),
        (b'{"event_id":"e","sensor_id":"s","ts":1800000000000,"label":NaN}', "non_finite"),
        (feedback(ts=NOW + 3_600_000), "ts_skew"),
        (json.dumps({"event_id": "e", "ts": NOW, "label": 1}).encode(), "schema"),
    ],
)
def test_bad_feedback_is_refused(decoder: Decoder, raw: bytes, why: str) -> None:
    assert reason(decoder.feedback, raw, NOW)[0] == why


def test_prediction_round_trip_and_no_skew_check(decoder: Decoder) -> None:
    value = {
        "event_id": "e1",
        "sensor_id": "s1",
        "event_ts": 5,
        "predicted_ts": 6,
        "model": "logreg",
        "model_version": 3,
        "prediction": True,
        "scores": {"True": 0.7, "False": 0.3},
        "features": {"a": 1.0},
    }
    p = decoder.prediction(dumps(value))
    assert p == Prediction(**value)  # type: ignore[arg-type]


def test_dumps_refuses_nan() -> None:
    with pytest.raises(ValueError):
        dumps({"x": math.nan})
