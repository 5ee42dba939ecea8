"""The config file: TOML under the environment's names, below flags and the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from riverflow.config_file import CONFIG_ENV
from riverflow.errors import ConfigError
from riverflow.settings import load_settings, unknown_config


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("RIVERFLOW_"):
            monkeypatch.delenv(key)


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config file named by RIVERFLOW_CONFIG; each test writes its content."""
    path = tmp_path / "riverflow.toml"
    monkeypatch.setenv(CONFIG_ENV, str(path))
    return path


def test_flags_over_environment_over_file_over_defaults(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config.write_text(
        'bootstrap_servers = "file:9092"\nmodel = "arf"\nfeedback_ttl_s = 60\n'
        "output_buckets = [0, 10, 50]\n"
    )
    monkeypatch.setenv("RIVERFLOW_MODEL", "nb")
    s = load_settings(bootstrap_servers="flag:9092")
    assert s.bootstrap_servers == "flag:9092"  # flag over file
    assert s.model == "nb"  # environment over file
    assert s.feedback_ttl_s == 60.0 and s.output_buckets == (0.0, 10.0, 50.0)  # file over defaults
    assert s.partitions == 6  # default
    assert load_settings(bootstrap_servers=None).bootstrap_servers == "file:9092"


def test_keys_are_the_environment_names_in_any_case(config: Path) -> None:
    config.write_text('RIVERFLOW_READINGS_TOPIC = "r"\nPartitions = 3\n')
    s = load_settings()
    assert (s.readings_topic, s.partitions) == ("r", 3)
    assert unknown_config() == []


def test_unknown_keys_are_reported_with_the_closest_name_not_refused(config: Path) -> None:
    config.write_text('bootstrap_server = "x:1"\nlog_level = "debug"\nfrobnicate = 1\n')
    assert load_settings().bootstrap_servers == "127.0.0.1:9092"
    assert unknown_config() == [
        f"{config}: bootstrap_server is not a riverflow setting and is ignored "
        "(did you mean bootstrap_servers?)",
        f"{config}: frobnicate is not a riverflow setting and is ignored",
    ]


def test_a_bad_value_names_the_setting_and_the_file(config: Path) -> None:
    config.write_text("partitions = 0\n")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert f"config file {config}" in str(error.value)
    assert "partitions: Input should be greater than or equal to 1" in str(error.value)


def test_a_missing_or_malformed_file_is_a_configuration_error(config: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings()
    config.write_text("partitions = \n")
    with pytest.raises(ConfigError, match=f"config file {config}: .*line 1"):
        load_settings()


def riverflow(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    root = str(Path(__file__).resolve().parents[2])
    return subprocess.run(
        [sys.executable, "-m", "riverflow", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": root, **env},
        timeout=60,
    )


def test_the_cli_reads_config_and_reports_its_unknown_keys(tmp_path: Path) -> None:
    (tmp_path / "riverflow.toml").write_text('log_level = "warning"\nsnapshot_evry = 5\n')
    status = ("kafka", "status", "--port", "1")
    result = riverflow(*status, "--config", "riverflow.toml", cwd=tmp_path, env={})
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "snapshot_evry is not a riverflow setting" in result.stderr
    assert "did you mean snapshot_every?" in result.stderr
    # The file's log level hides the WARNING once the environment's is higher.
    quiet = riverflow(
        "--config", "riverflow.toml", *status, cwd=tmp_path, env={"RIVERFLOW_LOG_LEVEL": "error"}
    )
    assert quiet.returncode == 1 and quiet.stderr == ""
    bad = riverflow(*status, "--config", "nope.toml", cwd=tmp_path, env={})
    assert bad.returncode == 2 and "nope.toml does not exist" in bad.stderr
    (tmp_path / "riverflow.toml").write_text('log_format = "xml"\n')
    bad = riverflow(*status, "--config", "riverflow.toml", cwd=tmp_path, env={})
    assert bad.returncode == 2 and "log_format in" in bad.stderr and "'xml'" in bad.stderr


def test_up_starts_its_own_broker_unless_one_is_configured_anywhere(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from riverflow.up import configured_bootstrap

    config.write_text('model = "nb"\n')
    assert configured_bootstrap(None) is None
    config.write_text('bootstrap_servers = "file:9092"\n')
    assert configured_bootstrap(None) == "file:9092"
    monkeypatch.setenv("RIVERFLOW_BOOTSTRAP_SERVERS", "env:9092")
    assert configured_bootstrap(None) == "env:9092"
    assert configured_bootstrap("flag:9092") == "flag:9092"
