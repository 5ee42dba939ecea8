from __future__ import annotations

import gzip
import logging
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from river.datasets import base

from riverflow.errors import ConfigError
from riverflow.producers.events import Outgoing
from riverflow.producers.tabular import (
    FeatureCleaner,
    feature_value,
    offline_datasets,
    open_source,
    parse_label,
    parse_ts,
    to_events,
)
from riverflow.schemas import wire_label


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.5", 1.5),
        (" 2 ", 2.0),
        ("-3e2", -300.0),
        ("true", 1.0),
        ("FALSE", 0.0),
        (True, 1.0),
        (7, 7.0),
        (np.float32(0.5), 0.5),
        (datetime(2020, 1, 1, tzinfo=UTC), 1577836800.0),
        ("", None),
        ("NaN", None),
        ("n/a", None),
        ("inf", None),
        (float("-inf"), None),
        (None, None),
    ],
)
def test_feature_values(value: object, expected: float | None) -> None:
    assert feature_value(value) == expected


@pytest.mark.parametrize("value", ["abc", "1,5", [1], {"a": 1}])
def test_non_numbers_raise(value: object) -> None:
    with pytest.raises(ValueError):
        feature_value(value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", 1), (" 0 ", 0), ("1.5", 1.5), ("True", True), ("cat", "cat"), ("", None), ("NaN", None)],
)
def test_csv_labels(text: str, expected: object) -> None:
    label = parse_label(text)
    assert label == expected and type(label) is type(expected)


def test_labels_from_numpy_become_plain_python() -> None:
    assert type(wire_label(np.int64(3))) is int
    assert type(wire_label(np.bool_(True))) is bool
    assert wire_label(float("nan")) is None


def test_ts_cells() -> None:
    assert parse_ts("1700000000000") == 1_700_000_000_000
    assert parse_ts("2024-01-01T00:00:00Z") == "2024-01-01T00:00:00Z"  # validated downstream
    assert parse_ts(" ") is None


def write(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def replay(path: Path | str, **kw: str) -> tuple[list[Outgoing], FeatureCleaner]:
    cleaner = FeatureCleaner()
    table = open_source(str(path), **kw)
    return list(to_events(table, id_prefix="run", label_delay=1.0, cleaner=cleaner)), cleaner


def test_csv_rows_become_readings_in_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "id,sensor,when,temp,ok,y\na,s1,1700000000000,20.5,true,1\n\n,,,21,false,\nc,s2,,,yes,0\n",
    )
    events, _ = replay(path, target="y", id_column="id", sensor_column="sensor", ts_column="when")
    assert [e.event_id for e in events] == ["a", "run-1", "c"]
    assert [e.sensor_id for e in events] == ["s1", "data", "s2"]
    assert [e.ts for e in events] == [1_700_000_000_000, None, None]
    assert [e.features for e in events] == [
        {"temp": 20.5, "ok": 1.0},
        {"temp": 21.0, "ok": 0.0},
        {},
    ]
    assert [e.label for e in events] == [1, None, 0]  # a missing target: reading, no feedback


def test_a_non_numeric_column_is_left_out_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, "city,x,y\nParis,1,a\nOslo,2,b\nRome,3,a\n")
    with caplog.at_level(logging.WARNING, logger="riverflow.producers.tabular"):
        events, cleaner = replay(path, target="y")
    assert [e.features for e in events] == [{"x": 1.0}, {"x": 2.0}, {"x": 3.0}]
    assert [e.label for e in events] == ["a", "b", "a"]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "city" in warnings[0] and "'Paris'" in warnings[0]
    assert cleaner.dropped == {"city": 3}


def test_gzip_and_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "data.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8-sig") as f:
        f.write("x,y\n1,2\n")
    events, _ = replay(path, target="y")
    assert events[0].features == {"x": 1.0} and events[0].label == 2
    assert events[0].sensor_id == "data"


@pytest.mark.parametrize(
    ("text", "kw", "message"),
    [
        ("", {"target": "y"}, "is empty"),
        ("x,y\n1,2\n", {"target": "label"}, "--target 'label' is not a column"),
        (
            "x,y\n1,2\n",
            {"target": "y", "sensor_column": "s"},
            "--sensor-column 's' is not a column",
        ),
        ("x,x,y\n1,2,3\n", {"target": "y"}, "repeats column names: x"),
        ("x,y\n1,2\n3\n", {"target": "y"}, "line 3: 1 fields, the header has 2"),
        ("x,y\n1,2,3\n", {"target": "y"}, "line 2: 3 fields"),
        ('x,y\n"1,2\n', {"target": "y"}, "line"),
    ],
)
def test_bad_csv_files_are_config_errors(
    tmp_path: Path, text: str, kw: dict[str, str], message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message):
        replay(path, **kw)


def test_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(ConfigError, match="cannot read CSV file .*folder.csv"):
        replay(tmp_path / "folder.csv", target="y")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("x,y\n1,caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        replay(latin, target="y")


def test_a_csv_needs_a_target_and_a_dataset_refuses_csv_options(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--target is required"):
        open_source(str(write(tmp_path, "x,y\n1,2\n")))
    with pytest.raises(ConfigError, match="are for CSV files"):
        open_source("phishing", target="is_phishing")


@pytest.mark.parametrize("target", [None, "label"])
def test_a_missing_csv_file_is_named_before_anything_else(
    tmp_path: Path, target: str | None
) -> None:
    missing = tmp_path / "nosuchfile.csv"
    with pytest.raises(ConfigError, match=f"CSV file {missing} does not exist"):
        open_source(str(missing), target=target)


@pytest.mark.parametrize("name", ["phishing", "Phishing", "PHISHING"])
def test_dataset_names_are_case_insensitive(name: str) -> None:
    events, _ = replay(name)
    assert len(events) == 1250
    assert {e.sensor_id for e in events} == {"phishing"}
    assert [e.event_id for e in events[:2]] == ["run-0", "run-1"]
    assert all(type(e.label) is bool for e in events)


def test_shipped_datasets_replay_with_numeric_features() -> None:
    segments, _ = replay("image-segments")
    assert len(segments) == 2310 and type(segments[0].label) is str
    water, _ = replay("waterflow")  # its only feature is a datetime: POSIX seconds
    assert set(water[0].features) == {"Time"} and water[1].features["Time"] > 1e9


def test_datasets_that_need_a_download_are_refused_naming_the_offline_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(base.RemoteDataset, "is_downloaded", property(lambda self: False))
    with pytest.raises(ConfigError, match="Elec2 must be downloaded") as exc:
        open_source("elec2")
    assert "Phishing" in str(exc.value) and "Bananas" in str(exc.value)
    assert "Elec2" not in offline_datasets()
    with pytest.raises(ConfigError, match="several targets per row"):
        open_source("yeast")
    with pytest.raises(ConfigError, match="neither a CSV file nor a River dataset"):
        open_source("no-such-thing")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/nonexistent/readings.csv", "--target", "y"], "/nonexistent/readings.csv does not"),
        (["nosuchfile.csv"], "CSV file nosuchfile.csv does not exist"),
        (["elec2x"], "datasets that work offline"),
        (["phishing", "--label-delay", "1", "--label-delay-events", "1"], "not allowed with"),
    ],
)
def test_bad_replay_input_exits_2_with_a_clear_message(args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "riverflow", "replay", "--bootstrap-servers", "127.0.0.1:1", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
