"""``riverflow mapping check FILE [--sample N]``: what a mapping would read, before it runs.

Reads up to N records from the start of each mapped topic (readings, and feedback when the
mapping has a ``[feedback]`` table) with an assign-only consumer, so no group offset moves and
nothing is produced. Prints, per record, what would be extracted (event id, entity, time,
features, categories, label) or why the record would be dead-lettered, then a summary per
topic. Exit 0 when every record read was readable, 1 when some would be refused, 2 for a
mapping that does not validate. The skew check is skipped: old records are shown as read.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TextIO

from riverflow.errors import ConfigError, InvalidEvent
from riverflow.extract import FeedbackExtractor, ReadingExtractor
from riverflow.mapping import load_mapping, mapped_settings
from riverflow.options import settings_from
from riverflow.settings import Settings
from riverflow.transport import clients_for, topic_partitions

DEFAULT_SAMPLE = 10
# Reading stops at the end offsets known at the start, or after this long without a record.
READ_TIMEOUT_S = 15.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["check"])
    parser.add_argument("file", metavar="FILE", help="the TOML mapping to check")
    parser.add_argument(
        "--sample",
        type=int,
        default=DEFAULT_SAMPLE,
        metavar="N",
        help=f"records to read from the start of each mapped topic (default {DEFAULT_SAMPLE})",
    )


def run(args: argparse.Namespace) -> int:
    if args.sample < 1:
        raise ConfigError("--sample must be 1 or more")
    mapping = load_mapping(args.file)
    settings = mapped_settings(settings_from(args), mapping)
    readings = ReadingExtractor(
        mapping.readings, settings.max_features, settings.max_message_bytes, 86_400.0
    )
    checks: list[tuple[str, Callable[[Any], dict[str, Any]]]] = [
        (settings.readings_topic, lambda r: _reading(readings, r))
    ]
    if mapping.feedback is not None:
        feedback = FeedbackExtractor(mapping.feedback, settings.max_message_bytes, 86_400.0)
        checks.append((settings.feedback_topic, lambda r: _feedback(feedback, r)))
    print(f"mapping {mapping.source} is valid")
    refused = 0
    for topic, extract in checks:
        refused += check_topic(settings, topic, args.sample, extract)
    return 1 if refused else 0


def check_topic(
    settings: Settings,
    topic: str,
    sample: int,
    extract: Callable[[Any], dict[str, Any]],
    out: TextIO | None = None,
) -> int:
    """Print what ``extract`` makes of the first ``sample`` records of ``topic``; returns how
    many would be refused."""
    read = refused = 0
    for record in _first_records(settings, topic, sample):
        read += 1
        where = f"{record.topic}/{record.partition}@{record.offset}"
        try:
            shown = json.dumps(extract(record), ensure_ascii=False)
        except InvalidEvent as exc:
            refused += 1
            print(f"{where} REFUSED {exc.reason}: {exc}", file=out)
            continue
        print(f"{where} ok {shown}", file=out)
    print(f"{topic}: {read} read, {read - refused} readable, {refused} refused", file=out)
    return refused


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _reading(extractor: ReadingExtractor, record: Any) -> dict[str, Any]:
    r = extractor.reading(record, None)
    shown: dict[str, Any] = {"event_id": r.event_id, "entity": r.sensor_id, "time": _iso(r.ts)}
    shown["features"] = r.features
    if r.categories:
        shown["categories"] = r.categories
    return shown


def _feedback(extractor: FeedbackExtractor, record: Any) -> dict[str, Any]:
    f = extractor.feedback(record, None)
    return {"event_id": f.event_id, "entity": f.sensor_id, "time": _iso(f.ts), "label": f.label}


def _first_records(settings: Settings, topic: str, sample: int) -> Iterator[Any]:
    """Up to ``sample`` records from the start of ``topic``, partition by partition in the
    order they arrive; fewer when the topic holds fewer."""
    consumer = clients_for(settings).consumer()
    try:
        parts = topic_partitions(consumer, topic)
        consumer.assign(parts)
        starts = consumer.beginning_offsets(parts)
        ends = consumer.end_offsets(parts)
        for tp, offset in starts.items():
            consumer.seek(tp, offset)
        left = sample
        waiting = {tp for tp in parts if ends[tp] > starts[tp]}
        quiet_since = time.monotonic()
        while left and waiting and time.monotonic() - quiet_since < READ_TIMEOUT_S:
            batch = consumer.poll_batch(0.5)
            if batch:
                quiet_since = time.monotonic()
            for tp, records in batch.items():
                for record in records:
                    if left and record.offset < ends[tp]:
                        left -= 1
                        yield record
                    if record.offset + 1 >= ends[tp]:
                        waiting.discard(tp)
    finally:
        consumer.close(10)
