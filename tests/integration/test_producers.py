"""``riverflow simulate`` and ``riverflow replay`` against the real broker."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from river import datasets

from riverflow.schemas import Decoder, now_ms
from tests.integration.kit import Stack, wait_until

pytestmark = pytest.mark.integration


def values(records: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in records]


def test_simulate_sends_every_reading_and_a_matching_label(stack: Any) -> None:
    s: Stack = stack(partitions=3)
    result = s.run(
        "simulate", "--count", "1000", "--rate", "0", "--label-fraction", "1", "--label-delay", "0"
    )
    assert "sent 1,000 readings and 1,000 labels" in result.stderr
    readings = s.read(s.settings.readings_topic, expect=1000)
    feedback = s.read(s.settings.feedback_topic, expect=1000)
    assert len(readings) == 1000 and len(feedback) == 1000
    ids = [v["event_id"] for v in values(readings)]
    assert len(set(ids)) == 1000
    assert sorted(v["event_id"] for v in values(feedback)) == sorted(ids)

    decoder = Decoder.from_settings(s.settings)
    partition_of: dict[bytes, set[int]] = {}
    for r in readings:
        reading = decoder.reading(r.value, now_ms())  # the contract consumers enforce
        assert r.key == reading.sensor_id.encode()
        assert set(json.loads(r.value)) == {"event_id", "sensor_id", "ts", "features"}
        partition_of.setdefault(r.key, set()).add(r.partition)
    assert all(len(parts) == 1 for parts in partition_of.values())  # a sensor keeps its order
    for r in feedback:
        label = decoder.feedback(r.value, now_ms())
        assert r.key == label.sensor_id.encode() and label.label in (0, 1)


def test_two_runs_with_one_seed_repeat_the_content_under_new_ids(stack: Any) -> None:
    s: Stack = stack(partitions=1)
    for _ in range(2):
        s.run("simulate", "--count", "200", "--rate", "0", "--seed", "7", "--label-delay", "0")
    readings = values(s.read(s.settings.readings_topic, expect=400))
    assert len({r["event_id"] for r in readings}) == 400
    first, second = readings[:200], readings[200:]
    assert [(r["sensor_id"], r["features"]) for r in first] == [
        (r["sensor_id"], r["features"]) for r in second
    ]


def test_sigterm_stops_cleanly_and_sends_labels_not_yet_due(stack: Any, tmp_path: Path) -> None:
    s: Stack = stack(partitions=2)
    log = tmp_path / "simulate.log"
    proc = s.start("simulate", "--rate", "100", "--label-delay", "60", log_path=str(log))
    try:
        wait_until(lambda: "readings" in log.read_text(), 60, "simulate's first progress line")
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "before their delay has passed" in text and "stopped by SIGTERM" in text
    readings = values(s.read(s.settings.readings_topic))
    feedback = values(s.read(s.settings.feedback_topic, expect=len(readings)))
    assert readings and sorted(f["event_id"] for f in feedback) == sorted(
        r["event_id"] for r in readings
    )


def test_replay_phishing_in_order_with_each_label_right_after_its_reading(stack: Any) -> None:
    s: Stack = stack(partitions=3)
    s.run("replay", "phishing", "--label-delay-events", "0")
    readings = s.read(s.settings.readings_topic, expect=1250)
    feedback = s.read(s.settings.feedback_topic, expect=1250)
    assert len(readings) == 1250 and len(feedback) == 1250
    assert {r.partition for r in readings} == {readings[0].partition}  # one sensor, one partition
    rows = list(datasets.Phishing())
    got = values(sorted(readings, key=lambda r: r.offset))
    prefix = got[0]["event_id"].rsplit("-", 1)[0]
    assert [r["event_id"] for r in got] == [f"{prefix}-{i}" for i in range(1250)]
    assert [r["features"] for r in got] == [x for x, _ in rows]
    assert {r["sensor_id"] for r in got} == {"phishing"}
    labels = {f["event_id"]: f["label"] for f in values(feedback)}
    assert [labels[r["event_id"]] for r in got] == [y for _, y in rows]


def test_csv_round_trip(stack: Any, tmp_path: Path) -> None:
    s: Stack = stack(partitions=2)
    ts = now_ms() - 5000
    csv = tmp_path / "plant.csv"
    csv.write_text(
        "id,machine,when,temp,status,label\n"
        f"r1,m1,{ts},20.5,ok,true\n"
        f"r2,m2,{ts + 1},21.0,ok,\n"
        f"r3,m1,,22.5,hot,false\n"
    )
    s.run(
        "replay",
        str(csv),
        "--target", "label",
        "--id-column", "id",
        "--sensor-column", "machine",
        "--ts-column", "when",
        "--label-delay", "0.2",
    )  # fmt: skip
    readings = {r["event_id"]: r for r in values(s.read(s.settings.readings_topic, expect=3))}
    feedback = {f["event_id"]: f for f in values(s.read(s.settings.feedback_topic, expect=2))}
    assert readings["r1"] == {
        "event_id": "r1",
        "sensor_id": "m1",
        "ts": ts,
        "features": {"temp": 20.5},
    }
    assert readings["r2"]["ts"] == ts + 1 and readings["r2"]["sensor_id"] == "m2"
    assert readings["r3"]["ts"] >= ts and readings["r3"]["features"] == {"temp": 22.5}
    assert {k: f["label"] for k, f in feedback.items()} == {"r1": True, "r3": False}
    assert feedback["r1"]["sensor_id"] == "m1"


def test_a_bad_csv_row_exits_2_after_sending_the_rows_before_it(stack: Any, tmp_path: Path) -> None:
    s: Stack = stack(partitions=1)
    csv = tmp_path / "broken.csv"
    csv.write_text("x,y\n1,0\n2,1\n3\n4,0\n")
    result = s.run("replay", str(csv), "--target", "y", "--label-delay", "30", check=False)
    assert result.returncode == 2
    assert "broken.csv line 4: 1 fields, the header has 2" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(s.read(s.settings.readings_topic, expect=2)) == 2
    assert len(s.read(s.settings.feedback_topic, expect=2)) == 2  # owed labels still sent
