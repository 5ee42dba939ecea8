"""Rows to replay: a River dataset that ships with the package, or a CSV file. No Kafka here.

Values become features this way (one rule for datasets and CSV cells):

- numbers (and numeric strings) -> float; ``true``/``false`` and booleans -> 1.0/0.0;
  datetimes (River's WaterFlow, AirlinePassengers) -> POSIX seconds;
- empty cells, ``NA``, ``N/A``, ``NaN``, ``null``, ``None`` and infinities -> missing: the key is
  left out of that reading (River models take sparse dicts);
- anything else is not a number: the value is left out, and the first time a column has such a
  value one warning names it; :attr:`FeatureCleaner.dropped` counts them for the summary.

A CSV target cell is parsed as bool, int, float or else kept as a string; a missing target means
the reading is sent without feedback. Structural problems (no file, no header, an unknown
column, a row with the wrong number of fields, bytes that are not UTF-8) are a
:class:`~riverflow.errors.ConfigError`, raised when met: the rows before it have been sent.
"""

from __future__ import annotations

import csv
import gzip
import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from river import datasets
from river.datasets import base

from riverflow.errors import ConfigError
from riverflow.producers.events import Outgoing
from riverflow.schemas import Label, wire_label

log = logging.getLogger(__name__)

MISSING = frozenset({"", "na", "n/a", "nan", "null", "none"})
MULTI_OUTPUT = frozenset({base.MO_BINARY_CLF, base.MO_REG})


@dataclass(frozen=True, slots=True)
class Row:
    x: dict[str, Any]
    y: Any
    event_id: str | None = None
    sensor_id: str | None = None
    ts: int | str | None = None


@dataclass(frozen=True)
class Table:
    """Rows in order; ``name`` is the sensor id of rows that do not name one."""

    name: str
    rows: Iterable[Row]


def feature_value(value: Any) -> float | None:
    """A value as a feature; None when missing. Raises ValueError when it is not a number."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        text = value.strip().lower()
        if text in MISSING:
            return None
        if text in ("true", "false"):
            return float(text == "true")
        number = float(text)
    else:
        try:
            number = float(value)  # bool, int, float and numpy scalars
        except TypeError:
            raise ValueError(f"{type(value).__name__} is not a number") from None
    return number if math.isfinite(number) else None


def parse_label(text: str) -> Label | None:
    """A CSV target cell: bool, int, float, else the text itself; None when missing."""
    text = text.strip()
    if text.lower() in MISSING:
        return None
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else None


def parse_ts(text: str) -> int | str | None:
    """Epoch milliseconds stay numbers; other text passes through (ISO-8601 is accepted
    downstream, anything else goes to dead letters there); empty means the send time."""
    text = text.strip()
    if not text:
        return None
    try:
        return int(float(text))
    except ValueError:
        return text


class FeatureCleaner:
    """Turns a row's values into features; remembers which columns had non-numeric values."""

    def __init__(self) -> None:
        self.dropped: Counter[str] = Counter()

    def __call__(self, x: dict[Any, Any]) -> dict[str, float]:
        features: dict[str, float] = {}
        new: list[str] = []
        for key, value in x.items():
            name = str(key)
            try:
                number = feature_value(value)
            except ValueError:
                if name not in self.dropped:
                    new.append(f"{name} (e.g. {value!r})")
                self.dropped[name] += 1
                continue
            if number is not None:
                features[name] = number
        if new:
            log.warning("leaving out values that are not numbers in: %s", ", ".join(new))
        return features


def to_events(
    table: Table,
    *,
    id_prefix: str,
    label_delay: float,
    cleaner: FeatureCleaner,
    categorical: frozenset[str] = frozenset(),
) -> Iterator[Outgoing]:
    """Readings in table order; rows without an id get ``<id_prefix>-<row number>``. Columns
    named in ``categorical`` keep their text (``replay --mapping``)."""
    for seq, row in enumerate(table.rows):
        x, categories = row.x, None
        if categorical:
            categories = {str(k): str(v) for k, v in x.items() if k in categorical and v != ""}
            x = {k: v for k, v in x.items() if k not in categorical}
        yield Outgoing(
            event_id=row.event_id or f"{id_prefix}-{seq}",
            sensor_id=row.sensor_id or table.name,
            features=cleaner(x),
            label=wire_label(row.y),
            label_delay=label_delay,
            ts=row.ts,
            categories=categories,
        )


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _river_datasets() -> dict[str, base.FileDataset]:
    """Every file-backed River dataset by normalised name; making one reads nothing yet."""
    found = {}
    for name in datasets.__all__:
        cls = getattr(datasets, name)
        if isinstance(cls, type) and issubclass(cls, base.FileDataset):
            found[_key(name)] = getattr(datasets, name)()  # Any: subclasses take no filename
    return found


