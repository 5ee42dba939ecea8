"""A :class:`~riverflow.mapping.Mapping` compiled into fast extractors of readings and feedback.

Each mapping becomes one pydantic-core validator: a flat typed dict whose fields find their
values by alias path (precomputed from the dotted paths), so a record is parsed and its features
checked in one pass in Rust, and nothing else of the record becomes a Python object. Ids,
entities, categories and times are checked after, in a few type tests.

A record the mapping cannot read raises :class:`InvalidEvent` whose message names each wrong
path and what was wrong (missing, null, not a number, not a string, an unparseable time), so it
becomes a dead letter like any refused reading. Features are JSON numbers, booleans (0/1) and
numeric strings (``"71.2"``: other systems often quote numbers); NaN and infinity are refused.

>>> from riverflow.mapping import parse_mapping
>>> m = parse_mapping('[readings]\\nentity = "d.id"\\nfeatures = ["m.t", "m.on"]\\n', "m")
>>> r = ReadingExtractor(m.readings, max_features=8, max_message_bytes=4096, max_ts_skew_s=60)
>>> from riverflow.transport.base import Message
>>> rec = Message("t", 0, 5, None, b'{"d": {"id": "p7"}, "m": {"t": 71, "on": true}}', (), 1000)
>>> got = r.reading(rec, now_ms=1000)
>>> got.event_id, got.sensor_id, got.ts, got.features
('t-0-5', 'p7', 1000, {'m.t': 71.0, 'm.on': 1.0})
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic_core import SchemaValidator, ValidationError, from_json
from pydantic_core import core_schema as cs

from riverflow.errors import InvalidEvent, internal
from riverflow.mapping import FeedbackMap, ReadingsMap, split_path
from riverflow.schemas import INT64_MAX, Feedback

MAX_TEXT = 256  # event ids, entities and categories, as in riverflow's own messages
# Glob decisions are remembered per flattened name; hostile records could invent names without
# end, so only this many are kept (beyond it each new name is matched again).
GLOB_CACHE = 4096
# Field names for the parts that are not features; a path has no spaces, so none collides.
EVENT_ID, ENTITY, TIME, LABEL = " event_id", " entity", " time", " label"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_MS = timedelta(milliseconds=1)
_fromisoformat = datetime.fromisoformat
# auto: an epoch number below 1e11 is seconds (until the year 5138), below 1e14 milliseconds...
_AUTO_SCALES = ((1e11, 1000.0), (1e14, 1.0), (1e17, 1e-3), (math.inf, 1e-6))
_SCALES = {"epoch_s": 1000.0, "epoch_ms": 1.0, "epoch_us": 1e-3, "epoch_ns": 1e-6}
# Lax: JSON numbers, booleans as 0/1 and numeric strings; as fast as strict floats, where a
# union of float and bool cost 0.9 us per 8-feature record.
_NUMBER = cs.float_schema(allow_inf_nan=False)
# Ids, entities and categories: strings of 1 to 256 characters; numbers count as their text.
_TEXT = cs.str_schema(min_length=1, max_length=MAX_TEXT, coerce_numbers_to_str=True)
_ANY = cs.any_schema()
_WHAT = {"number": "not a number", "text": f"not a string of 1 to {MAX_TEXT} characters"}


@dataclass(slots=True)
class MappedReading:
    """A reading taken from a mapped record: what inference predicts on and echoes."""

    event_id: str
    sensor_id: str
    ts: int
    features: dict[str, float]  # numbers only: drift monitors and the echo take these
    categories: dict[str, str] | None
    record: Any  # the Kafka record it came from

    @property
    def x(self) -> dict[str, Any]:
        """What the model is given: the features and the categories."""
        if self.categories:
            return {**self.features, **self.categories}
        return self.features

    @property
    def extra(self) -> dict[str, Any]:
        """What its prediction carries beyond riverflow's own fields."""
        if self.categories:
            return {"categories": self.categories, "source": self.source}
        return {"source": self.source}

    @property
    def source(self) -> dict[str, Any]:
        """The record's key (as text), topic, partition and offset: the prediction carries them,
        so a reader finds the reading it answers."""
        record = self.record
        key = record.key
        return {
            "key": None if key is None else key.decode("utf-8", "backslashreplace"),
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
        }


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def epoch_ms(path: str, value: Any, fmt: str) -> int:
    """A time as epoch milliseconds per ``fmt`` (epoch_s|ms|us|ns, iso8601, auto: strings as
    ISO-8601 or digits, numbers by magnitude); naive ISO times are UTC."""
    kind = type(value)
    if kind is str and fmt in ("iso8601", "auto"):
        if fmt == "auto" and value.isascii() and value.isdigit() and len(value) < 20:
            return epoch_ms(path, int(value), fmt)
        try:
            dt = datetime.fromisoformat(value)
            ms = (dt - (_EPOCH if dt.tzinfo is not None else _EPOCH_NAIVE)) // _MS
        except (ValueError, OverflowError):
            raise InvalidEvent("schema", f"{path}: unparseable time ({_shown(value)})") from None
    elif (kind is int or kind is float) and fmt != "iso8601" and value - value == 0:
        scale = (
            next(s for bound, s in _AUTO_SCALES if abs(value) < bound)
            if fmt == "auto"
            else _SCALES[fmt]
        )
        ms = int(value * scale) if scale != 1.0 else int(value)
    else:
        raise InvalidEvent(
            "schema", f"{path}: unparseable time ({'null' if value is None else _shown(value)})"
        )
    if not 0 <= ms <= INT64_MAX:
        raise InvalidEvent("schema", f"{path}: time ({_shown(value)}) is out of range")
    return int(ms)


