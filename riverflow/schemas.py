"""The message contracts every part shares: each message's schema, its encoder and its decoder.

Readings and feedback come from outside and are validated strictly: required fields, finite
numbers only, a bounded number of features and message size, ``ts`` within a skew of now.
``ts`` fields are epoch milliseconds; ISO-8601 strings are accepted on input.

Producers, workers, tests and benchmarks build every value with the encoders here
(:func:`reading_value`, :func:`feedback_value`, :func:`prediction_value`) and read it with
:class:`Decoder`, so a message's shape is written once, in its schema class.

>>> d = Decoder(max_features=8, max_message_bytes=1024, max_ts_skew_s=60)
>>> r = d.reading(reading_value("e1", "s1", 1000, {"x": 1}), now_ms=1000)
>>> r.features
{'x': 1.0}
>>> d.feedback(feedback_value("e1", "s1", 1000, wire_label(True)), now_ms=1000).label
True
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, ParamSpec, Protocol, TypeVar

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationError
from pydantic_core import to_json

from riverflow.errors import InvalidEvent, internal

Label = bool | int | str | float
P = ParamSpec("P")
T = TypeVar("T")

# Metric label values for invalid input; a fixed set keeps Prometheus cardinality bounded.
REASONS = (
    "not_json",
    "schema",
    "non_finite",
    "too_many_features",
    "oversize",
    "ts_skew",
    "model_error",
    "internal",  # anything else a record made riverflow raise: a bug to look at, never a crash
    "undeliverable",  # Kafka kept refusing the record's output (too large, invalid)
)


def _epoch_ms(value: Any) -> Any:
    """Accept epoch milliseconds or an ISO-8601 string (naive means UTC); bools are not times."""
    if type(value) is int:  # the usual case, three times per prediction: answered first
        return value
    if isinstance(value, bool):
        raise ValueError("ts must be epoch milliseconds or an ISO-8601 string, not a boolean")
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"ts {value!r} is not epoch milliseconds nor ISO-8601") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return int(dt.timestamp() * 1000)
    return value


# Every integer on the wire fits a signed 64-bit integer, as Kafka's own timestamps and most JSON
# readers' integers do; a larger one can only be hostile, and breaks float arithmetic later.
INT64_MAX = 2**63 - 1
Int64 = Annotated[int, Field(ge=-INT64_MAX - 1, le=INT64_MAX)]
EpochMs = Annotated[int, BeforeValidator(_epoch_ms), Field(ge=0, le=INT64_MAX)]
Id = Annotated[str, Field(min_length=1, max_length=256)]
# An integer beyond int64 that a float can hold becomes that float, as in JavaScript.
WireLabel = Annotated[bool | Int64 | str | float, Field(union_mode="smart")]
# Strict: numbers only (no "1.5" strings, no booleans); NaN and +-inf are refused by the config.
Features = dict[Annotated[str, Field(min_length=1, max_length=256)], Annotated[float, Strict()]]


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, frozen=True)


class Reading(_Message):
    """One sensor reading: ``{"event_id", "sensor_id", "ts", "features": {name: number}}``."""

    event_id: Id
    sensor_id: Id
    ts: EpochMs
    features: Features


class Feedback(_Message):
    """The label for an earlier reading, referred to by its ``event_id``."""

    event_id: Id
    sensor_id: Id
    ts: EpochMs
    label: WireLabel


class Prediction(_Message):
    """What inference served for one reading; the learner joins it to feedback by event_id."""

    event_id: Id
    sensor_id: Id
    event_ts: EpochMs
    predicted_ts: EpochMs
    model: str
    model_version: Annotated[Int64, Field(ge=0)]
    prediction: WireLabel | None
    scores: dict[str, float] | None = None
    features: Features
    # Readings read through a mapping (riverflow.mapping): their categorical features, and
    # where the reading was (key, topic, partition, offset).
    categories: dict[Id, Annotated[str, Field(max_length=256)]] | None = None
    source: dict[str, Any] | None = None

    @property
    def x(self) -> dict[str, Any]:
        """What the model was given: the features and the categories."""
        if self.categories:
            return {**self.features, **self.categories}
        return self.features


_READING_FIELDS = frozenset(Reading.model_fields)
_MAX_ID_CHARS = 256  # Id and feature names
_EXACT_INT = 2**53  # an integer feature up to this size is the float of the same value


def fast_reading(raw: bytes) -> Reading | None:
    """The usual reading, built without pydantic's validation: exactly the four fields, ids and
    feature names of 1-256 characters, ``ts`` an epoch-ms integer in int64, every feature a
    finite JSON number (orjson refuses NaN and infinity). It is the :class:`Reading` pydantic
    would build from the same bytes (a property test holds it to that), at about half the cost.
    None for anything else, which pydantic then decides on, with its reasons.
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    # Exactly the fields: an ignored extra field may be nested deeper than pydantic accepts.
    if type(value) is not dict or value.keys() != _READING_FIELDS:
        return None
    event_id, sensor_id, ts = value["event_id"], value["sensor_id"], value["ts"]
    features = value["features"]
    if not (
        type(event_id) is str
        and 0 < len(event_id) <= _MAX_ID_CHARS
        and type(sensor_id) is str
        and 0 < len(sensor_id) <= _MAX_ID_CHARS
        and type(ts) is int
        and 0 <= ts <= INT64_MAX
        and type(features) is dict
    ):
        return None
    for name, x in features.items():
        if not 0 < len(name) <= _MAX_ID_CHARS:
            return None
        if type(x) is not float:
            if type(x) is not int or not -_EXACT_INT <= x <= _EXACT_INT:
                return None
            features[name] = float(x)
    # What pydantic's own construction sets, without re-validating what was just checked.
    reading = _new_reading(Reading)
    fields = {"event_id": event_id, "sensor_id": sensor_id, "ts": ts, "features": features}
    _set(reading, "__dict__", fields)
    _set(reading, "__pydantic_fields_set__", _READING_FIELDS)
    _set(reading, "__pydantic_extra__", None)
    _set(reading, "__pydantic_private__", None)
    return reading


