"""One root exception; every error that reaches a user says what to do next."""

from __future__ import annotations


class RiverflowError(Exception):
    """Root of every error riverflow raises on purpose."""


class ConfigError(RiverflowError):
    """Bad usage or configuration: the CLI exits with code 2."""


class BrokerError(RiverflowError):
    """The local Kafka broker could not be fetched, started or reached."""


class SnapshotError(RiverflowError):
    """A model snapshot was refused; ``reason`` is a short, bounded metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class InvalidEvent(RiverflowError):
    """An input message that cannot be used; it goes to dead-letters.

    ``reason`` is a short label from a fixed set (it becomes a metric label), ``stage`` is one of
    decode, validate, predict, learn, produce. The message is cut to :data:`MAX_MESSAGE_CHARS`:
    it may quote hostile input (a field name, a value) and ends up in logs and headers.
    """

    def __init__(self, reason: str, message: str, stage: str = "validate") -> None:
        super().__init__(_bounded(message))
        self.reason = reason
        self.stage = stage


# Room for five field errors with their paths; anything longer is an attacker's text.
MAX_MESSAGE_CHARS = 500


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


def describe(exc: BaseException) -> str:
    """``Type: message`` of any exception, bounded, and never raising itself (a hostile value
    in an exception's arguments can make ``str()`` fail, e.g. an int of 5,000 digits)."""
    try:
        text = str(exc)
    except Exception:
        text = "(message unprintable)"
    return _bounded(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def internal(exc: BaseException, stage: str) -> InvalidEvent:
    """A refusal for what nothing expected a record to raise: reason ``internal``, so the
    record goes to dead letters and the worker goes on."""
    return InvalidEvent("internal", f"unexpected {describe(exc)}", stage)


def duplicate_instance(instance_id: str | None, group_id: str) -> ConfigError:
    """The broker fenced this member: another process joined ``group_id`` with its instance id.
    Carrying on would process (and, at-least-once, repeat) its partitions' records twice."""
    return ConfigError(
        f"another process joined group {group_id} as instance {instance_id!r}: "
        "give each worker its own --instance-id (RIVERFLOW_INSTANCE_ID)"
    )
