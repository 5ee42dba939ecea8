"""`riverflow up` as a user runs it: its own broker, a live summary, and nothing left behind."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
from pathlib import Path


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
    assert "starting local Kafka" in out
    summaries = [line for line in out.splitlines() if "predictions/s" in line]
    assert len(summaries) >= 3  # refreshed while it ran (every 5 s when not a terminal)
    assert "final summary:" in out
    final = out.split("final summary:")[1]
    total = int(final.split("total")[1].split()[0].replace(",", ""))
    assert total > 1000  # ~200 readings/s for 45 s went through inference
    assert "stopping: simulator, inference, learner, the broker" in out
    assert not any(listening(p) for p in ports), "a worker or the broker is still running"
    assert not (tmp_path / "riverflow" / f"kafka-{kafka_port}" / "broker.pid").exists()
    # The demo is signed: a private key in the state directory, snapshots verified and served.
    key_file = tmp_path / "riverflow" / "signing.key"
    assert f"model snapshots are signed with the key in {key_file}" in out
    assert key_file.stat().st_mode & 0o777 == 0o600
    logs = {p.name: p.read_text() for p in (tmp_path / "riverflow" / "up").glob("*/*.log")}
    assert "swapped in logreg v" in logs["inference-0.log"]
    assert not [name for name, text in logs.items() if "refused a snapshot" in text]