_new_reading = Reading.__new__
_set = object.__setattr__


def _reason(exc: ValidationError) -> tuple[str, str]:
    errors = exc.errors(include_url=False)
    first = errors[0]
    kinds = {e["type"] for e in errors}
    if "json_invalid" in kinds or "json_type" in kinds:
        return "not_json", f"not valid JSON: {first['msg']}"
    if "finite_number" in kinds:
        bad = next(e for e in errors if e["type"] == "finite_number")
        return "non_finite", f"{_loc(bad)}: NaN and infinity are not allowed"
    return "schema", "; ".join(f"{_loc(e)}: {e['msg']}" for e in errors[:5])


def _loc(error: Any) -> str:
    return ".".join(str(p) for p in error["loc"]) or "message"


def _refusing(decode: Callable[P, T]) -> Callable[P, T]:
    """Whatever else decoding raises becomes the ``internal`` refusal: a decoder raises
    :class:`InvalidEvent` or returns, for any bytes at all (the property tests hold it to that)."""

    @functools.wraps(decode)
    def refusing(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return decode(*args, **kwargs)
        except InvalidEvent:
            raise
        except Exception as exc:
            raise internal(exc, "validate") from None

    return refusing


class Decoder:
    """Decodes and validates raw Kafka values; raises :class:`InvalidEvent` with a reason."""

    def __init__(self, max_features: int, max_message_bytes: int, max_ts_skew_s: float) -> None:
        self.max_features = max_features
        self.max_message_bytes = max_message_bytes
        self.max_skew_ms = int(max_ts_skew_s * 1000)

    @classmethod
    def from_settings(cls, settings: Any) -> Decoder:
        return cls(settings.max_features, settings.max_message_bytes, settings.max_ts_skew_s)

    def _parse(self, model: type[_Message], raw: bytes | None) -> Any:
        if raw is None:
            raise InvalidEvent("schema", "message has no value (tombstone)", "decode")
        if len(raw) > self.max_message_bytes:
            raise InvalidEvent(
                "oversize", f"{len(raw)} bytes exceeds max_message_bytes={self.max_message_bytes}"
            )
        try:
            # The validator itself: model_validate_json only adds argument checks around it.
            return model.__pydantic_validator__.validate_json(raw)
        except ValidationError as exc:
            reason, text = _reason(exc)
            stage = "decode" if reason == "not_json" else "validate"
            raise InvalidEvent(reason, text, stage) from None

    def _check_ts(self, ts: int, now_ms: int) -> None:
        if abs(ts - now_ms) > self.max_skew_ms:
            # Integer seconds: a float division of a huge ts raised OverflowError here once.
            raise InvalidEvent(
                "ts_skew",
                f"ts {ts} is {(ts - now_ms) // 1000:+d}s from now, beyond max_ts_skew_s="
                f"{self.max_skew_ms / 1000:g}",
            )

    @_refusing
    def reading(self, raw: bytes | None, now_ms: int) -> Reading:
        fast = None
        if raw is not None and len(raw) <= self.max_message_bytes:
            fast = fast_reading(raw)
        reading: Reading = fast or self._parse(Reading, raw)
        if len(reading.features) > self.max_features:
            raise InvalidEvent(
                "too_many_features",
                f"{len(reading.features)} features exceeds max_features={self.max_features}",
            )
        self._check_ts(reading.ts, now_ms)
        return reading

    @_refusing
    def feedback(self, raw: bytes | None, now_ms: int | None) -> Feedback:
        """``now_ms=None`` skips the skew check: for a label re-read after a restart, checked
        when it was first read, whose ts may have left the window since."""
        feedback: Feedback = self._parse(Feedback, raw)
        if isinstance(feedback.label, float) and not math.isfinite(feedback.label):
            raise InvalidEvent("non_finite", "label: NaN and infinity are not allowed")
        if now_ms is not None:
            self._check_ts(feedback.ts, now_ms)
        return feedback

    @_refusing
    def prediction(self, raw: bytes | None) -> Prediction:
        """Predictions come from our own workers: no skew check, so backlogs can be replayed."""
        prediction: Prediction = self._parse(Prediction, raw)
        return prediction


def dumps(value: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON, the wire format of every topic but models; NaN is a ValueError."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


# Encoders: each writes its message's fields in the schema's order. The values are built as
# plain dicts, not model instances: what a worker encodes is already valid (it was decoded or
# computed), and validating it again per record would cost more than the encoding.

_SCALARS = frozenset({bool, int, float, str})


def wire_label(value: Any) -> Label | None:
    """A label or a model's output as JSON carries it: bool, int, str or finite float.

    numpy scalars become the Python value they hold; any other object (a class a River
    estimator predicts) becomes its ``str``, as producers and inference both send it, so a label
    and a prediction of one class compare equal. None, NaN and infinities are None: no label.

    >>> import numpy as np
    >>> wire_label(np.int64(3)), wire_label(float("nan")), wire_label(("a", 1))
    (3, None, "('a', 1)")
    """
    if value is None:
        return None
    if type(value) not in _SCALARS:  # np.float64 is a float subclass: unwrapped here too
        item = getattr(value, "item", None)
        if callable(item):
            value = item()
    if not isinstance(value, bool | int | float | str):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def reading_value(
    event_id: str, sensor_id: str, ts: int | str, features: Mapping[str, float]
) -> bytes:
    """A :class:`Reading`; a NaN or infinite feature is a ValueError."""
    return dumps({"event_id": event_id, "sensor_id": sensor_id, "ts": ts, "features": features})


def feedback_value(event_id: str, sensor_id: str, ts: int, label: Label) -> bytes:
    """A :class:`Feedback`: the ``label`` of the reading ``event_id`` (see :func:`wire_label`)."""
    return dumps({"event_id": event_id, "sensor_id": sensor_id, "ts": ts, "label": label})


class ReadingLike(Protocol):
    """What a prediction is built from: a :class:`Reading`, or a reading a mapping read."""

    @property
    def event_id(self) -> str: ...
    @property
    def sensor_id(self) -> str: ...
    @property
    def ts(self) -> int: ...
    @property
    def features(self) -> dict[str, float]: ...


def prediction_value(
    reading: ReadingLike,
    model: str,
    version: int,
    prediction: Any,
    scores: dict[str, float] | None,
    predicted_ts: int,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """A :class:`Prediction` of ``reading``, built for inference's hot path.

    Serialised by orjson: ~0.6 us against ~1.5 us for pydantic-core's ``to_json`` and ~8 us
    for ``json.dumps`` of the same dict, whose float formatting dominates (docs/PERFORMANCE.md).
    orjson writes NaN and infinity as null, so the model's outputs are checked here (a
    ValueError); the features were checked by the decoder. An integer beyond 64 bits, which
    orjson refuses, is written by ``to_json``. ``extra`` adds the fields of a mapped reading
    (``categories``, ``source``).

    >>> r = Reading(event_id="e1", sensor_id="s1", ts=1000, features={"x": 1.0})
    >>> prediction_value(r, "logreg", 3, True, {"False": 0.2, "True": 0.8}, 1005)
    b'{"event_id":"e1","sensor_id":"s1","event_ts":1000,"predicted_ts":1005,"model":"logreg",\
"model_version":3,"prediction":true,"scores":{"False":0.2,"True":0.8},"features":{"x":1.0}}'
    """
    label = wire_label(prediction)
    if label is None and prediction is not None:
        raise ValueError(f"prediction {prediction} is not a finite number")
    if scores is not None and not all(map(math.isfinite, scores.values())):
        raise ValueError(f"scores {scores} are not all finite numbers")
    value = {
        "event_id": reading.event_id,
        "sensor_id": reading.sensor_id,
        "event_ts": reading.ts,
        "predicted_ts": predicted_ts,
        "model": model,
        "model_version": version,
        "prediction": label,
        "scores": scores,
        "features": reading.features,
    }
    if extra:
        value.update(extra)
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return to_json(value)


def now_ms() -> int:
    import time

    return time.time_ns() // 1_000_000
