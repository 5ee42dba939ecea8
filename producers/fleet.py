"""A simulated sensor fleet: River's synthetic generators as a reproducible event stream.

Each concept pairs two River generators that draw the *same* features from the same seed and
label them with different functions. Both run in lockstep until ``drift_at``, then the stream
switches to the second: the feature distribution stays put and only P(label | features)
changes, so a model trained before the switch really gets worse after it.

>>> from itertools import islice
>>> events = list(islice(fleet(CONCEPTS["sine"], sensors=3, seed=7, id_prefix="run"), 2))
>>> [e.event_id for e in events]
['run-0', 'run-1']
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from river.datasets import synth

from riverflow.online_model.tasks import Task
from riverflow.producers.events import Outgoing
from riverflow.schemas import wire_label

log = logging.getLogger(__name__)

Generator = Callable[[int], Iterable[tuple[dict[Any, Any], Any]]]


@dataclass(frozen=True)
class Concept:
    """A labelled feature stream before and after the drift switch."""

    name: str
    task: Task
    description: str
    before: Generator
    after: Generator


# Pairs chosen for a large, visible change: on the same features, the labels before and after
# disagree on about 72% (sine), 71% (agrawal) and 13% (sea, a subtle drift) of the events.
CONCEPTS: dict[str, Concept] = {
    c.name: c
    for c in (
        Concept(
            "sine",
            "classification",
            "SINE1 -> reversed SINE2 (2 relevant + 2 noise features)",
            lambda s: synth.Sine(classification_function=0, seed=s, has_noise=True),
            lambda s: synth.Sine(classification_function=3, seed=s, has_noise=True),
        ),
        Concept(
            "agrawal",
            "classification",
            "Agrawal loan function 0 -> 5 (9 features; ~50 µs per event to generate)",
            lambda s: synth.Agrawal(classification_function=0, seed=s),
            lambda s: synth.Agrawal(classification_function=5, seed=s),
        ),
        Concept(
            "sea",
            "classification",
            "SEA threshold 8 -> 9.5 (3 features, a subtle drift)",
            lambda s: synth.SEA(variant=0, seed=s),
            lambda s: synth.SEA(variant=3, seed=s),
        ),
        Concept(
            "friedman",
            "regression",
            "Friedman #1 -> the same with relevant features swapped (10 features)",
            lambda s: synth.Friedman(seed=s),
            # 'gra' with its first change point at 0 is the swapped function from the start;
            # the second (recurrence) point is never reached.
            lambda s: synth.FriedmanDrift(drift_type="gra", position=(0, 2**62), seed=s),
        ),
    )
}
DEFAULT_CONCEPT: dict[Task, str] = {"classification": "sine", "regression": "friedman"}


def sensor_names(n: int) -> list[str]:
    """``sensor-00`` ... zero-padded so the names sort in fleet order."""
    width = len(str(n - 1))
    return [f"sensor-{i:0{width}d}" for i in range(n)]


def fleet(
    concept: Concept,
    *,
    sensors: int,
    seed: int,
    id_prefix: str,
    drift_at: int | None = None,
    label_fraction: float = 1.0,
    label_delay: float = 2.0,
    label_jitter: float = 0.0,
) -> Iterator[Outgoing]:
    """An endless stream of readings from ``sensors`` sensors, labelled by ``concept``.

    Everything but the event id prefix follows from ``seed``: which sensor sends, the features,
    the labels, which labels are sent (``label_fraction``) and each label's delay in seconds,
    ``label_delay * (1 ± label_jitter)`` drawn uniformly. Every event makes the same random
    draws whatever the options, so two runs with one seed differ only where the options do.
    """
    master = random.Random(seed)
    # The generators get a seed of their own: seeded like `master`, they would replay its very
    # numbers as features and correlate them with the sensor choice.
    concept_seed = master.getrandbits(32)
    names = sensor_names(sensors)
    active = iter(concept.before(concept_seed))
    pending = iter(concept.after(concept_seed)) if drift_at is not None else None
    seq = 0
    while True:
        if pending is not None and seq == drift_at:
            active, pending = pending, None
            log.info(
                "drift: concept %s switches to its second function at event %d", concept.name, seq
            )
        x, y = next(active)
        if pending is not None:
            next(pending)  # lockstep: the post-drift stream sees the same features
        sensor = names[master.randrange(sensors)]
        labelled = master.random() < label_fraction
        delay = max(0.0, label_delay * (1.0 + label_jitter * master.uniform(-1.0, 1.0)))
        yield Outgoing(
            event_id=f"{id_prefix}-{seq}",
            sensor_id=sensor,
            features={_name(k): float(v) for k, v in x.items()},
            label=wire_label(y) if labelled else None,
            label_delay=delay,
        )
        seq += 1


def _name(key: Any) -> str:
    # Sine, SEA and Friedman number their features; JSON keys are strings, "x0" reads better.
    return key if isinstance(key, str) else f"x{key}"