class _Fields:
    """Named paths validated in one pass by pydantic-core: a flat typed dict whose fields look
    their values up by alias path, so the output holds exactly the mapped values (absent when an
    optional path is missing)."""

    def __init__(self) -> None:
        self.fields: dict[str, cs.TypedDictField] = {}
        self.texts: dict[tuple[str | int, ...], tuple[str, str]] = {}  # alias -> text, kind

    def add(self, name: str, text: str, kind: str, required: bool = True) -> None:
        """``kind``: number, text or any (checked after)."""
        path = split_path(text)
        schema = {"number": _NUMBER, "text": _TEXT, "any": _ANY}[kind]
        if not required:
            schema = cs.nullable_schema(schema)
        self.fields[name] = cs.typed_dict_field(
            schema, required=required, validation_alias=list(path)
        )
        self.texts[path] = (text, kind)

    def validator(self) -> SchemaValidator:
        return SchemaValidator(cs.typed_dict_schema(self.fields))

    def refusal(self, exc: ValidationError) -> InvalidEvent:
        """One refusal naming each wrong path and what was wrong with it."""
        problems: dict[str, str] = {}
        reason = "schema"
        for error in exc.errors(include_url=False):
            kind = error["type"]
            if kind in ("json_invalid", "json_type"):
                return InvalidEvent("not_json", f"not valid JSON: {error['msg']}", "decode")
            loc = tuple(error["loc"])
            if not loc:
                problems["record"] = f"{_shown(error['input'])}, not a JSON object"
                continue
            text, what = self._field_of(loc)
            if kind == "missing":
                problems[text] = "missing"
            elif kind == "finite_number":
                reason = "non_finite"
                problems[text] = "NaN and infinity are not allowed"
            else:
                value = error["input"]
                shown = "null" if value is None else _shown(value)
                problems[text] = f"{_WHAT.get(what, 'unreadable')} ({shown})"
        details = "; ".join(f"{t}: {p}" for t, p in list(problems.items())[:5])
        return InvalidEvent(reason, details)

    def _field_of(self, loc: tuple[Any, ...]) -> tuple[str, str]:
        for end in range(len(loc), 0, -1):
            found = self.texts.get(loc[:end])
            if found is not None:
                return found
        return ".".join(map(str, loc)), "any"


class _Extractor:
    def __init__(self, max_message_bytes: int, max_ts_skew_s: float) -> None:
        self.max_message_bytes = max_message_bytes
        self.max_skew_ms = int(max_ts_skew_s * 1000)
        self._fields = _Fields()

    def _size_refusal(self, raw: bytes | None) -> InvalidEvent:
        if raw is None:
            return InvalidEvent("schema", "message has no value (tombstone)", "decode")
        return InvalidEvent(
            "oversize", f"{len(raw)} bytes exceeds max_message_bytes={self.max_message_bytes}"
        )

    def _ts(self, value: Any, record: Any, path: str | None, fmt: str, now_ms: int | None) -> int:
        if path is None:
            ts = record.timestamp
            if ts is None or ts < 0:
                raise InvalidEvent("schema", "the record has no Kafka timestamp (map a time)")
        else:
            ts = epoch_ms(path, value, fmt)
        if now_ms is not None and abs(ts - now_ms) > self.max_skew_ms:
            raise InvalidEvent(
                "ts_skew",
                f"{path or 'timestamp'} {ts} is {(ts - now_ms) // 1000:+d}s from now, beyond "
                f"max_ts_skew_s={self.max_skew_ms / 1000:g}",
            )
        return int(ts)


