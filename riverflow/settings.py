"""One frozen settings model for every command: CLI flags over the environment (prefix
``RIVERFLOW_``) over the config file (:mod:`riverflow.config_file`) over defaults."""

from __future__ import annotations

import difflib
import re
import socket
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from riverflow.config_file import CONFIG_ENV, ConfigFileSource, config_path, read_config
from riverflow.errors import ConfigError

_INSTANCE_ID = re.compile(r"[A-Za-z0-9._-]{1,249}")


class Settings(BaseSettings):
    """Everything a riverflow process can be told. See README's settings table."""

    model_config = SettingsConfigDict(env_prefix="RIVERFLOW_", frozen=True, extra="forbid")

    # Kafka connection; security options map to each client's own names (riverflow.transport).
    # kafka-python (pure Python) or confluent (librdkafka: pip install "riverflow[fast]").
    kafka_client: Literal["kafka-python", "confluent"] = "kafka-python"
    bootstrap_servers: str = "127.0.0.1:9092"  # unset: 127.0.0.1:<kafka_port>
    # Client port of the local broker that `riverflow kafka` and `up` start (the controller
    # takes the next one); without bootstrap servers, clients look for that broker.
    kafka_port: int = Field(9092, ge=1, le=65534)
    client_id: str = "riverflow"
    # How long a client waits for a first broker answer before giving up with a clear error.
    bootstrap_timeout_s: float = Field(15.0, gt=0)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: SecretStr | None = None

    # Topics.
    readings_topic: str = "sensor-readings"
    feedback_topic: str = "sensor-feedback"
    predictions_topic: str = "predictions"
    models_topic: str = "models"
    # The last model_history versions of each model, keyed NAME@VERSION (online_model/history.py).
    models_history_topic: str = "models-history"
    dead_letters_topic: str = "dead-letters"
    partitions: int = Field(6, ge=1)

    # Consumption.
    # How often clients refresh topic metadata: partitions added to an input topic are read
    # within this time (Kafka's default, 5 minutes, is long for a scale-out step).
    metadata_refresh_s: float = Field(30.0, gt=0)
    # Default: riverflow-infer-<deployment> / riverflow-learn-<deployment>.
    group_id: str | None = None
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    max_poll_records: int = Field(500, ge=1)
    # Batches take milliseconds; 5 minutes leaves room for a slow snapshot without a rebalance.
    max_poll_interval_ms: int = Field(300_000, ge=1000)
    shutdown_timeout_s: float = Field(10.0, gt=0)
    exactly_once: bool = False
    # Static group membership (Kafka's group.instance.id): a worker restarted under the same id
    # gets its partitions back at once, instead of after session_timeout_s with a rebalance. One
    # id per process in a group; "{hostname}" is replaced by the host's name. None: dynamic.
    instance_id: str | None = None
    # How long the group waits for a member that went silent (killed, hung, cut off) before its
    # partitions move: 10 s instead of Kafka's 45 s, as a dead worker stalls its partitions that
    # long. Heartbeats every third of it (at most 3 s) ride out two lost ones or a busy CPU.
    session_timeout_s: float = Field(10.0, ge=6, le=1800)  # the broker's default bounds

    # Validation of readings and feedback.
    max_features: int = Field(256, ge=1)
    max_message_bytes: int = Field(65_536, ge=64)
    max_ts_skew_s: float = Field(86_400.0, gt=0)

    # Models and snapshots.
    model: str = "logreg"
    # A deployment's name in metrics (label `deployment`): two deployments of one model on one
    # Prometheus differ by it. Default: the model's name.
    deployment: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    # A TOML file saying where readings and feedback are in records of another shape
    # (riverflow/mapping.py); None: riverflow's own messages.
    mapping: str | None = None
    model_signing_key: SecretStr | None = None
    # Without a key every snapshot is refused; this explicit opt-in loads them unverified.
    allow_unsigned_snapshots: bool = False
    # Comma-separated modules whose classes a snapshot may hold, besides River's and the
    # module of a module:factory model (online_model/unpickler.py).
    snapshot_allowed_modules: str = Field("", pattern=r"^\s*(\w+(\.\w+)*\s*(,\s*|$))*$")
    snapshot_every: int = Field(1000, ge=1)
    snapshot_interval_s: float = Field(5.0, gt=0)
    model_history: int = Field(20, ge=1)

    # Upper bounds of the histogram of values served by a regressor (default: decades either side
    # of 0) or anomaly scorer (default: tenths of [0, 1]); set them to the label's own range.
    output_buckets: tuple[float, ...] | None = None

    # Drift.
    feature_drift_detector: str = "adwin"
    max_drift_features: int = Field(64, ge=0)
    # Inference feeds every Nth valid reading to the feature drift detectors (1: all): adwin
    # costs ~6-10 us per 8-feature reading (15% of inference throughput), kswin ~2 ms (use 100+).
    # A 1-in-10 sample still detects a shift within seconds at production rates (PERFORMANCE.md).
    feature_drift_every: int = Field(10, ge=1)
    concept_drift_detector: str = "adwin"
    on_drift: Literal["alert", "reset"] = "alert"

    # Learner join and evaluation.
    feedback_ttl_s: float = Field(3600.0, gt=0)
    max_pending: int = Field(100_000, ge=1)
    rolling_window: int = Field(1000, ge=1)

    # Process.
    metrics_port: int | None = Field(None, ge=0, le=65535)  # None: the command's default; 0: off
    # /healthz answers 503 once the worker loop has not turned for this long (riverflow/health.py).
    health_stall_s: float = Field(60.0, gt=0)
    idle_exit_s: float | None = Field(None, gt=0)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Flags (init arguments) over the environment over the config file.
        path = config_path()
        file = () if path is None else (ConfigFileSource(settings_cls, path),)
        return (init_settings, env_settings, dotenv_settings, *file, file_secret_settings)

    @model_validator(mode="before")
    @classmethod
    def _local_broker(cls, data: Any) -> Any:
        # No bootstrap servers given but a local broker's port: clients look for that broker.
        given = isinstance(data, dict) and data.get("bootstrap_servers") is not None
        if isinstance(data, dict) and not given and data.get("kafka_port") is not None:
            return {**data, "bootstrap_servers": f"127.0.0.1:{data['kafka_port']}"}
        return data

    @field_validator("instance_id")
    @classmethod
    def _instance_id(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.replace("{hostname}", socket.gethostname())
        if not _INSTANCE_ID.fullmatch(value) or value in (".", ".."):
            raise ValueError(
                "an instance id is 1-249 characters from A-Z a-z 0-9 . _ - (and {hostname})"
            )
        return value

    @property
    def allowed_modules(self) -> list[str]:
        """``snapshot_allowed_modules`` as a list."""
        return [m.strip() for m in self.snapshot_allowed_modules.split(",") if m.strip()]

    @property
    def deployment_name(self) -> str:
        """The ``deployment`` label of every metric: the setting, or the model's name."""
        return self.deployment or self.model_name

    @property
    def model_name(self) -> str:
        """The model's name on the models topic and in metrics: the preset or factory name."""
        return self.model.rsplit(":", 1)[-1]


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, with ``overrides`` (CLI flags) on top.

    ``None`` overrides are ignored, so an unset flag never hides an environment variable.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
            for e in exc.errors()
        ]
        path = config_path()
        where = "flags or RIVERFLOW_* environment" + (f" or config file {path}" if path else "")
        raise ConfigError(f"invalid configuration ({where}):\n" + "\n".join(lines)) from None


