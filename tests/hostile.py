"""Known-hostile input by name, with the refusal each must get.

Shared by the decoder unit tests (``tests/unit/test_hostile_input.py``), which check every case
against the decoders, and the chaos suite's flood (``tests/chaos/test_bad_input_flood.py``),
which sends the readings among them to a running inference worker.
"""

from __future__ import annotations

import json
from typing import Any

BIG = 10**400
DROP: Any = object()  # an override that leaves the field out

# (message kind, raw value, reason, stage): how the default limits refuse it.
Case = tuple[str, bytes | None, str, str]


def _message(base: dict[str, Any], over: dict[str, Any]) -> bytes:
    value = {**base, **over}
    return json.dumps({k: v for k, v in value.items() if v is not DROP}).encode()


class Messages:
    """Valid messages around ``now`` (epoch ms), with any field overridden or dropped."""

    def __init__(self, now: int) -> None:
        self.now = now

    def reading(self, **over: Any) -> bytes:
        base = {"event_id": "e1", "sensor_id": "s1", "ts": self.now, "features": {"a": 1.5}}
        return _message(base, over)

    def feedback(self, **over: Any) -> bytes:
        base = {"event_id": "e1", "sensor_id": "s1", "ts": self.now, "label": True}
        return _message(base, over)

    def prediction(self, **over: Any) -> bytes:
        base = {
            "event_id": "e1",
            "sensor_id": "s1",
            "event_ts": self.now,
            "predicted_ts": self.now,
            "model": "m",
            "model_version": 1,
            "prediction": True,
            "scores": {"True": 0.5},
            "features": {"a": 1.0},
        }
        return _message(base, over)


def digits(n: int) -> str:
    return "1" + "0" * (n - 1)


# Feature names that look hostile and are valid: kept as they are.
HARMLESS_NAMES = {"a\x00b": 1.0, "line\nbreak": 2.0, "__proto__": 3.0, "名前": 4.0, "x" * 256: 5.0}


