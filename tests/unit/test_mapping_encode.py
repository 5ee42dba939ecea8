"""replay --mapping writes what the mapping reads back: encode, then extract, gives the same."""

from __future__ import annotations

import pytest

from riverflow.errors import ConfigError
from riverflow.extract import FeedbackExtractor, ReadingExtractor
from riverflow.mapping import parse_mapping
from riverflow.mapping_encode import MappedEncoder
from riverflow.transport.base import Message
from tests.unit.test_mapping import TELEMETRY

AT = 1_764_745_200_123


@pytest.mark.parametrize("fmt", ["auto", "iso8601", "epoch_s", "epoch_ms", "epoch_us", "epoch_ns"])
def test_a_reading_and_its_label_come_back_as_they_went(fmt: str) -> None:
    text = TELEMETRY.replace('time_format = "auto"', f'time_format = "{fmt}"')
    text += 'entity = "device.id"\n'  # the [feedback] table's entity too
    m = parse_mapping(text, "m.toml")
    enc = MappedEncoder(m)
    features = {"temp_c": 71.25, "metrics.vibration": 0.5}  # by last part, or whole
    raw = enc.reading("m-1", "pump-7", AT, features, {"status": "running", "site": "north"})
    got = ReadingExtractor(m.readings, 16, 65536, 86400).reading(
        Message("telemetry", 0, 1, None, raw, (), 0), None
    )
    assert (got.event_id, got.sensor_id, got.ts) == ("m-1", "pump-7", AT)
    assert got.features == {"metrics.temp_c": 71.25, "metrics.vibration": 0.5}
    assert got.categories == {"status": "running", "device.site": "north"}
    assert m.feedback is not None
    back = FeedbackExtractor(m.feedback, 65536, 86400)
    for label in (True, False):
        fb = back.feedback(
            Message("o", 0, 1, None, enc.feedback("m-1", "p", AT, label), (), 0), None
        )
        assert (fb.event_id, fb.label, fb.ts) == ("m-1", label, AT)


def test_arrays_and_unmapped_columns() -> None:
    m = parse_mapping('[readings]\nfeatures = ["a.0", "a.2.v"]\ninclude = ["extra*"]\n', "m")
    raw = MappedEncoder(m).reading("e", "s", AT, {"a.0": 1.0, "a.2.v": 2.0, "extra_x": 3.0})
    assert raw == b'{"a":[1.0,null,{"v":2.0}],"extra_x":3.0}'
    got = ReadingExtractor(m.readings, 16, 65536, 86400).reading(
        Message("t", 0, 1, b"k", raw, (), AT), None
    )
    assert got.features == {"a.0": 1.0, "a.2.v": 2.0, "extra_x": 3.0}


def test_a_label_outside_the_label_map_is_a_config_error() -> None:
    enc = MappedEncoder(parse_mapping(TELEMETRY, "m.toml"))
    with pytest.raises(ConfigError, match="label 'maybe'"):
        enc.feedback("e", "s", AT, "maybe")
    no_feedback = MappedEncoder(parse_mapping('[readings]\nfeatures = ["v"]\n', "m.toml"))
    with pytest.raises(ConfigError, match="no \\[feedback\\] table"):
        no_feedback.feedback("e", "s", AT, True)
