"""``riverflow replay DATASET|CSV``: a River dataset or a CSV file as readings + feedback, in order.

Rows without a sensor column all use one sensor id (the dataset or file name), so they land on
one partition and stay in order. Each label follows its reading after ``--label-delay`` seconds
or ``--label-delay-events`` readings (0: right after its reading, before the next one). See
:mod:`riverflow.producers.tabular` for how values become features and labels.
"""

from __future__ import annotations

import argparse
import itertools
import logging
from collections.abc import Iterable, Iterator

from riverflow.lifecycle import Stopper
from riverflow.mapping import mapped_settings, mapping_of
from riverflow.mapping_encode import MappedEncoder
from riverflow.options import add_mapping_argument, settings_from
from riverflow.producers.events import Outgoing, run_prefix
from riverflow.producers.options import add_label_delay, add_rate, number
from riverflow.producers.publisher import MAX_BLOCK_S, Publisher, ensure_topics
from riverflow.producers.tabular import FeatureCleaner, open_source, to_events
from riverflow.schemas import now_ms
from riverflow.transport import clients_for

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        metavar="DATASET|CSV",
        help="a River dataset shipped with the package (e.g. phishing, bananas, imagesegments, "
        "shuttle, waterflow; case-insensitive) or a CSV file (.csv or .csv.gz)",
    )
    parser.add_argument("--target", help="CSV: the label column (required for CSV)")
    parser.add_argument("--id-column", help="CSV: event ids (default <run prefix>-<row>)")
    parser.add_argument("--sensor-column", help="CSV: sensor ids (default the file name)")
    parser.add_argument(
        "--ts-column", help="CSV: reading ts, epoch ms or ISO-8601 (default the send time)"
    )
    add_mapping_argument(parser)
    add_rate(parser, default=0)
    parser.add_argument("--limit", type=number(int, 1), help="replay at most this many rows")
    delay = parser.add_mutually_exclusive_group()
    add_label_delay(delay, default=0.0)
    delay.add_argument(
        "--label-delay-events",
        type=number(int, 0),
        metavar="N",
        help="send each label after N more readings (0: right after its reading)",
    )


def run(args: argparse.Namespace) -> int:
    # --mapping: the mapped topics, in the mapped shape (riverflow.mapping_encode).
    mapping = mapping_of(settings_from(args))
    settings = mapped_settings(settings_from(args), mapping)
    encoder = MappedEncoder(mapping) if mapping is not None else None
    categorical: frozenset[str] = frozenset()
    if mapping is not None:
        paths = mapping.readings.categorical
        categorical = frozenset([*paths, *(p.rsplit(".", 1)[-1] for p in paths)])
    table = open_source(
        args.source,
        target=args.target,
        id_column=args.id_column,
        sensor_column=args.sensor_column,
        ts_column=args.ts_column,
    )
    by_events = args.label_delay_events is not None
    cleaner = FeatureCleaner()
    prefix = run_prefix()
    events: Iterable[Outgoing] = to_events(
        table,
        id_prefix=prefix,
        label_delay=args.label_delay_events if by_events else args.label_delay,
        cleaner=cleaner,
        categorical=categorical,
    )
    if args.limit is not None:
        events = itertools.islice(events, args.limit)
    if args.ts_column:
        events = _warn_on_skew(events, settings.max_ts_skew_s)
    log.info(
        "replaying %s (default sensor id %r, event ids %s-<row>)", args.source, table.name, prefix
    )
    ensure_topics(settings)
    publisher = Publisher(
        settings,
        name="replay",
        producer=clients_for(settings).producer(max_block_s=MAX_BLOCK_S),
        rate=args.rate,
        delay_unit="readings" if by_events else "seconds",
        stopper=Stopper().install(),
        encoder=encoder,
    )
    try:
        publisher.run(events)
    finally:
        if cleaner.dropped:
            counts = ", ".join(f"{k} ({n:,})" for k, n in cleaner.dropped.most_common())
            log.warning("values left out as not numbers: %s", counts)
    return 0


def _warn_on_skew(events: Iterable[Outgoing], max_skew_s: float) -> Iterator[Outgoing]:
    """Consumers dead-letter readings whose ts is far from now: say so once, early."""
    warned = False
    for event in events:
        if not warned and isinstance(event.ts, int) and abs(event.ts - now_ms()) > max_skew_s * 1e3:
            log.warning(
                "row ts %d is more than max_ts_skew_s=%g from now: consumers will send such "
                "readings to dead letters (raise RIVERFLOW_MAX_TS_SKEW_S to accept them)",
                event.ts,
                max_skew_s,
            )
            warned = True
        yield event
