from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from riverflow.errors import ConfigError
from riverflow.settings import OTHER_ENV, Settings, kafka_kwargs, load_settings, unknown_env


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("RIVERFLOW_"):
            monkeypatch.delenv(key)


def test_defaults() -> None:
    s = load_settings()
    assert s.bootstrap_servers == "127.0.0.1:9092"
    assert s.readings_topic == "sensor-readings" and s.models_topic == "models"
    assert s.auto_offset_reset == "earliest"
    assert s.partitions == 6


def test_env_is_read_and_flags_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIVERFLOW_BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("RIVERFLOW_FEEDBACK_TTL_S", "60")
    assert load_settings().bootstrap_servers == "kafka:9092"
    assert load_settings().feedback_ttl_s == 60.0
    assert load_settings(bootstrap_servers="other:1").bootstrap_servers == "other:1"
    # an unset flag (None) never hides the environment
    assert load_settings(bootstrap_servers=None).bootstrap_servers == "kafka:9092"


def test_settings_are_frozen() -> None:
    s = load_settings()
    with pytest.raises(ValidationError):
        s.partitions = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("partitions", 0),
        ("auto_offset_reset", "middle"),
        ("on_drift", "panic"),
        ("security_protocol", "TLS"),
        ("max_message_bytes", 1),
    ],
)
def test_bad_values_raise_config_error_naming_the_field(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=key):
        load_settings(**{key: value})


def test_bad_env_value_raises_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIVERFLOW_MAX_PENDING", "lots")
    with pytest.raises(ConfigError, match="max_pending"):
        load_settings()


def test_unknown_override_is_refused() -> None:
    with pytest.raises(ConfigError):
        load_settings(no_such_setting=1)


def test_security_passes_through_to_kafka_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIVERFLOW_SASL_PASSWORD", "s3cret")
    s = load_settings(
        bootstrap_servers="a:1,b:2",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="bob",
        ssl_cafile="/ca.pem",
    )
    assert "s3cret" not in repr(s)  # secrets stay hidden in logs
    assert kafka_kwargs(s) == {
        "bootstrap_servers": ["a:1", "b:2"],
        "security_protocol": "SASL_SSL",
        "bootstrap_timeout_ms": 15000,
        "metadata_max_age_ms": 30000,
        "reconnect_backoff_max_ms": 1000,
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "bob",
        "sasl_plain_password": "s3cret",
        "ssl_cafile": "/ca.pem",
    }


def test_plaintext_kwargs_are_minimal() -> None:
    assert kafka_kwargs(Settings()) == {
        "bootstrap_servers": ["127.0.0.1:9092"],
        "security_protocol": "PLAINTEXT",
        "bootstrap_timeout_ms": 15000,
        "metadata_max_age_ms": 30000,
        "reconnect_backoff_max_ms": 1000,
    }


def test_model_name_of_a_custom_factory() -> None:
    assert load_settings(model="my.models:fancy").model_name == "fancy"
    assert load_settings(model="logreg").model_name == "logreg"


# Misspelt names are built, not written out, so the scan below never finds them in the repo.
P = "RIVERFLOW_"


def test_unknown_variables_are_reported_with_the_closest_name() -> None:
    warnings = unknown_env(
        {
            P + "BOOTSTRAP_SERVER": "kafka:9092",
            P + "SIGNING_KEY": "k",
            P + "NONSENSE_XYZZY": "1",
            "PATH": "/bin",
        }
    )
    assert warnings == [
        f"{P}BOOTSTRAP_SERVER is not a riverflow setting and is ignored "
        f"(did you mean {P}BOOTSTRAP_SERVERS?)",
        f"{P}NONSENSE_XYZZY is not a riverflow setting and is ignored",
        f"{P}SIGNING_KEY is not a riverflow setting and is ignored "
        f"(did you mean {P}MODEL_SIGNING_KEY?)",
    ]


def test_settings_and_the_projects_own_variables_are_not_reported() -> None:
    environ = {f"{P}{name.upper()}": "x" for name in Settings.model_fields}
    environ |= {name: "x" for name in OTHER_ENV}
    environ |= {P + "TEST_KAFKA_PORT": "19092", P + "TEST_ANYTHING_NEW": "1"}
    environ |= {P.lower() + "model": "logreg"}  # read in any case, so known in any case
    assert unknown_env(environ) == []


def test_every_riverflow_variable_the_repository_names_is_known() -> None:
    """A variable read somewhere but missing from OTHER_ENV would be reported as unknown."""
    root = Path(__file__).resolve().parents[2]
    known = {f"{P}{name.upper()}" for name in Settings.model_fields} | OTHER_ENV
    found: dict[str, str] = {}
    for path in root.rglob("*"):
        if ".git" in path.parts or not path.is_file() or path.suffix in {".pyc", ".lock"}:
            continue
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        for name in re.findall(r"\bRIVERFLOW_[A-Z0-9_]*[A-Z0-9]\b", text):
            found.setdefault(name, str(path.relative_to(root)))
    unknown = {
        n: where for n, where in found.items() if n not in known and not n.startswith(P + "TEST_")
    }
    assert unknown == {}, "add these to settings.OTHER_ENV (or make them settings)"


def test_instance_id_takes_the_host_name_and_must_be_a_kafka_id() -> None:
    import socket

    assert load_settings().instance_id is None  # dynamic membership by default
    assert load_settings(instance_id="inference-0").instance_id == "inference-0"
    host = load_settings(instance_id="infer-{hostname}").instance_id
    assert host == f"infer-{socket.gethostname()}"
    for bad in ("", "two words", "..", "x" * 250, "{host}"):
        with pytest.raises(ConfigError, match="instance_id"):
            load_settings(instance_id=bad)


def test_session_timeout_stays_within_the_brokers_bounds() -> None:
    assert load_settings().session_timeout_s == 10.0
    for bad in (5, 3600):
        with pytest.raises(ConfigError, match="session_timeout_s"):
            load_settings(session_timeout_s=bad)


def test_bootstrap_servers_follow_the_local_broker_port_unless_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RIVERFLOW_KAFKA_PORT", "20010")
    assert load_settings().bootstrap_servers == "127.0.0.1:20010"
    assert load_settings(kafka_port=5).bootstrap_servers == "127.0.0.1:5"
    monkeypatch.setenv("RIVERFLOW_BOOTSTRAP_SERVERS", "kafka:9092")
    assert load_settings().bootstrap_servers == "kafka:9092"
