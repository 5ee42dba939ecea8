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
    decode, validate, predict, learn.
    """

    def __init__(self, reason: str, message: str, stage: str = "validate") -> None:
        super().__init__(message)
        self.reason = reason
        self.stage = stage
