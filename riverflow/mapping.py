"""Declarative payload mapping: where readings and feedback are in records of another shape.

A mapping file (TOML) tells infer, learn, replay and ``mapping check`` which topics to read and
where each part of a reading or a label is, as dotted paths (``metrics.temp_c``, ``a.b.0`` for
an array item). It is validated once, at start: a wrong key or type is a :class:`ConfigError`
(exit 2) naming the line and the key. The extractors that apply it are in
:mod:`riverflow.extract`.

>>> m = parse_mapping('[readings]\\nfeatures = ["metrics.temp_c"]\\n', "m.toml")
>>> m.readings.features, m.readings.time_format
(['metrics.temp_c'], 'auto')
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from riverflow.errors import ConfigError

TimeFormat = Literal["epoch_s", "epoch_ms", "epoch_us", "epoch_ns", "iso8601", "auto"]
ENV = "RIVERFLOW_MAPPING"

# A dotted path: non-empty parts without spaces; an all-digit part indexes an array.
_PATH = re.compile(r"^[^.\s]+(\.[^.\s]+)*$")
PathText = Annotated[str, Field(pattern=_PATH.pattern, max_length=512)]
Glob = Annotated[str, Field(min_length=1, max_length=512)]
LabelValue = Annotated[bool | int | float | str, Field(union_mode="left_to_right")]


def split_path(text: str) -> tuple[str | int, ...]:
    """``"a.b.0"`` as ``("a", "b", 0)``: digits index arrays."""
    return tuple(int(p) if p.isascii() and p.isdigit() else p for p in text.split("."))


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReadingsMap(_Table):
    """Where a reading's parts are. Omitted: ``event_id`` is ``<topic>-<partition>-<offset>``,
    ``entity`` the record key, ``time`` the record's Kafka timestamp."""

    topic: str | None = Field(None, min_length=1)  # default: the readings topic setting
    event_id: PathText | None = None
    entity: PathText | None = None
    time: PathText | None = None
    time_format: TimeFormat = "auto"
    features: list[PathText] = []
    # Numeric leaves (booleans too) whose flattened dotted name matches a glob, minus exclusions.
    include: list[Glob] = []
    exclude: list[Glob] = []
    categorical: list[PathText] = []  # strings, given to the model as categories
    optional: list[PathText] = []  # may be missing or null; every other listed path is required

    @model_validator(mode="after")
    def _consistent(self) -> ReadingsMap:
        if not self.features and not self.include and not self.categorical:
            raise ValueError("say which features to read: features, include or categorical")
        if self.exclude and not self.include:
            raise ValueError("exclude narrows include: give include too")
        listed = [*self.features, *self.categorical]
        twice = sorted({p for p in listed if listed.count(p) > 1})
        if twice:
            raise ValueError(f"listed twice in features/categorical: {', '.join(twice)}")
        unknown = sorted(set(self.optional) - set(listed))
        if unknown:
            raise ValueError(
                f"optional names paths that are not in features or categorical: "
                f"{', '.join(unknown)}"
            )
        return self


class FeedbackMap(_Table):
    """Where a label and the event it refers to are."""

    topic: str | None = Field(None, min_length=1)  # default: the feedback topic setting
    event_id: PathText  # joins to the reading's event_id
    label: PathText
    # The label's value as text -> the label the model learns; omitted: the value as it is.
    labels: dict[str, LabelValue] | None = None
    entity: PathText | None = None
    time: PathText | None = None
    time_format: TimeFormat = "auto"


class Mapping(_Table):
    readings: ReadingsMap
    feedback: FeedbackMap | None = None
    source: str = Field("mapping", exclude=True)  # the file, for messages

    def readings_topic(self, settings: Any) -> str:
        return self.readings.topic or settings.readings_topic

    def feedback_topic(self, settings: Any) -> str:
        fb = self.feedback
        return (fb.topic if fb is not None else None) or settings.feedback_topic


_TABLES: dict[str, type[_Table]] = {"readings": ReadingsMap, "feedback": FeedbackMap}


def mapping_of(settings: Any) -> Mapping | None:
    """The mapping the settings name (``--mapping``, ``RIVERFLOW_MAPPING``), or None."""
    return load_mapping(settings.mapping) if settings.mapping else None


def mapped_settings(settings: Any, mapping: Mapping | None) -> Any:
    """``settings`` with the readings and feedback topics the mapping names, so every part
    that reads or writes them (workers, replay, topics) follows the mapping."""
    if mapping is None:
        return settings
    return settings.model_copy(
        update={
            "readings_topic": mapping.readings_topic(settings),
            "feedback_topic": mapping.feedback_topic(settings),
        }
    )


def load_mapping(path: str | os.PathLike[str]) -> Mapping:
    """Read and validate a mapping file; any problem is a ConfigError naming line and key."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the mapping {file}: {exc}") from None
    return parse_mapping(text, str(file))


def parse_mapping(text: str, source: str) -> Mapping:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    try:
        return Mapping.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise ConfigError(_explain(exc, text, source)) from None


def _explain(exc: ValidationError, text: str, source: str) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        loc = tuple(p for p in error["loc"] if not _is_union_tag(p))
        where = ".".join(str(p) for p in loc) or "mapping"
        msg = error["msg"]
        if error["type"] == "extra_forbidden" and loc:
            msg = f"unknown key {loc[-1]!r}{_did_you_mean(loc)}"
        elif error["type"] == "missing":
            msg = "required key missing"
        line = _line_of(text, loc)
        at = f"line {line}: " if line else ""
        lines.append(f"  {at}{where}: {msg}")
    return f"invalid mapping {source}:\n" + "\n".join(lines)


def _is_union_tag(part: Any) -> bool:
    # pydantic names the union member it tried ("bool", "int", ...) in the location.
    return part in ("bool", "int", "float", "str")


def _did_you_mean(loc: tuple[Any, ...]) -> str:
    table: type[_Table] = Mapping
    for part in loc[:-1]:
        nested = _TABLES.get(str(part))
        if nested is None:
            return ""
        table = nested
    names = [n for n in table.model_fields if n != "source"]
    close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(names)})"


def _line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """The line that sets ``loc`` (or the nearest enclosing key or table) in the TOML text."""
    keys = [str(p) for p in loc if isinstance(p, str)]
    for depth in range(len(keys), 0, -1):
        table, key = ".".join(keys[: depth - 1]), keys[depth - 1]
        found = _find_key(text, table, key)
        if found:
            return found
    return None


def _find_key(text: str, table: str, key: str) -> int | None:
    current = ""
    assign = re.compile(rf"""\s*(?:{re.escape(key)}|"{re.escape(key)}"|'{re.escape(key)}')\s*=""")
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        header = re.fullmatch(r"\[\s*([^\[\]]+?)\s*\]\s*(#.*)?", stripped)
        if header:
            current = header.group(1)
            if current == f"{table}.{key}".lstrip("."):
                return number
            continue
        if current == table and assign.match(line):
            return number
    return None