# RIVERFLOW_* variables read outside Settings (logging, the local broker's cache and jar
# repository, compose, the test suite's options), so they are not reported as unknown.
OTHER_ENV = frozenset(
    {
        "RIVERFLOW_LOG_LEVEL",
        "RIVERFLOW_LOG_FORMAT",
        "RIVERFLOW_CACHE_DIR",
        "RIVERFLOW_MAVEN_REPOSITORY",
        "RIVERFLOW_IMAGE_TAG",
        "RIVERFLOW_COMPOSE_SCHEMA",
        CONFIG_ENV,
    }
)
# Read from the config file outside Settings (by the CLI's logging set-up).
OTHER_CONFIG_KEYS = frozenset({"log_level", "log_format"})
OTHER_ENV_PREFIXES = ("RIVERFLOW_TEST_",)


def unknown_env(environ: Mapping[str, str]) -> list[str]:
    """One warning per ``RIVERFLOW_*`` variable that nothing reads (a typo is otherwise silently
    ignored), naming the closest known variable."""
    cut = len("RIVERFLOW_")
    known = set(Settings.model_fields) | {name[cut:].lower() for name in OTHER_ENV}
    warnings = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith("RIVERFLOW_") or upper.startswith(OTHER_ENV_PREFIXES):
            continue
        key = upper[cut:].lower()  # pydantic-settings matches names in any case
        if key not in known:
            hint = _closest(key, known)
            hint = f" (did you mean RIVERFLOW_{hint.upper()}?)" if hint else ""
            warnings.append(f"{name} is not a riverflow setting and is ignored{hint}")
    return warnings


def unknown_config() -> list[str]:
    """One warning per key of the config file that is not a setting, naming the closest one."""
    path = config_path()
    if path is None:
        return []
    known = set(Settings.model_fields) | OTHER_CONFIG_KEYS
    warnings = []
    for key in sorted(set(read_config(path)) - known):
        hint = _closest(key, known)
        hint = f" (did you mean {hint}?)" if hint else ""
        warnings.append(f"{path}: {key} is not a riverflow setting and is ignored{hint}")
    return warnings


def _closest(name: str, known: set[str]) -> str | None:
    # Names compared without the RIVERFLOW_ prefix, which would make anything "close".
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return close[0] if close else None


# Reconnects to a broker that is away back off exponentially from 50 ms up to this bound (the
# Java client's default). kafka-python's own 30 s bound would add up to 36 s (with jitter) to
# the recovery once the broker is back; a connection attempt to a dead port costs nothing.
RECONNECT_BACKOFF_MAX_MS = 1000


def kafka_kwargs(settings: Settings) -> dict[str, Any]:
    """The kafka-python keyword arguments for connection and security, shared by every client."""
    kw: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "security_protocol": settings.security_protocol,
        "bootstrap_timeout_ms": int(settings.bootstrap_timeout_s * 1000),
        "metadata_max_age_ms": int(settings.metadata_refresh_s * 1000),
        "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
    }
    if settings.sasl_mechanism:
        kw["sasl_mechanism"] = settings.sasl_mechanism
    if settings.sasl_username is not None:
        kw["sasl_plain_username"] = settings.sasl_username
    if settings.sasl_password is not None:
        kw["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        value = getattr(settings, key)
        if value:
            kw[key] = value
    if settings.ssl_password is not None:
        kw["ssl_password"] = settings.ssl_password.get_secret_value()
    return kw
