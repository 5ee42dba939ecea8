"""`riverflow up` as a user runs it: its own broker, a live summary, and nothing left behind."""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaProducer

from riverflow.settings import kafka_kwargs
from tests.integration.kit import Stack, free_port

pytestmark = pytest.mark.integration


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_up_runs_the_pipeline_and_stops_everything(tmp_path: Path) -> None:
    kafka_port = random.randint(30000, 34000)
    metrics_base = random.randint(35000, 39000)
    ports = [kafka_port, metrics_base, metrics_base + 1, metrics_base + 3]
    assert not any(listening(p) for p in ports)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIVERFLOW_")}
    env["XDG_STATE_HOME"] = str(tmp_path)  # broker storage and run logs stay in the test's dir
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "riverflow",
            "up",
            "--duration",
            "45",
            "--kafka-port",
            str(kafka_port),
            "--metrics-port",
            str(metrics_base),
            "--drift-at",
            "0",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert f"starting local Kafka on 127.0.0.1:{kafka_port} with clean state" in out
    summaries = [line for line in out.splitlines() if "predictions/s" in line]
    assert len(summaries) >= 3  # refreshed while it ran (every 5 s when not a terminal)
    assert "final summary:" in out
    final = out.split("final summary:")[1]
    total = int(final.split("total")[1].split()[0].replace(",", ""))
    assert total > 1000  # ~200 readings/s for 45 s went through inference
    # Served vs learner: the version that served most predictions, and the served model's lag.
    assert re.search(
        r"served model +v\d+ for \d+% of predictions; trails the learner by \d+ versions? "
        r"\(median\)",
        final,
    ), final
    assert re.search(r"ready +3/3 workers", final), final  # every worker's /readyz said 200
    assert "stopping: simulator, inference, learner, the broker" in out
    assert not any(listening(p) for p in ports), "a worker or the broker is still running"
    assert not (tmp_path / "riverflow" / "up" / f"kafka-{kafka_port}" / "broker.pid").exists()
    # The demo is signed: a private key in the state directory, snapshots verified and served.
    key_file = tmp_path / "riverflow" / "signing.key"
    assert f"model snapshots are signed with the key in {key_file}" in out
    assert key_file.stat().st_mode & 0o777 == 0o600
    logs = {p.name: p.read_text() for p in (tmp_path / "riverflow" / "up").glob("*/*.log")}
    assert "swapped in logreg v" in logs["inference-0.log"]
    assert not [name for name, text in logs.items() if "refused a snapshot" in text]


def up(env: dict[str, str], *args: str) -> str:
    """Run ``riverflow up ARGS`` briefly on free metrics ports; its stdout."""
    metrics = free_port_run(4)
    result = subprocess.run(
        [sys.executable, "-m", "riverflow", "up", "--metrics-port", str(metrics), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def free_port_run(n: int) -> int:
    """The first of ``n`` consecutive free ports (up's workers take base, base+1, base+3)."""
    for _ in range(100):
        base = free_port()
        if base + n < 65536 and not any(listening(base + i) for i in range(n)):
            return base
    raise AssertionError(f"no {n} consecutive free ports")


def cluster_id(data_dir: Path) -> str:
    text = (data_dir / "log" / "meta.properties").read_text()
    return text.split("cluster.id=", 1)[1].split()[0]


def test_up_starts_clean_unless_told_to_resume(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIVERFLOW_")}
    env["XDG_STATE_HOME"] = str(tmp_path)
    port = free_port_run(2)
    data_dir = tmp_path / "riverflow" / "up" / f"kafka-{port}"
    short = ["--kafka-port", str(port), "--duration", "5", "--drift-at", "0"]
    up(env, *short)
    first = cluster_id(data_dir)
    out = up(env, *short, "--resume")
    assert f"with resuming the last run's state in {data_dir}" in out
    assert cluster_id(data_dir) == first  # the same storage, so the same topics and models
    out = up(env, *short)
    assert f"with clean state in {data_dir}" in out
    assert cluster_id(data_dir) != first


def test_up_on_a_broker_it_did_not_start_deletes_nothing(
    stack: Callable[..., Stack], tmp_path: Path
) -> None:
    mine = stack(partitions=1)
    topic = mine.settings.readings_topic
    producer = KafkaProducer(**kafka_kwargs(mine.settings))
    earlier = [f"earlier-{i}".encode() for i in range(3)]
    for value in earlier:
        producer.send(topic, value)
    producer.flush()
    producer.close()
    env = {**mine.env, "XDG_STATE_HOME": str(tmp_path)}
    out = up(env, "--duration", "5", "--drift-at", "0")  # clean start is the default...
    # ...but not on a broker up did not start: it says so and resumes what is there
    assert "which this run did not start: resuming" in out and "deleting nothing" in out
    assert "the broker" not in out.split("stopping:")[1].splitlines()[0]
    assert [r.value for r in mine.read(topic)[:3]] == earlier
