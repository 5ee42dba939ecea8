"""No input can make a decoder, or the learner's handling of a decoded pair, raise anything but a
refusal: property tests over arbitrary bytes and JSON, and a named corpus of known-hostile input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from riverflow.consumers.learner.checkpoint import Replay
from riverflow.consumers.learner.state import (
    Learning,
    LearningConfig,
    check_label,
    check_prediction,
)
from riverflow.errors import MAX_MESSAGE_CHARS, InvalidEvent, describe
from riverflow.metrics import LearnerMetrics
from riverflow.online_model.presets import resolve
from riverflow.schemas import REASONS, Decoder, Feedback, Prediction, Reading, fast_reading
from tests.hostile import HARMLESS_NAMES, Messages, corpus, duplicate_keys

NOW = 1_800_000_000_000
# Generous limits, so generated input reaches the checks after the size check.
ROOMY = Decoder(max_features=64, max_message_bytes=4 * 1024 * 1024, max_ts_skew_s=86_400)
STRICT = Decoder(max_features=4, max_message_bytes=1024, max_ts_skew_s=60)

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decoders(raw: bytes) -> list[Any]:
    """Every decoder entry point, each as a thunk."""
    calls: list[Any] = []
    for d in (ROOMY, STRICT):
        calls += [
            lambda d=d: d.reading(raw, NOW),
            lambda d=d: d.feedback(raw, NOW),
            lambda d=d: d.feedback(raw, None),
            lambda d=d: d.prediction(raw),
        ]
    return calls


def assert_refusal_or_valid(raw: bytes) -> None:
    for call in decoders(raw):
        try:
            value = call()
        except InvalidEvent as exc:
            assert exc.reason in REASONS and exc.reason != "internal", exc
            assert exc.stage in ("decode", "validate")
            assert len(str(exc)) <= MAX_MESSAGE_CHARS
            continue
        assert isinstance(value, Reading | Feedback | Prediction)
        assert_sane(value)


def assert_sane(value: Any) -> None:
    """What the rest of riverflow relies on in a decoded message: int64 times, finite floats."""
    times = [value.event_ts, value.predicted_ts] if isinstance(value, Prediction) else [value.ts]
    assert all(0 <= t < 2**63 for t in times)
    assert all(isinstance(v, float) and abs(v) < float("inf") for v in _floats(value))
    json.dumps(value.model_dump(), allow_nan=False)  # and it can be written out again


def _floats(value: Any) -> list[float]:
    if isinstance(value, Reading | Prediction):
        return [*value.features.values(), *(getattr(value, "scores", None) or {}).values()]
    return [value.label] if isinstance(value.label, float) else []


# -- properties ------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # unbounded: 400-digit ints included
    | st.floats()  # NaN and infinities are written as JSON's non-standard tokens
    | st.text()
    | st.datetimes().map(lambda d: d.isoformat())
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
# Integers of up to 4,000 digits (json.dumps refuses more), both signs, and the int64 edges.
# Hypothesis favours small integers, so the exponents past int64 and float range are named.
exponents = st.sampled_from([19, 309, 400, 4000]) | st.integers(1, 4000)
huge = exponents.map(lambda n: 10**n) | exponents.map(lambda n: -(10**n))
numbers = (
    st.integers()
    | st.floats()
    | huge
    | st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 1e308, 5e-324])
)
names = st.text(max_size=300)
ids = st.text(min_size=1, max_size=20)
times = (
    st.integers(NOW - 10**8, NOW + 10**8)
    | numbers
    | st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())
    | st.text()
)
features = st.dictionaries(names, numbers | json_values, max_size=6)
hostile = huge | numbers | times | features | names | json_values

finite = st.floats(allow_nan=False, allow_infinity=False)
labels = st.booleans() | st.integers(-(2**63), 2**63 - 1) | finite | st.text(max_size=20)
valid_features = st.dictionaries(ids, finite, max_size=4)
near_now = st.integers(NOW - 10_000, NOW + 10_000)
valid_messages = (
    st.fixed_dictionaries(
        {"event_id": ids, "sensor_id": ids, "ts": near_now, "features": valid_features}
    )
    | st.fixed_dictionaries({"event_id": ids, "sensor_id": ids, "ts": near_now, "label": labels})
    | st.fixed_dictionaries(
        {
            "event_id": ids,
            "sensor_id": ids,
            "event_ts": near_now,
            "predicted_ts": near_now,
            "model": ids,
            "model_version": st.integers(0, 2**63 - 1),
            "prediction": labels | st.none(),
            "scores": st.none() | st.dictionaries(ids, finite, max_size=3),
            "features": valid_features,
        }
    )
)


@st.composite
def message_like(draw: st.DrawFn) -> dict[str, Any]:
    """A valid message with one or two fields made hostile (or dropped), so that generation
    reaches every check: a ts is only skew-checked once everything else is valid."""
    message: dict[str, Any] = draw(valid_messages)
    for _ in range(draw(st.integers(1, 2))):
        field = draw(st.sampled_from(sorted(message)))
        if draw(st.booleans()):
            message[field] = draw(hostile)
        else:
            del message[field]
            if not message:
                break
    return message


NUMERIC = ("ts", "event_ts", "predicted_ts", "model_version", "label", "prediction")


@PROPERTY
@given(valid_messages, numbers | times, st.data())
def test_any_number_in_any_numeric_field_decodes_or_is_refused(
    message: dict[str, Any], number: Any, data: st.DataObject
) -> None:
    """Huge, tiny, negative, non-finite or ISO-odd: in a field, a feature or a score."""
    fields = [f for f in NUMERIC if f in message]
    maps = [m for m in ("features", "scores") if message.get(m) is not None]
    where = data.draw(st.sampled_from(fields + maps))
    if where in maps:
        message[where][data.draw(ids)] = number
    else:
        message[where] = number
    assert_refusal_or_valid(json.dumps(message).encode())


@PROPERTY
@given(st.binary(max_size=2048))
def test_any_bytes_decode_or_are_refused(raw: bytes) -> None:
    assert_refusal_or_valid(raw)


@PROPERTY
@given(json_values)
def test_any_json_value_decodes_or_is_refused(value: Any) -> None:
    assert_refusal_or_valid(json.dumps(value).encode())


@PROPERTY
@given(message_like())
def test_any_message_shaped_json_decodes_or_is_refused(value: dict[str, Any]) -> None:
    assert_refusal_or_valid(json.dumps(value).encode())


@PROPERTY
@given(message_like(), st.binary(min_size=1, max_size=8), st.integers(min_value=0))
def test_corrupted_messages_decode_or_are_refused(
    value: dict[str, Any], noise: bytes, at: int
) -> None:
    raw = json.dumps(value).encode()
    i = at % (len(raw) + 1)
    assert_refusal_or_valid(raw[:i] + noise + raw[i:])


def assert_fast_path_agrees(raw: bytes) -> bool:
    """What the fast path builds, pydantic builds too; returns whether it took the bytes."""
    fast = fast_reading(raw)
    if fast is None:
        return False
    built = Reading.model_validate_json(raw)
    assert fast == built
    assert fast.model_dump_json() == built.model_dump_json()  # -0.0 and field order too
    assert all(type(x) is float for x in fast.features.values())
    return True


@PROPERTY
@given(valid_messages | message_like())
def test_the_fast_path_builds_the_reading_pydantic_builds(value: dict[str, Any]) -> None:
    assert_fast_path_agrees(json.dumps(value).encode())


@PROPERTY
@given(message_like(), st.binary(min_size=1, max_size=8), st.integers(min_value=0))
def test_the_fast_path_agrees_on_corrupted_messages(
    value: dict[str, Any], noise: bytes, at: int
) -> None:
    raw = json.dumps(value).encode()
    i = at % (len(raw) + 1)
    assert_fast_path_agrees(raw[:i] + noise + raw[i:])


@pytest.mark.parametrize(
    "raw",
    [
        b'{"event_id":"e","sensor_id":"s","ts":1,"features":{"x":1.5,"y":2}}',
        b'{"features":{},"ts":0,"sensor_id":"s","event_id":"e","event_id":"f"}',
        b'{"event_id":"\\u00e9","sensor_id":"s","ts":9223372036854775807,"features":{"-":-0.0}}',
    ],
)
def test_usual_readings_take_the_fast_path(raw: bytes) -> None:
    assert assert_fast_path_agrees(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"event_id":"e","sensor_id":"s","ts":1,"features":{"x":1},"extra":[[[]]]}',
        b'{"event_id":"e","sensor_id":"s","ts":"2024-01-01T00:00:00","features":{}}',
        b'{"event_id":"e","sensor_id":"s","ts":1,"features":{"x":true}}',
        b'{"event_id":"e","sensor_id":"s","ts":1,"features":{"x":9007199254740993}}',
        b'{"event_id":"","sensor_id":"s","ts":1,"features":{}}',
        b'{"event_id":"e","sensor_id":"s","ts":-1,"features":{}}',
        b'{"event_id":"e","sensor_id":"s","ts":1,"features":{"x":NaN}}',
    ],
)
def test_anything_unusual_is_left_to_pydantic(raw: bytes) -> None:
    assert fast_reading(raw) is None


# -- the learner on any decodable pair --------------------------------------------------------


class Letters(list[InvalidEvent]):
    def __call__(self, record: Any, exc: InvalidEvent) -> None:
        self.append(exc)


@pytest.mark.parametrize("preset", ["logreg", "hoeffding", "linreg", "htr", "hst"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pairs=st.lists(
        st.tuples(
            st.dictionaries(st.text(min_size=1, max_size=8), finite, min_size=1, max_size=4),
            labels,
            labels | st.none(),
            st.none() | st.dictionaries(st.text(max_size=5), finite, max_size=3),
            st.integers(0, 2**63 - 1),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_learning_any_decodable_pair_never_raises(preset: str, pairs: list[Any]) -> None:
    spec = resolve(preset)
    config = LearningConfig(
        ttl_ms=60_000, max_pending=100, window=10, detector="adwin", on_drift="reset"
    )
    letters = Letters()
    learning = Learning(spec, config, LearnerMetrics(), letters)
    fed = 0
    for n, (x, y, served, scores, ts) in enumerate(pairs):
        prediction = {
            "event_id": f"e{n}",
            "sensor_id": "s",
            "event_ts": ts,
            "predicted_ts": ts,
            "model": preset,
            "model_version": 0,
            "prediction": served,
            "scores": scores,
            "features": x,
        }
        feedback = {"event_id": f"e{n}", "sensor_id": "s", "ts": ts, "label": y}
        try:
            p = ROOMY.prediction(json.dumps(prediction).encode())
            f = ROOMY.feedback(json.dumps(feedback).encode(), None)
            check_prediction(spec.task, p)
            check_label(spec.task, f.label)
        except InvalidEvent:
            continue
        learning.add_prediction(p, "p", "p/0", n, Replay.LIVE)
        learning.add_feedback(f, "f", "f/0", n)
        fed += 1
    learning.expire()
    learning.export()
    assume(fed)
    assert all(e.reason in ("model_error", "internal") and e.stage == "learn" for e in letters)


# -- the named corpus -------------------------------------------------------------------------


CORPUS = corpus(NOW)
_MESSAGES = Messages(NOW)
reading, feedback = _MESSAGES.reading, _MESSAGES.feedback
DEFAULT = Decoder(max_features=256, max_message_bytes=65_536, max_ts_skew_s=86_400)


def refusal(decoder: Decoder, kind: str, raw: bytes | None) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        if kind == "prediction":
            decoder.prediction(raw)
        else:
            getattr(decoder, kind)(raw, NOW)
    assert len(str(info.value)) <= MAX_MESSAGE_CHARS
    return info.value


@pytest.mark.parametrize("name", list(CORPUS))
def test_hostile_input_is_refused_with_its_reason(name: str) -> None:
    kind, raw, reason, stage = CORPUS[name]
    exc = refusal(DEFAULT, kind, raw)
    assert (exc.reason, exc.stage) == (reason, stage), str(exc)


@pytest.mark.parametrize(
    "field", ["event_id", "sensor_id", "feature name", "many long feature names"]
)
def test_megabyte_fields_under_a_raised_size_limit_are_refused_with_a_short_reason(
    field: str,
) -> None:
    big = "x" * 1_000_000
    raw = {
        "event_id": reading(event_id=big),
        "sensor_id": reading(sensor_id=big),
        "feature name": reading(features={big: 1.0}),
        "many long feature names": reading(features={big[:300_000] + str(i): 1 for i in range(9)}),
    }[field]
    exc = refusal(ROOMY, "reading", raw)
    assert (exc.reason, exc.stage) == ("schema", "validate")


def test_hostile_but_harmless_feature_names_are_kept_as_they_are() -> None:
    assert ROOMY.reading(reading(features=HARMLESS_NAMES), NOW).features == HARMLESS_NAMES


def test_duplicate_keys_keep_the_last_value_as_json_loads_does() -> None:
    raw = duplicate_keys(NOW, "e1")
    decoded = ROOMY.reading(raw, NOW)
    assert decoded.features == json.loads(raw)["features"] == {"a": 2.0}
    assert decoded.event_id == "e1"


def test_an_integer_beyond_int64_that_a_float_holds_becomes_that_float() -> None:
    assert ROOMY.feedback(feedback(label=10**20), NOW).label == 1e20


def test_anything_else_a_decoder_raises_is_the_internal_refusal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: Decoder, ts: int, now_ms: int) -> None:
        raise RuntimeError("x" * 10_000)

    monkeypatch.setattr(Decoder, "_check_ts", broken)
    with pytest.raises(InvalidEvent) as info:
        ROOMY.reading(reading(), NOW)
    assert (info.value.reason, info.value.stage) == ("internal", "validate")
    assert str(info.value).startswith("unexpected RuntimeError: xxx")
    assert len(str(info.value)) == MAX_MESSAGE_CHARS


def test_describe_survives_an_exception_that_cannot_be_printed() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            return str(10**5000)  # ValueError: exceeds the limit for int string conversion

    assert describe(Unprintable()) == "Unprintable: (message unprintable)"