def _usable_offline(ds: base.FileDataset) -> bool:
    if ds.task in MULTI_OUTPUT:
        return False
    return not isinstance(ds, base.RemoteDataset) or ds.is_downloaded


def offline_datasets() -> list[str]:
    """River datasets this machine can replay now: shipped in the package (or downloaded),
    one target per row."""
    return sorted(type(ds).__name__ for ds in _river_datasets().values() if _usable_offline(ds))


def dataset_size(name: str) -> int | None:
    """How many rows the River dataset ``name`` has; None for anything else (a CSV file)."""
    ds = _river_datasets().get(_key(name))
    n = getattr(ds, "n_samples", None)
    return n if isinstance(n, int) else None


def open_dataset(name: str) -> Table:
    """A River dataset by name, case-insensitive (``phishing``, ``image-segments``)."""
    ds = _river_datasets().get(_key(name))
    works = "datasets that work offline: " + ", ".join(offline_datasets())
    if ds is None:
        raise ConfigError(f"{name!r} is neither a CSV file nor a River dataset; {works}")
    title = type(ds).__name__
    if ds.task in MULTI_OUTPUT:
        raise ConfigError(f"{title} has several targets per row ({ds.task}); {works}")
    if not _usable_offline(ds):
        raise ConfigError(f"{title} must be downloaded from the internet; {works}")
    return Table(title.lower(), (Row(x, y) for x, y in ds))


def open_source(
    source: str,
    *,
    target: str | None = None,
    id_column: str | None = None,
    sensor_column: str | None = None,
    ts_column: str | None = None,
) -> Table:
    """``source`` is a CSV file (an existing file, or a name ending in .csv / .csv.gz) or else a
    River dataset name."""
    lowered = source.lower()
    if lowered.endswith((".csv", ".csv.gz")) or Path(source).is_file():
        if not Path(source).exists():  # said first: a missing --target is not the problem
            raise ConfigError(f"CSV file {source} does not exist")
        if target is None:
            raise ConfigError("--target is required for a CSV file: name its label column")
        return open_csv(Path(source), target, id_column, sensor_column, ts_column)
    if any(c is not None for c in (target, id_column, sensor_column, ts_column)):
        raise ConfigError(
            "--target, --id-column, --sensor-column and --ts-column are for CSV files; "
            f"River datasets bring their own target ({source!r} is not a file)"
        )
    return open_dataset(source)


def open_csv(
    path: Path,
    target: str,
    id_column: str | None = None,
    sensor_column: str | None = None,
    ts_column: str | None = None,
) -> Table:
    """Checks the header now (so a wrong column fails before anything is sent); rows stream."""
    try:
        handle = _open_text(path)
        reader = csv.reader(handle)  # one reader, so its line numbers count the header
        header = next(reader, None)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read CSV file {path}: {_why(exc)}") from None
    if not header:
        handle.close()
        raise ConfigError(f"CSV file {path} is empty: expected a header row naming the columns")
    header = [h.strip() for h in header]
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        handle.close()
        raise ConfigError(f"CSV file {path} repeats column names: {', '.join(duplicates)}")
    roles = {
        "--target": target,
        "--id-column": id_column,
        "--sensor-column": sensor_column,
        "--ts-column": ts_column,
    }
    for flag, column in roles.items():
        if column is not None and column not in header:
            handle.close()
            raise ConfigError(
                f"{flag} {column!r} is not a column of {path}; columns: {', '.join(header)}"
            )
    rows = _csv_rows(path, handle, reader, header, target, id_column, sensor_column, ts_column)
    return Table(path.name.split(".")[0], rows)


def _open_text(path: Path) -> IO[str]:
    # utf-8-sig drops the byte-order mark spreadsheets put in front of the header.
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return path.open(encoding="utf-8-sig", newline="")


def _why(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "it is not UTF-8 text"
    return getattr(exc, "strerror", None) or str(exc)


def _csv_rows(
    path: Path,
    handle: IO[str],
    reader: Any,
    header: list[str],
    target: str,
    id_col: str | None,
    sensor_col: str | None,
    ts_col: str | None,
) -> Iterator[Row]:
    special = {c for c in (target, id_col, sensor_col, ts_col) if c is not None}
    try:
        for fields in reader:
            if not fields:
                continue  # a blank line
            if len(fields) != len(header):
                raise ConfigError(
                    f"{path} line {reader.line_num}: {len(fields)} fields, the header has "
                    f"{len(header)}"
                )
            cells = dict(zip(header, fields, strict=True))
            yield Row(
                x={k: v for k, v in cells.items() if k not in special},
                y=parse_label(cells[target]),
                event_id=(cells[id_col].strip() or None) if id_col else None,
                sensor_id=(cells[sensor_col].strip() or None) if sensor_col else None,
                ts=parse_ts(cells[ts_col]) if ts_col else None,
            )
    except (csv.Error, OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} line {reader.line_num}: {_why(exc)}") from None
    finally:
        handle.close()
