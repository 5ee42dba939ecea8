"""``riverflow simulate``: a synthetic sensor fleet with injectable drift and delayed labels.

Readings go to the readings topic keyed by sensor id; each selected label follows on the
feedback topic after its delay. Without ``--count`` or ``--duration`` it runs until Ctrl-C.
See :mod:`riverflow.producers.fleet` for the concepts and :mod:`riverflow.producers.publisher` for
what happens to labels on a stop.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import random

from riverflow.errors import ConfigError
from riverflow.lifecycle import Stopper
from riverflow.online_model.tasks import Task
from riverflow.options import settings_from
from riverflow.producers.events import run_prefix
from riverflow.producers.fleet import CONCEPTS, DEFAULT_CONCEPT, Concept, fleet
from riverflow.producers.options import add_label_delay, add_rate, number
from riverflow.producers.publisher import MAX_BLOCK_S, Publisher, ensure_topics
from riverflow.transport import clients_for

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sensors", type=number(int, 1), default=20, help="fleet size (default 20)"
    )
    add_rate(parser, default=200)
    parser.add_argument("--count", type=number(int, 1), help="stop after this many readings")
    parser.add_argument(
        "--duration", type=number(float, 0), metavar="SECONDS", help="stop sending after this long"
    )
    parser.add_argument(
        "--seed", type=int, help="reproduce a run's sensors, features and labels (default random)"
    )
    parser.add_argument(
        "--task",
        choices=list(DEFAULT_CONCEPT),
        help="picks the default concept (default classification, or the --concept's task)",
    )
    parser.add_argument(
        "--concept",
        choices=sorted(CONCEPTS),
        help="River generator pair; "
        + "; ".join(f"{c.name} ({c.task}): {c.description}" for c in CONCEPTS.values()),
    )
    parser.add_argument(
        "--drift-at",
        type=number(int, 0),
        metavar="N",
        help="switch to the concept's second labelling function from event N on",
    )
    parser.add_argument(
        "--label-fraction",
        type=number(float, 0, 1),
        default=1.0,
        help="share of readings whose label is sent as feedback (default 1.0)",
    )
    add_label_delay(parser, default=2.0)
    parser.add_argument(
        "--label-jitter",
        type=number(float, 0, 1),
        default=0.25,
        metavar="FRACTION",
        help="each delay is drawn from label-delay * (1 ± jitter) (default 0.25)",
    )


def pick_concept(task: Task | None, name: str | None) -> Concept:
    if name is None:
        return CONCEPTS[DEFAULT_CONCEPT["regression" if task == "regression" else "classification"]]
    concept = CONCEPTS[name]
    if task is not None and task != concept.task:
        raise ConfigError(f"--concept {name} is a {concept.task} concept, not {task}")
    return concept


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    concept = pick_concept(args.task, args.concept)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    prefix = run_prefix()
    log.info(
        "simulating %d sensors, concept %s (%s), seed %d, event ids %s-<n>%s",
        args.sensors,
        concept.name,
        concept.task,
        seed,
        prefix,
        f", drift at event {args.drift_at}" if args.drift_at is not None else "",
    )
    ensure_topics(settings)
    events = fleet(
        concept,
        sensors=args.sensors,
        seed=seed,
        id_prefix=prefix,
        drift_at=args.drift_at,
        label_fraction=args.label_fraction,
        label_delay=args.label_delay,
        label_jitter=args.label_jitter,
    )
    if args.count is not None:
        events = itertools.islice(events, args.count)
    publisher = Publisher(
        settings,
        name="simulate",
        producer=clients_for(settings).producer(max_block_s=MAX_BLOCK_S),
        rate=args.rate,
        duration_s=args.duration,
        stopper=Stopper().install(),
    )
    publisher.run(events, note=f"seed {seed}")
    return 0