def _key_entity(record: Any) -> str:
    key = record.key
    if key:  # records without a key have no entity: their partition stands in
        return str(key.decode("utf-8", "backslashreplace")[:MAX_TEXT])
    return f"{record.topic}-{record.partition}"


class ReadingExtractor(_Extractor):
    """Readings from mapped records. A feature or category is named by its path text."""

    def __init__(
        self, spec: ReadingsMap, max_features: int, max_message_bytes: int, max_ts_skew_s: float
    ) -> None:
        super().__init__(max_message_bytes, max_ts_skew_s)
        self.spec = spec
        self.max_features = max_features
        optional = set(spec.optional)
        fields = self._fields
        for text in spec.features:
            fields.add(text, text, "number", text not in optional)
        for text in spec.categorical:
            fields.add(text, text, "text", text not in optional)
        for name, path in ((EVENT_ID, spec.event_id), (ENTITY, spec.entity)):
            if path is not None:
                fields.add(name, path, "text")
        if spec.time is not None:
            fields.add(TIME, spec.time, "any")
        validator = fields.validator()
        self._validate_json = validator.validate_json
        self._validate_python = validator.validate_python
        self._iso = spec.time_format in ("iso8601", "auto")
        self._auto = spec.time_format == "auto"  # digit strings are epoch numbers then
        self._optional = tuple(optional)
        self._categorical = tuple(spec.categorical)
        self._include, self._exclude = tuple(spec.include), tuple(spec.exclude)
        self._explicit = {*spec.features, *spec.categorical}
        self._globbed: dict[str, bool] = {}

    def reading(self, record: Any, now_ms: int | None) -> MappedReading:
        """The reading in ``record``, or InvalidEvent; ``now_ms=None`` skips the skew check.

        Whatever the record holds, nothing else is raised (anything unforeseen is ``internal``).
        """
        try:
            raw = record.value
            if raw is None or len(raw) > self.max_message_bytes:
                raise self._size_refusal(raw)
            spec = self.spec
            try:
                if self._include:
                    doc = from_json(raw)
                    out = self._validate_python(doc)
                else:
                    out = self._validate_json(raw)
            except ValidationError as exc:
                raise self._fields.refusal(exc) from None
            except ValueError as exc:  # from_json
                raise InvalidEvent("not_json", f"not valid JSON: {exc}", "decode") from None
            pop = out.pop
            if spec.event_id is None:
                event_id = f"{record.topic}-{record.partition}-{record.offset}"
            else:
                event_id = pop(EVENT_ID)
            entity = _key_entity(record) if spec.entity is None else pop(ENTITY)
            if spec.time is None:
                ts = self._ts(None, record, None, "", now_ms)
            else:
                value = pop(TIME)
                ts = -1
                if self._iso and type(value) is str and not (self._auto and value.isdigit()):
                    try:  # the usual case inlined: an ISO-8601 time with its offset
                        ts = (_fromisoformat(value) - _EPOCH) // _MS
                    except (ValueError, TypeError, OverflowError):
                        ts = -1  # naive, digits or unparseable: epoch_ms says which
                if ts < 0 or now_ms is None or abs(ts - now_ms) > self.max_skew_ms:
                    ts = self._ts(value, record, spec.time, spec.time_format, now_ms)
            for text in self._optional:
                if out.get(text, 0) is None:
                    del out[text]
            categories = None
            if self._categorical:
                categories = {t: pop(t) for t in self._categorical if t in out}
            if self._include:
                self._add_globbed(doc, out)
            count = len(out) + (len(categories) if categories else 0)
            if count > self.max_features:
                raise InvalidEvent(
                    "too_many_features",
                    f"{count} features exceeds max_features={self.max_features}",
                )
            return MappedReading(event_id, entity, ts, out, categories, record)
        except InvalidEvent:
            raise
        except Exception as exc:  # a decoder refuses; it never raises anything else
            raise internal(exc, "validate") from None

    def _add_globbed(self, doc: dict[str, Any], features: dict[str, float]) -> None:
        for name, value in _numeric_leaves(doc, ""):
            if name in self._explicit:
                continue
            chosen = self._globbed.get(name)
            if chosen is None:
                chosen = any(fnmatch.fnmatchcase(name, g) for g in self._include) and not any(
                    fnmatch.fnmatchcase(name, g) for g in self._exclude
                )
                if len(self._globbed) < GLOB_CACHE:
                    self._globbed[name] = chosen
            if chosen:
                if type(value) is float and value - value != 0.0:
                    raise InvalidEvent("non_finite", f"{name}: NaN and infinity are not allowed")
                try:
                    features[name] = float(value)
                except OverflowError:
                    raise InvalidEvent("schema", f"{name}: {value:.3g} is too large") from None
                if len(features) > self.max_features:
                    raise InvalidEvent(
                        "too_many_features", f"more than max_features={self.max_features}"
                    )


