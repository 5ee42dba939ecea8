"""riverflow: real-time inference and online learning on Kafka event streams with River."""

from __future__ import annotations

__version__ = "0.1.0"
