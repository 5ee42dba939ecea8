from __future__ import annotations

import json
import os
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


def test_log_level_in_any_case_from_the_environment_or_after_the_subcommand() -> None:
    # An unknown variable makes a WARNING: shown at debug, hidden at error.
    misspelt = {"RIVERFLOW_" + "MODELS": "x"}
    status = ("kafka", "status", "--port", "1")
    for args, env, shown in [
        (status, {"RIVERFLOW_LOG_LEVEL": "debug"}, True),
        (status, {"RIVERFLOW_LOG_LEVEL": "Error"}, False),
        ((*status, "--log-level", "error"), {}, False),  # after the subcommand
        (("--log-level", "ERROR", *status, "--log-level", "Warning"), {}, True),  # the last wins
    ]:
        result = riverflow(*args, env={**misspelt, **env})
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert ("did you mean RIVERFLOW_MODEL?" in result.stderr) is shown, (args, env)


def test_a_bad_log_level_or_format_is_a_usage_error() -> None:
    for env in ({"RIVERFLOW_LOG_LEVEL": "verbose"}, {"RIVERFLOW_LOG_FORMAT": "xml"}):
        result = riverflow("kafka", "status", "--port", "1", env=env)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert next(iter(env)) in result.stderr
    flag = riverflow("kafka", "status", "--log-level", "loud")
    assert flag.returncode == 2 and "'loud' is not a log level" in flag.stderr


def test_json_logs_and_unknown_variables_are_reported() -> None:
    misspelt = "RIVERFLOW_" + "BOOTSTRAP_SERVER"  # built, so the repository never names it
    result = riverflow(
        "kafka", "status", "--port", "1", env={"RIVERFLOW_LOG_FORMAT": "json", misspelt: "x"}
    )
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert records[0]["level"] == "WARNING" and records[0]["logger"] == "riverflow"
    assert "did you mean RIVERFLOW_BOOTSTRAP_SERVERS?" in records[0]["message"]
    assert "time" in records[0]


def test_confluent_without_its_package_is_a_usage_error_naming_the_extra() -> None:
    """Every command that talks to Kafka takes --kafka-client; confluent asked for where
    confluent-kafka is missing exits 2 saying how to install it."""
    absent = (
        "import sys; sys.modules['confluent_kafka'] = None; "
        "from riverflow.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    for command in (["topics", "create"], ["infer"], ["learn"], ["simulate"], ["reset", "--yes"]):
        result = subprocess.run(
            [sys.executable, "-c", absent, *command, "--kafka-client", "confluent"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "RIVERFLOW_MODEL_SIGNING_KEY": "k" * 32},
        )
        assert result.returncode == 2, (command, result.stderr)
        assert 'pip install "riverflow[fast]"' in result.stderr, (command, result.stderr)