def _numeric_leaves(node: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """Every number and boolean under ``node`` with its flattened dotted name."""
    items = node.items() if type(node) is dict else enumerate(node)
    for key, value in items:
        name = f"{prefix}{key}"
        kind = type(value)
        if kind is float or kind is int or kind is bool:
            yield name, value
        elif kind is dict or kind is list:
            yield from _numeric_leaves(value, name + ".")


class FeedbackExtractor(_Extractor):
    """Feedback from mapped records: the label (through the label map) and its event's id."""

    def __init__(self, spec: FeedbackMap, max_message_bytes: int, max_ts_skew_s: float) -> None:
        super().__init__(max_message_bytes, max_ts_skew_s)
        self.spec = spec
        fields = self._fields
        fields.add(EVENT_ID, spec.event_id, "text")
        fields.add(LABEL, spec.label, "any")
        if spec.entity is not None:
            fields.add(ENTITY, spec.entity, "text")
        if spec.time is not None:
            fields.add(TIME, spec.time, "any")
        self._validate_json = fields.validator().validate_json

    def feedback(self, record: Any, now_ms: int | None) -> Feedback:
        """The feedback in ``record``, or InvalidEvent; ``now_ms=None`` skips the skew check
        (a label re-read after a restart, or ``mapping check``)."""
        try:
            spec = self.spec
            raw = record.value
            if raw is None or len(raw) > self.max_message_bytes:
                raise self._size_refusal(raw)
            try:
                out = self._validate_json(raw)
            except ValidationError as exc:
                raise self._fields.refusal(exc) from None
            label = self.label(out[LABEL])
            entity = _key_entity(record) if spec.entity is None else out[ENTITY]
            ts = self._ts(out.get(TIME), record, spec.time, spec.time_format, now_ms)
            # Built without validation: every field was checked above.
            return Feedback.model_construct(
                event_id=out[EVENT_ID], sensor_id=entity, ts=ts, label=label
            )
        except InvalidEvent:
            raise
        except Exception as exc:
            raise internal(exc, "validate") from None

    def label(self, value: Any) -> Any:
        """The label the model learns: through the label map when there is one."""
        text = self.spec.label
        labels = self.spec.labels
        kind = type(value)
        if labels is not None:
            if kind is bool:
                value = "true" if value else "false"
            elif kind not in (str, int, float):
                raise InvalidEvent("schema", f"{text}: {_shown(value)} is not a label value")
            mapped = labels.get(str(value))
            if mapped is None:
                known = ", ".join(sorted(labels)[:10])
                raise InvalidEvent("schema", f"{text}: {_shown(value)} is not one of ({known})")
            return mapped
        if kind is float and value - value != 0.0:
            raise InvalidEvent("non_finite", f"{text}: NaN and infinity are not allowed")
        if kind is int and not -INT64_MAX - 1 <= value <= INT64_MAX:
            raise InvalidEvent("schema", f"{text}: {value:.3g} does not fit 64 bits")
        if kind is str and not 0 < len(value) <= MAX_TEXT:
            raise InvalidEvent("schema", f"{text}: a string of 1 to {MAX_TEXT} characters")
        if kind not in (bool, int, float, str):
            what = "null" if value is None else _shown(value)
            raise InvalidEvent("schema", f"{text}: {what} is not a label")
        return value
