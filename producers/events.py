"""What a producer hands to the publisher: one reading and, optionally, its label.

Sources (the simulated fleet, dataset and CSV replays) yield :class:`Outgoing` events; the
publisher stamps send times, paces them and schedules the labels. Nothing here knows Kafka.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from riverflow.schemas import Label


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One reading to send, and the label to send later as feedback.

    ``label`` None means no feedback for this reading. ``label_delay`` is in the publisher's
    delay unit (seconds, or readings sent after this one). ``ts`` None means "the send time".
    """

    event_id: str
    sensor_id: str
    features: dict[str, float]
    label: Label | None = None
    label_delay: float = 0.0
    ts: int | str | None = None
    categories: dict[str, str] | None = None  # text values, written by replay --mapping


def run_prefix() -> str:
    """A random prefix for this run's event ids.

    Seeds make the *content* of a run reproducible; ids must still differ between runs so two
    runs into the same topics never collide in the learner's join. ``<prefix>-<sequence>`` keeps
    both: strip the prefix and two runs with one seed line up event by event.
    """
    return uuid.uuid4().hex[:12]
