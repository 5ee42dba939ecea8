"""The issue's telemetry stream through infer and learn on the real broker, read through a
mapping: nested payload, ISO-8601 times, categorical status and site, outcomes on another topic
through a label map (fault -> true, ok -> false). Records the mapping cannot read become dead
letters naming the path."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from river import preprocessing

from riverflow.schemas import now_ms
from riverflow.topics import create_topics
from riverflow.transport import clients_for
from tests.integration.kit import Stack, Workers, wait_until
from tests.integration.learner_support import snapshots

pytestmark = pytest.mark.integration

N = 240
SITES = ("north", "south")
STATUSES = ("running", "idle", "starting")


def mapping_text(telemetry: str, outcomes: str) -> str:
    return f"""
[readings]
topic = "{telemetry}"
event_id = "msg_id"
entity = "device.id"
time = "measured_at"
time_format = "auto"
features = ["metrics.temp_c", "metrics.vibration", "metrics.rpm"]
categorical = ["status", "device.site"]
optional = ["metrics.rpm"]

[feedback]
topic = "{outcomes}"
event_id = "ref"
label = "outcome"
labels = {{ fault = true, ok = false }}
time = "at"
"""


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def telemetry(i: int, at: int) -> dict[str, Any]:
    site = SITES[i % 2]
    status = STATUSES[i % 3]
    temp = 60.0 + (i * 7) % 30
    metrics: dict[str, Any] = {"temp_c": temp, "vibration": 0.01 * (i % 5)}
    if i % 4:  # rpm is optional: every fourth reading has none
        metrics["rpm"] = 1400 + i % 100
    return {
        "msg_id": f"m-{i}",
        "device": {"id": f"pump-{i % 6}", "site": site},
        "measured_at": iso(at),
        "metrics": metrics,
        "status": status,
    }


def outcome(i: int) -> str:
    # Faults come from hot pumps in the north: the label depends on a category.
    return "fault" if SITES[i % 2] == "north" and 60.0 + (i * 7) % 30 > 74 else "ok"


def headers(record: Any) -> dict[str, str]:
    return {k: (v or b"").decode() for k, v in record.headers}


def test_mapped_telemetry_runs_through_infer_and_learn(
    stack: Any, workers: Workers, tmp_path: Path
) -> None:
    s: Stack = stack(partitions=2)
    uid = uuid.uuid4().hex[:8]
    topics = {"readings_topic": f"telemetry-{uid}", "feedback_topic": f"outcomes-{uid}"}
    create_topics(s.settings.model_copy(update=topics))
    mapping = tmp_path / "telemetry.toml"
    mapping.write_text(mapping_text(topics["readings_topic"], topics["feedback_topic"]))

    start = now_ms() - 600_000
    producer = clients_for(s.settings).producer()
    sent: dict[str, dict[str, Any]] = {}
    for i in range(N):
        value = telemetry(i, start + i * 100)
        sent[value["msg_id"]] = value
        key = value["device"]["id"].encode()
        producer.send(topics["readings_topic"], key, json.dumps(value).encode())
    bad = {
        "no-temp": {**telemetry(900, start), "metrics": {"vibration": 1}},
        "bad-time": {**telemetry(901, start), "measured_at": "yesterday"},
        "hot": {**telemetry(902, start), "metrics": {"temp_c": "hot", "vibration": 1}},
    }
    for name, value in bad.items():
        producer.send(topics["readings_topic"], name.encode(), json.dumps(value).encode())
    for i in range(N):
        label = {"ref": f"m-{i}", "outcome": outcome(i), "at": start + i * 100 + 5_000}
        producer.send(
            topics["feedback_topic"], f"pump-{i % 6}".encode(), json.dumps(label).encode()
        )
    unknown = {"ref": "m-0", "outcome": "maybe", "at": start}
    producer.send(topics["feedback_topic"], None, json.dumps(unknown).encode())
    assert producer.flush(30) == 0
    producer.close(10)

    # mapping check: what would be read, record by record, and nothing produced.
    check = s.run("mapping", "check", str(mapping), "--sample", str(N + 10), check=False)
    assert check.returncode == 1, check.stderr  # some records would be refused
    lines = check.stdout.splitlines()
    shown = [json.loads(line.split(" ok ", 1)[1]) for line in lines if " ok " in line]
    assert {r["event_id"] for r in shown if "features" in r} == set(sent)
    first = next(r for r in shown if r.get("event_id") == "m-1" and "features" in r)
    assert first["entity"] == "pump-1" and first["categories"] == {
        "status": "idle",
        "device.site": "south",
    }
    assert {r["label"] for r in shown if "label" in r} == {True, False}
    refusals = [line for line in lines if " REFUSED " in line]
    assert len(refusals) == 4 and any("metrics.temp_c: missing" in r for r in refusals)
    assert f"{topics['readings_topic']}: {N + 3} read, {N} readable, 3 refused" in lines
    assert f"{topics['feedback_topic']}: {N + 1} read, {N} readable, 1 refused" in lines
    assert s.read(s.settings.predictions_topic) == []
    assert s.read(s.settings.dead_letters_topic) == []

    infer = workers.spawn(s, "infer", "--model", "logreg", "--mapping", str(mapping))
    learn = workers.spawn(s, "learn", "--model", "logreg", env={"RIVERFLOW_MAPPING": str(mapping)})

    # Inference: one prediction per readable record, riverflow's shape plus where it came from.
    predictions = [json.loads(r.value) for r in s.read(s.settings.predictions_topic, expect=N)]
    assert sorted(p["event_id"] for p in predictions) == sorted(sent)
    for p in predictions:
        reading = sent[p["event_id"]]
        assert p["sensor_id"] == reading["device"]["id"]
        assert iso(p["event_ts"]) == reading["measured_at"]
        assert p["categories"] == {
            "status": reading["status"],
            "device.site": reading["device"]["site"],
        }
        expected = {f"metrics.{k}": float(v) for k, v in reading["metrics"].items()}
        assert p["features"] == expected
        assert p["source"]["key"] == reading["device"]["id"]
        assert p["source"]["topic"] == topics["readings_topic"]
        assert isinstance(p["source"]["offset"], int) and p["source"]["partition"] in (0, 1)
        assert isinstance(p["prediction"], bool)

    # Dead letters name the path and what was wrong: three readings, one label.
    letters = wait_until(
        lambda: (lambda rs: rs if len(rs) >= 4 else None)(s.read(s.settings.dead_letters_topic)),
        timeout=90,
        what="four dead letters",
    )
    reasons = {(r.key or b"").decode(): headers(r)["riverflow-reason"] for r in letters}
    assert "metrics.temp_c: missing" in reasons["no-temp"]
    assert "measured_at: unparseable time" in reasons["bad-time"]
    assert "metrics.temp_c: not a number ('hot')" in reasons["hot"]
    assert any("outcome: 'maybe' is not one of (fault, ok)" in r for r in reasons.values())

    # The learner joined every mapped outcome to its mapped reading and learned it.
    page = learn.wait_for(
        lambda p: (
            p.sum("riverflow_learned_total") >= N
            and (p.sum("riverflow_feedback_total", outcome="invalid") or 0) >= 1
        ),
        timeout=120,
    )
    assert page.sum("riverflow_learned_total") == N
    assert page.sum("riverflow_feedback_total", outcome="joined") == N
    assert page.sum("riverflow_feedback_total", outcome="invalid") == 1
    accuracy = page.max(
        "riverflow_model_metric", source="learner", metric="accuracy", window="cumulative"
    )
    assert accuracy is not None and accuracy > 0.5
    assert infer.value("riverflow_invalid_events_total", reason="schema") == 3
    assert learn.stop() == 0 and infer.stop() == 0

    # The model learned booleans (the label map), with the categories one-hot encoded.
    final = snapshots(s, "logreg")[-1]
    assert final.header.learned_count == N
    model = final.model
    assert any(isinstance(step, preprocessing.OneHotEncoder) for step in _steps(model))
    x = {
        "metrics.temp_c": 85.0,
        "metrics.vibration": 0.02,
        "status": "running",
        "device.site": "north",
    }
    assert set(model.predict_proba_one(x)) == {False, True}


def _steps(model: Any) -> list[Any]:
    """Every estimator inside a River pipeline or union, depth first."""
    found = [model]
    for child in getattr(model, "steps", {}).values() if hasattr(model, "steps") else []:
        found += _steps(child)
    for child in (
        getattr(model, "transformers", {}).values() if hasattr(model, "transformers") else []
    ):
        found += _steps(child)
    return found


def test_replay_writes_a_csv_in_the_mapped_shape(stack: Any, tmp_path: Path) -> None:
    """replay --mapping sends rows to the mapped topics as the mapped system would, and the
    mapping reads every one of them back (mapping check, exit 0)."""
    s: Stack = stack(partitions=2)
    uid = uuid.uuid4().hex[:8]
    mapping = tmp_path / "telemetry.toml"
    mapping.write_text(mapping_text(f"telemetry-{uid}", f"outcomes-{uid}"))
    rows = ["msg,device,temp_c,vibration,rpm,status,site,outcome"]
    for i in range(30):
        rpm = "" if i % 4 == 0 else str(1400 + i)  # optional: left empty
        rows.append(
            f"m-{i},pump-{i % 3},{60 + i},{i / 100},{rpm},{STATUSES[i % 3]},"
            f"{SITES[i % 2]},{'true' if i % 5 == 0 else 'false'}"
        )
    csv = tmp_path / "telemetry.csv"
    csv.write_text("\n".join(rows) + "\n")
    s.run("topics", "create", "--mapping", str(mapping))
    s.run(
        "replay",
        str(csv),
        "--target",
        "outcome",
        "--id-column",
        "msg",
        "--sensor-column",
        "device",
        "--mapping",
        str(mapping),
    )
    check = s.run("mapping", "check", str(mapping), "--sample", "100")
    lines = check.stdout.splitlines()
    shown = {}
    for line in lines:
        if " ok " in line:
            record = json.loads(line.split(" ok ", 1)[1])
            shown.setdefault(record["event_id"], {}).update(record)
    assert len(shown) == 30
    assert shown["m-1"]["features"] == {
        "metrics.temp_c": 61.0,
        "metrics.vibration": 0.01,
        "metrics.rpm": 1401.0,
    }
    assert "metrics.rpm" not in shown["m-0"]["features"]
    assert shown["m-1"]["categories"] == {"status": "idle", "device.site": "south"}
    assert shown["m-1"]["entity"] == "pump-1"
    assert [shown[f"m-{i}"]["label"] for i in range(6)] == [True, False, False, False, False, True]
    assert f"telemetry-{uid}: 30 read, 30 readable, 0 refused" in lines
    assert f"outcomes-{uid}: 30 read, 30 readable, 0 refused" in lines
    raw = json.loads(s.read(f"telemetry-{uid}", expect=30)[0].value)
    assert set(raw) == {"msg_id", "device", "measured_at", "metrics", "status"}
