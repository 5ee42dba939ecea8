"""Command-line options shared by the producers; out-of-range values are usage errors (exit 2)."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def number(
    kind: type[int] | type[float], low: float, high: float | None = None
) -> Callable[[str], float]:
    """An argparse ``type`` that parses ``kind`` and checks ``low <= value <= high``."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a{'n integer' if kind is int else ' number'}"
            ) from None
        if value < low or (high is not None and value > high):
            bounds = f">= {low:g}" if high is None else f"between {low:g} and {high:g}"
            raise argparse.ArgumentTypeError(f"{text} must be {bounds}")
        return value

    return parse


def add_label_delay(parser: argparse._ActionsContainer, default: float) -> None:
    parser.add_argument(
        "--label-delay",
        type=number(float, 0),
        default=default,
        metavar="SECONDS",
        help=f"seconds from a reading to its label (default {default:g})",
    )


def add_rate(parser: argparse.ArgumentParser, default: float) -> None:
    parser.add_argument(
        "--rate",
        type=number(float, 0),
        default=default,
        metavar="EVENTS_PER_S",
        help=f"readings per second in total, 0 = as fast as possible (default {default:g})",
    )
