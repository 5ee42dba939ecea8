from __future__ import annotations

import subprocess
import sys


def riverflow(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "riverflow", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_help_lists_every_command() -> None:
    out = riverflow("--help").stdout
    for cmd in ("kafka", "topics", "simulate", "replay", "infer", "learn", "up"):
        assert cmd in out


def test_bad_usage_exits_2() -> None:
    assert riverflow("kafka", "explode").returncode == 2
    assert riverflow("no-such-command").returncode == 2


def test_bad_configuration_exits_2_with_the_field_named() -> None:
    result = riverflow("topics", "create", env={"RIVERFLOW_PARTITIONS": "zero"})
    assert result.returncode == 2
    assert "partitions" in result.stderr and "Traceback" not in result.stderr


def test_unreachable_broker_is_a_clear_error() -> None:
    result = riverflow(
        "topics",
        "create",
        "--bootstrap-servers",
        "127.0.0.1:1",
        env={"RIVERFLOW_LOG_LEVEL": "ERROR", "RIVERFLOW_BOOTSTRAP_TIMEOUT_S": "2"},
    )
    assert result.returncode == 1
    assert "riverflow kafka start" in result.stderr and "Traceback" not in result.stderr
