"""The mapping file (validation, messages naming line and key) and the extractors it compiles
into: paths, arrays, globs, categories, optional paths, time formats, defaults, label maps, and
a refusal naming the path for every record they cannot read."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riverflow.errors import MAX_MESSAGE_CHARS, ConfigError, InvalidEvent
from riverflow.extract import FeedbackExtractor, MappedReading, ReadingExtractor
from riverflow.mapping import load_mapping, parse_mapping
from riverflow.schemas import REASONS
from riverflow.transport.base import Message

TELEMETRY = """\
[readings]
topic = "telemetry"
event_id = "msg_id"
entity = "device.id"
time = "measured_at"
time_format = "auto"
features = ["metrics.temp_c", "metrics.vibration", "metrics.rpm"]
categorical = ["status", "device.site"]
optional = ["metrics.rpm"]

[feedback]
topic = "outcomes"
event_id = "ref"
label = "outcome"
labels = { fault = true, ok = false }
time = "at"
"""
AT = datetime(2026, 12, 3, 7, 0, 0, 123000, tzinfo=UTC)
AT_MS = int(AT.timestamp() * 1000)
READING = {
    "msg_id": "m-1",
    "device": {"id": "pump-7", "site": "north"},
    "measured_at": "2026-12-03T07:00:00.123Z",
    "metrics": {"temp_c": 71.2, "vibration": 0.031, "rpm": 1480},
    "status": "running",
}


def record(value: Any, key: bytes | None = b"k1", ts: int = AT_MS, offset: int = 9) -> Message:
    raw = value if isinstance(value, bytes) or value is None else json.dumps(value).encode()
    return Message("telemetry", 2, offset, key, raw, (), ts)


def readings(text: str = TELEMETRY, max_features: int = 16) -> ReadingExtractor:
    return ReadingExtractor(parse_mapping(text, "m.toml").readings, max_features, 65536, 86400)


def refusal(extractor: ReadingExtractor, value: Any, **kw: Any) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        extractor.reading(record(value, **kw), AT_MS)
    return caught.value


# -- the file ------------------------------------------------------------------------------


def test_the_issues_mapping_loads_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.toml"
    path.write_text(TELEMETRY)
    m = load_mapping(path)
    assert m.readings.topic == "telemetry" and m.readings.optional == ["metrics.rpm"]
    assert m.feedback is not None and m.feedback.labels == {"fault": True, "ok": False}


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('[readings]\nfeatures = ["a"]\nevnt_id = "x"\n', 3, ["readings.evnt_id", "event_id"]),
        ('[readings]\nfeatures = ["a"]\ntime_format = "epoch_min"\n', 3, ["time_format"]),
        ('[readings]\nfeatures = "a"\n', 2, ["readings.features", "list"]),
        ('[readings]\nfeatures = ["a..b"]\n', 2, ["readings.features.0"]),
        ('[readings]\nfeatures = ["a"]\n\n[feedback]\nlabel = "x"\n', 4, ["feedback.event_id"]),
        ('[readings]\nfeatures = ["a"]\n[feedbak]\nlabel = 1\n', 3, ["feedbak", "feedback"]),
        ('[readings]\nfeatures = ["a"]\noptional = ["b"]\n', 1, ["optional", "b"]),
        (
            '[readings]\nfeatures = ["a"]\n[feedback]\nevent_id = "r"\nlabel = "o"\n'
            "labels = { fault = [1] }\n",
            6,
            ["feedback.labels.fault"],
        ),
    ],
)
def test_a_wrong_key_or_type_names_the_line_and_the_key(
    text: str, line: int, words: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_mapping(text, "m.toml")
    message = str(caught.value)
    assert f"line {line}:" in message and "m.toml" in message, message
    for word in words:
        assert word in message, message


def test_toml_syntax_errors_say_where() -> None:
    with pytest.raises(ConfigError, match=r"not valid TOML.*line 3"):
        parse_mapping('[readings]\nfeatures = ["a"]\ntime =\n', "m.toml")


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the mapping"):
        load_mapping(tmp_path / "absent.toml")


# -- readings ------------------------------------------------------------------------------


def test_the_telemetry_record_is_read_as_the_issue_says() -> None:
    got = readings().reading(record(READING), AT_MS)
    assert isinstance(got, MappedReading)
    assert (got.event_id, got.sensor_id, got.ts) == ("m-1", "pump-7", AT_MS)
    assert got.features == {
        "metrics.temp_c": 71.2,
        "metrics.vibration": 0.031,
        "metrics.rpm": 1480.0,
    }
    assert got.categories == {"status": "running", "device.site": "north"}
    assert got.x == {**got.features, **got.categories}
    assert got.source == {"key": "k1", "topic": "telemetry", "partition": 2, "offset": 9}


def test_optional_paths_may_be_missing_or_null_the_rest_are_required() -> None:
    ex = readings()
    for rpm in ({}, {"rpm": None}):
        value = {**READING, "metrics": {"temp_c": 1, "vibration": 2, **rpm}}
        assert ex.reading(record(value), AT_MS).features == {
            "metrics.temp_c": 1.0,
            "metrics.vibration": 2.0,
        }
    error = refusal(ex, {**READING, "metrics": {"rpm": 1}})
    assert error.reason == "schema"
    assert "metrics.temp_c: missing" in str(error) and "metrics.vibration: missing" in str(error)


def test_defaults_event_id_entity_and_time_come_from_the_record() -> None:
    ex = readings('[readings]\nfeatures = ["v"]\n')
    got = ex.reading(record({"v": 1}, key=b"pump-9", ts=AT_MS, offset=41), AT_MS)
    assert (got.event_id, got.sensor_id, got.ts) == ("telemetry-2-41", "pump-9", AT_MS)
    keyless = ex.reading(record({"v": 1}, key=None), AT_MS)
    assert keyless.sensor_id == "telemetry-2" and keyless.source["key"] is None
    assert "no Kafka timestamp" in str(refusal(ex, {"v": 1}, ts=-1))


def test_array_items_booleans_and_numeric_strings() -> None:
    ex = readings('[readings]\nfeatures = ["a.b.1", "on", "q"]\n')
    got = ex.reading(record({"a": {"b": [5, 6.5]}, "on": True, "q": "2.5"}), AT_MS)
    assert got.features == {"a.b.1": 6.5, "on": 1.0, "q": 2.5}
    assert "a.b.1: missing" in str(refusal(ex, {"a": {"b": [5]}, "on": False, "q": 1}))


def test_include_and_exclude_globs_pick_numeric_leaves_flattened() -> None:
    ex = readings(
        '[readings]\ninclude = ["metrics.*"]\nexclude = ["metrics.debug_*"]\n'
        'categorical = ["status"]\n'
    )
    value = {
        "metrics": {"t": 1, "debug_x": 9, "name": "n", "arr": [2, {"deep": True}], "nan": 1.5},
        "other": 3,
        "status": "ok",
    }
    got = ex.reading(record(value), AT_MS)
    assert got.features == {
        "metrics.t": 1.0,
        "metrics.arr.0": 2.0,
        "metrics.arr.1.deep": 1.0,
        "metrics.nan": 1.5,
    }
    assert got.categories == {"status": "ok"}
    assert (
        refusal(
            readings('[readings]\ninclude = ["*"]\n', max_features=2), {"a": 1, "b": 2, "c": 3}
        ).reason
        == "too_many_features"
    )


@pytest.mark.parametrize(
    ("value", "reason", "words"),
    [
        (
            {**READING, "metrics": {"temp_c": "hot", "vibration": 1}},
            "schema",
            ["metrics.temp_c: not a number ('hot')"],
        ),
        (
            {**READING, "metrics": {"temp_c": None, "vibration": 1}},
            "schema",
            ["metrics.temp_c: not a number (null)"],
        ),
        (
            {**READING, "metrics": {"temp_c": [1], "vibration": 1}},
            "schema",
            ["metrics.temp_c", "an array"],
        ),
        ({**READING, "status": {"x": 1}}, "schema", ["status: not a string", "an object"]),
        ({**READING, "device": {"id": "", "site": "n"}}, "schema", ["device.id: not a string"]),
        ({**READING, "measured_at": "yesterday"}, "schema", ["measured_at: unparseable time"]),
        ({**READING, "measured_at": True}, "schema", ["measured_at: unparseable time"]),
        (
            {**READING, "measured_at": "2024-01-01T00:00:00Z"},
            "ts_skew",
            ["measured_at", "from now"],
        ),
        ({k: v for k, v in READING.items() if k != "msg_id"}, "schema", ["msg_id: missing"]),
        ([1, 2], "schema", ["not a JSON object"]),
        (b"{not json", "not_json", ["not valid JSON"]),
        (None, "schema", ["tombstone"]),
        (b'{"metrics": {"temp_c": 1e400}}', "non_finite", ["metrics.temp_c"]),
        (b'{"metrics": {"temp_c": NaN}}', "non_finite", ["metrics.temp_c"]),
    ],
)
def test_a_record_it_cannot_read_is_refused_naming_the_path(
    value: Any, reason: str, words: list[str]
) -> None:
    error = refusal(readings(), value)
    assert error.reason == reason, error
    for word in words:
        assert word in str(error), str(error)


def test_oversize_and_too_many_features() -> None:
    small = ReadingExtractor(parse_mapping(TELEMETRY, "m").readings, 16, 64, 86400)
    with pytest.raises(InvalidEvent) as caught:
        small.reading(record(READING), AT_MS)
    assert caught.value.reason == "oversize"
    assert refusal(readings(max_features=3), READING).reason == "too_many_features"


@pytest.mark.parametrize(
    ("fmt", "value", "expected"),
    [
        ("epoch_s", 1764745200, 1764745200000),
        ("epoch_s", 1764745200.5, 1764745200500),
        ("epoch_ms", 1764745200123, 1764745200123),
        ("epoch_us", 1764745200123456, 1764745200123),
        ("epoch_ns", 1764745200123456789, 1764745200123),
        ("iso8601", "2025-12-03T07:00:00.123+00:00", 1764745200123),
        ("iso8601", "2025-12-03T09:00:00.123+02:00", 1764745200123),
        ("iso8601", "2025-12-03T07:00:00.123", 1764745200123),  # naive is UTC
        ("auto", "2025-12-03T07:00:00.123Z", 1764745200123),
        ("auto", 1764745200, 1764745200000),
        ("auto", 1764745200123, 1764745200123),
        ("auto", 1764745200123456, 1764745200123),
        ("auto", 1764745200123456789, 1764745200123),
        ("auto", "1764745200123", 1764745200123),
    ],
)
def test_time_formats(fmt: str, value: Any, expected: int) -> None:
    ex = readings(f'[readings]\nfeatures = ["v"]\ntime = "t"\ntime_format = "{fmt}"\n')
    assert ex.reading(record({"v": 1, "t": value}), None).ts == expected


@pytest.mark.parametrize(("fmt", "value"), [("iso8601", 1764745200), ("epoch_ms", "2025-12-03")])
def test_a_time_of_the_wrong_format_is_refused(fmt: str, value: Any) -> None:
    ex = readings(f'[readings]\nfeatures = ["v"]\ntime = "t"\ntime_format = "{fmt}"\n')
    with pytest.raises(InvalidEvent, match=r"t: unparseable time"):
        ex.reading(record({"v": 1, "t": value}), None)


# -- feedback ------------------------------------------------------------------------------


def feedback(text: str = TELEMETRY) -> FeedbackExtractor:
    spec = parse_mapping(text, "m.toml").feedback
    assert spec is not None
    return FeedbackExtractor(spec, 65536, 86400)


def test_feedback_goes_through_the_label_map() -> None:
    ex = feedback()
    got = ex.feedback(record({"ref": "m-1", "outcome": "fault", "at": AT_MS}, key=b"pump-7"), AT_MS)
    assert (got.event_id, got.sensor_id, got.ts, got.label) == ("m-1", "pump-7", AT_MS, True)
    ok = ex.feedback(record({"ref": "m-2", "outcome": "ok", "at": AT_MS}), AT_MS)
    assert ok.label is False
    with pytest.raises(InvalidEvent, match=r"outcome: 'maybe' is not one of \(fault, ok\)"):
        ex.feedback(record({"ref": "m-3", "outcome": "maybe", "at": AT_MS}), AT_MS)
    with pytest.raises(InvalidEvent, match=r"ref: missing"):
        ex.feedback(record({"outcome": "ok", "at": AT_MS}), AT_MS)


def test_feedback_without_a_label_map_keeps_the_value() -> None:
    ex = feedback('[readings]\nfeatures = ["v"]\n[feedback]\nevent_id = "id"\nlabel = "y"\n')
    assert ex.feedback(record({"id": 7, "y": 2.5}), AT_MS).label == 2.5
    assert ex.feedback(record({"id": 7, "y": 2.5}), AT_MS).event_id == "7"
    for bad, reason in ((None, "schema"), ({"a": 1}, "schema")):
        with pytest.raises(InvalidEvent) as caught:
            ex.feedback(record({"id": "e", "y": bad}), AT_MS)
        assert caught.value.reason == reason and "y:" in str(caught.value)


# -- any bytes at all ----------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)
NESTED = st.fixed_dictionaries(
    {},
    optional={
        "msg_id": JSON,
        "device": st.fixed_dictionaries({}, optional={"id": JSON, "site": JSON}),
        "measured_at": JSON | st.sampled_from(["2026-12-03T07:00:00Z", "2026-13-01", ""]),
        "metrics": st.dictionaries(st.sampled_from(["temp_c", "vibration", "rpm", "x"]), JSON),
        "status": JSON,
        "ref": JSON,
        "outcome": JSON,
        "at": JSON,
    },
)
GLOBS = readings('[readings]\ninclude = ["*"]\ncategorical = ["status"]\noptional = ["status"]\n')


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200) | NESTED.map(lambda v: json.dumps(v).encode()))
def test_any_record_is_read_or_refused_with_a_known_reason(raw: bytes) -> None:
    rec = record(raw)
    calls = [
        lambda: readings().reading(rec, AT_MS),
        lambda: GLOBS.reading(rec, AT_MS),
        lambda: feedback().feedback(rec, AT_MS),
    ]
    for call in calls:
        try:
            got = call()
        except InvalidEvent as exc:
            assert exc.reason in REASONS and exc.reason != "internal", exc
            assert len(str(exc)) <= MAX_MESSAGE_CHARS
            continue
        if isinstance(got, MappedReading):
            assert all(type(v) is float and math.isfinite(v) for v in got.features.values())
            assert all(type(v) is str for v in (got.categories or {}).values())
            assert 0 <= got.ts < 2**63


@pytest.mark.parametrize("command", ["infer", "learn"])
def test_workers_exit_2_on_a_wrong_mapping_naming_line_and_key(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from riverflow.cli import main

    bad = tmp_path / "bad.toml"
    bad.write_text('[readings]\nfeatures = ["a"]\ntime_format = 3\n')
    argv = [command, "--mapping", str(bad), "--metrics-port", "0"]
    assert main([*argv, "--bootstrap-servers", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "line 3: readings.time_format" in err and str(bad) in err
