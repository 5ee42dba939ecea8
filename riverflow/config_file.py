"""The config file (``--config riverflow.toml`` or ``RIVERFLOW_CONFIG``): settings in TOML under
the environment variables' names, without the ``RIVERFLOW_`` prefix, in any case.

>>> normalize({"Bootstrap_Servers": "kafka:9092", "RIVERFLOW_MODEL": "arf"})
{'bootstrap_servers': 'kafka:9092', 'model': 'arf'}

Precedence, highest first: flags, environment, this file, defaults. Reading it goes through
pydantic-settings' TOML source, so values are validated like any other setting.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings, TomlConfigSettingsSource

from riverflow.errors import ConfigError

CONFIG_ENV = "RIVERFLOW_CONFIG"


def config_path() -> Path | None:
    """The config file named by RIVERFLOW_CONFIG (which ``--config`` sets), if any."""
    value = os.environ.get(CONFIG_ENV)
    return Path(value) if value else None


def normalize(values: dict[str, Any]) -> dict[str, Any]:
    """Keys as settings fields: lower case, an env-style ``RIVERFLOW_`` prefix dropped."""
    return {key.lower().removeprefix("riverflow_"): value for key, value in values.items()}


def read_config(path: Path) -> dict[str, Any]:
    """The file's settings with normalized keys; a missing or malformed file is a ConfigError."""
    try:
        with path.open("rb") as f:
            return normalize(tomllib.load(f))
    except FileNotFoundError:
        raise _missing(path) from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path}: {exc}") from None


class ConfigFileSource(TomlConfigSettingsSource):
    """pydantic-settings' TOML source over :func:`read_config`, keeping only the keys that are
    settings fields: the others are reported as warnings at start (``unknown_config``), not
    refused, like unknown ``RIVERFLOW_*`` variables."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        if not path.is_file():  # pydantic-settings would skip it; a file named must exist
            raise _missing(path)
        self._fields = frozenset(settings_cls.model_fields)
        super().__init__(settings_cls, toml_file=path)

    def _read_file(self, file_path: Path) -> dict[str, Any]:
        return {k: v for k, v in read_config(file_path).items() if k in self._fields}


def _missing(path: Path) -> ConfigError:
    return ConfigError(f"config file {path} does not exist ({CONFIG_ENV} or --config)")