def corpus(now: int) -> dict[str, Case]:
    """Every named case, its valid parts around ``now``; every case names one way in."""
    m = Messages(now)
    reading, feedback, prediction = m.reading, m.feedback, m.prediction
    return {
        # not JSON, or the wrong JSON
        "not JSON at all": ("reading", b"this is not json", "not_json", "decode"),
        "missing features": ("reading", reading(features=DROP), "schema", "validate"),
        "missing everything but the event id": (
            "reading",
            reading(sensor_id=DROP, ts=DROP, features=DROP),
            "schema",
            "validate",
        ),
        "features a list": ("reading", reading(features=[1.0]), "schema", "validate"),
        "feature a numeric string": (
            "reading",
            reading(features={"a": "1.5"}),
            "schema",
            "validate",
        ),
        "feature a boolean": ("reading", reading(features={"a": True}), "schema", "validate"),
        "event_id a number": ("reading", reading(event_id=5), "schema", "validate"),
        "ts a boolean": ("reading", reading(ts=True), "schema", "validate"),
        # NaN and infinities (JSON's non-standard tokens, which the parser reads)
        "feature NaN": ("reading", reading(features={"a": float("nan")}), "non_finite", "validate"),
        "feature -Infinity": (
            "reading",
            reading(features={"a": float("-inf")}),
            "non_finite",
            "validate",
        ),
        # huge integers in every numeric field
        "ts 10**400 (issue 8)": ("reading", reading(ts=BIG), "schema", "validate"),
        "ts 2**63, one past int64": ("reading", reading(ts=2**63), "schema", "validate"),
        "ts -10**400": ("reading", reading(ts=-BIG), "schema", "validate"),
        "ts 9e18 in int64, far future": ("reading", reading(ts=9 * 10**18), "ts_skew", "validate"),
        "ts 1.5e300 float": ("reading", reading(ts=1.5e300), "schema", "validate"),
        "ts of 5000 digits": (
            "reading",
            reading(ts=0).replace(b'"ts": 0', b'"ts": ' + digits(5000).encode()),
            "not_json",
            "decode",
        ),
        "feature 10**400": ("reading", reading(features={"a": BIG}), "non_finite", "validate"),
        "feature 1e400": (
            "reading",
            reading(features={"a": 0}).replace(b'"a": 0', b'"a": 1e400'),
            "non_finite",
            "validate",
        ),
        "feedback ts 10**400": ("feedback", feedback(ts=BIG), "schema", "validate"),
        "label 10**400": ("feedback", feedback(label=BIG), "non_finite", "validate"),
        "label NaN": ("feedback", feedback(label=float("nan")), "non_finite", "validate"),
        "prediction event_ts 10**400": (
            "prediction",
            prediction(event_ts=BIG),
            "schema",
            "validate",
        ),
        "prediction predicted_ts 10**400": (
            "prediction",
            prediction(predicted_ts=BIG),
            "schema",
            "validate",
        ),
        "model_version 10**400": (
            "prediction",
            prediction(model_version=BIG),
            "schema",
            "validate",
        ),
        "model_version 2**63": (
            "prediction",
            prediction(model_version=2**63),
            "schema",
            "validate",
        ),
        "served prediction 10**400": (
            "prediction",
            prediction(prediction=BIG),
            "non_finite",
            "validate",
        ),
        "score 10**400": ("prediction", prediction(scores={"True": BIG}), "non_finite", "validate"),
        "prediction feature 10**400": (
            "prediction",
            prediction(features={"a": BIG}),
            "non_finite",
            "validate",
        ),
        # ISO strings with odd years
        "ts year 1 east of UTC": (
            "reading",
            reading(ts="0001-01-01T00:00:00+14:00"),
            "schema",
            "validate",
        ),
        "ts year 0": ("reading", reading(ts="0000-01-01T00:00:00"), "schema", "validate"),
        "ts year 9999": ("reading", reading(ts="9999-12-31T23:59:59-23:59"), "ts_skew", "validate"),
        "ts year 10000": ("reading", reading(ts="10000-01-01T00:00:00"), "schema", "validate"),
        # deep nesting
        "array nested 30k deep": (
            "reading",
            b'{"x":' + b"[" * 30_000 + b"]" * 30_000 + b"}",
            "not_json",
            "decode",
        ),
        "features nested 10k deep": (
            "reading",
            b'{"event_id":"e","sensor_id":"s","ts":1,"features":'
            + b'{"a":' * 10_000
            + b"1"
            + b"}" * 10_000
            + b"}",
            "not_json",
            "decode",
        ),
        # bytes that are not UTF-8 JSON
        "non-UTF-8 byte in a string": (
            "reading",
            reading(event_id="e").replace(b'"e"', b'"\xff"'),
            "not_json",
            "decode",
        ),
        "lone surrogate escape": (
            "reading",
            reading(sensor_id="s").replace(b'"s"', b'"\\ud800"'),
            "not_json",
            "decode",
        ),
        "UTF-16 with BOM": ("reading", reading().decode().encode("utf-16"), "not_json", "decode"),
        "empty value": ("reading", b"", "not_json", "decode"),
        "tombstone": ("reading", None, "schema", "decode"),
        "JSON string, not object": ("reading", b'"hello"', "schema", "validate"),
        # hostile feature names
        "empty feature name": ("reading", reading(features={"": 1.0}), "schema", "validate"),
        "feature name of 257 characters": (
            "reading",
            reading(features={"x" * 257: 1.0}),
            "schema",
            "validate",
        ),
        "too many features": (
            "reading",
            reading(features={f"f{i}": 1.0 for i in range(257)}),
            "too_many_features",
            "validate",
        ),
        # size
        "2 MB reading": ("reading", reading(pad="x" * 2_000_000), "oversize", "validate"),
        "2 MB feedback": ("feedback", feedback(label="x" * 2_000_000), "oversize", "validate"),
        "2 MB prediction": (
            "prediction",
            prediction(model="x" * 2_000_000),
            "oversize",
            "validate",
        ),
    }


def duplicate_keys(now: int, event_id: str) -> bytes:
    """A reading whose keys repeat; the last value of each wins, as in ``json.loads``."""
    return (
        b'{"event_id":"dropped","sensor_id":"s1","ts":%d,"features":{"a":"bad"},'
        b'"event_id":"%s","features":{"a":1,"a":2}}' % (now, event_id.encode())
    )
