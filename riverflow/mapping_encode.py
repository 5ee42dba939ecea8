"""The inverse of a mapping: riverflow's readings and labels written in the mapped shape.

``riverflow replay --mapping FILE`` sends a dataset or CSV to the mapped topics as the mapped
system would, so a mapping can be tried end to end before real records arrive. A column goes to
the mapping path it names, whole (``metrics.temp_c``) or by its last part (``temp_c``); other
columns go to their own name as a path (which ``include`` globs may pick up). Times are written
in the mapping's format (ISO-8601 for ``iso8601`` and ``auto``), labels back through the label
map.

>>> from riverflow.mapping import parse_mapping
>>> m = parse_mapping('''[readings]
... event_id = "id"
... entity = "dev.id"
... time = "at"
... features = ["m.temp_c"]
... categorical = ["status"]
... [feedback]
... event_id = "ref"
... label = "outcome"
... labels = { fault = true, ok = false }
... ''', "m")
>>> enc = MappedEncoder(m)
>>> enc.reading("e1", "p7", 0, {"temp_c": 71.5}, {"status": "on"})
b'{"id":"e1","dev":{"id":"p7"},"at":"1970-01-01T00:00:00.000Z","m":{"temp_c":71.5},"status":"on"}'
>>> enc.feedback("e1", "p7", 0, True)
b'{"ref":"e1","outcome":"fault"}'
"""

from __future__ import annotations

from collections.abc import Mapping as AnyMapping
from datetime import UTC, datetime
from typing import Any

import orjson

from riverflow.errors import ConfigError
from riverflow.mapping import Mapping, split_path

_PER_MS = {"epoch_s": 1e-3, "epoch_ms": 1, "epoch_us": 1_000, "epoch_ns": 1_000_000}


def _put(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set ``value`` at the dotted ``path``, making objects (and arrays for digit parts)."""
    parts = split_path(path)
    node: Any = doc
    for part, following in zip(parts, parts[1:], strict=False):
        child: Any = [] if isinstance(following, int) else {}
        if isinstance(node, list):
            assert isinstance(part, int)
            node.extend([None] * (part + 1 - len(node)))
            node[part] = node[part] if node[part] is not None else child
            node = node[part]
        else:
            node = node.setdefault(str(part), child)
    last = parts[-1]
    if isinstance(node, list):
        assert isinstance(last, int)
        node.extend([None] * (last + 1 - len(node)))
        node[last] = value
    else:
        node[str(last)] = value


def _time(ms: int, fmt: str) -> Any:
    if fmt in ("iso8601", "auto"):
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    per_ms = _PER_MS[fmt]
    return ms * per_ms if fmt == "epoch_s" else int(ms * per_ms)


class MappedEncoder:
    """Readings and feedback as records of the mapped shape (see the module's docstring)."""

    def __init__(self, mapping: Mapping) -> None:
        self.mapping = mapping
        r = mapping.readings
        self._paths = {p: p for p in [*r.features, *r.categorical]}
        for path in [*r.features, *r.categorical]:
            self._paths.setdefault(path.rsplit(".", 1)[-1], path)
        labels = mapping.feedback.labels if mapping.feedback else None
        # The first name of each label value: what the mapped system would have written.
        self._label_names: dict[Any, str] = {}
        for name, value in (labels or {}).items():
            self._label_names.setdefault((type(value), value), name)

    def reading(
        self,
        event_id: str,
        entity: str,
        ts: int,
        features: AnyMapping[str, float],
        categories: AnyMapping[str, str] | None = None,
    ) -> bytes:
        r = self.mapping.readings
        doc: dict[str, Any] = {}
        if r.event_id:
            _put(doc, r.event_id, event_id)
        if r.entity:
            _put(doc, r.entity, entity)
        if r.time:
            _put(doc, r.time, _time(ts, r.time_format))
        for name, value in {**features, **(categories or {})}.items():
            _put(doc, self._paths.get(name, name), value)
        return orjson.dumps(doc)

    def feedback(self, event_id: str, entity: str, ts: int, label: Any) -> bytes:
        fb = self.mapping.feedback
        if fb is None:
            raise ConfigError(f"{self.mapping.source} has no [feedback] table: labels cannot go")
        doc: dict[str, Any] = {}
        _put(doc, fb.event_id, event_id)
        if fb.labels is not None:
            name = self._label_names.get((type(label), label))
            if name is None:
                raise ConfigError(f"label {label!r} is not a value of the mapping's label map")
            label = name
        _put(doc, fb.label, label)
        if fb.entity:
            _put(doc, fb.entity, entity)
        if fb.time:
            _put(doc, fb.time, _time(ts, fb.time_format))
        return orjson.dumps(doc)
