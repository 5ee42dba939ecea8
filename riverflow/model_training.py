"""``riverflow models train``: learn a model offline from a River dataset or a CSV file.

Test-then-train on every row, exactly as the learner does with a joined pair (the same
evaluator, the same drift monitor, the same ``evaluate_one``), so the evaluation state that
travels in the snapshot continues seamlessly in the learner that resumes from it: its
cumulative metrics after the live stream equal River's progressive validation over the
offline rows followed by the live ones. Features and labels go through the same cleaning as
``riverflow replay`` (what the wire would carry). With a mapping (``--mapping FILE``,
:mod:`riverflow.mapping`) it learns from the mapped readings and feedback topics instead.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TextIO

from riverflow.errors import InvalidEvent
from riverflow.extract import FeedbackExtractor, ReadingExtractor
from riverflow.mapping import Mapping
from riverflow.model_store import read_whole
from riverflow.online_model.drift import ConceptDriftMonitor
from riverflow.online_model.evaluation import Evaluator, evaluate_one, predicts_by_argmax
from riverflow.online_model.presets import ModelSpec
from riverflow.producers.tabular import FeatureCleaner, Row
from riverflow.schemas import Decoder, Feedback, wire_label
from riverflow.settings import Settings
from riverflow.transport import Clients

# A terminal gets a live bar; a log a line every 10 s.
TTY_INTERVAL_S = 0.25
LOG_INTERVAL_S = 10.0


@dataclass
class Trained:
    model: Any
    learned: int
    skipped: int  # rows without a label (nothing to learn) or refused by the model
    evaluation: dict[
        str, Any
    ]  # what the learner keeps beside the model (consumers/learner/state.py)
    seconds: float


class Bar:
    """A progress bar on stderr: rows done of the total when it is known."""

    def __init__(self, total: int | None, stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = TTY_INTERVAL_S if self.tty else LOG_INTERVAL_S
        self.start = self._shown = time.monotonic()

    def update(self, done: int, metric: str) -> None:
        now = time.monotonic()
        if now - self._shown < self.interval:
            return
        self._shown = now
        self._write(self._line(done, metric, now))

    def finish(self, done: int, metric: str) -> None:
        self._write(self._line(done, metric, time.monotonic()))
        if self.tty:
            self.stream.write("\n")
        self.stream.flush()

    def _line(self, done: int, metric: str, now: float) -> str:
        rate = done / max(now - self.start, 1e-9)
        if self.total:
            filled = int(30 * done / self.total)
            bar = "#" * filled + "." * (30 - filled)
            head = f"[{bar}] {done:,}/{self.total:,}"
        else:
            head = f"{done:,} rows"
        return f"train {head} {rate:,.0f}/s {metric}"

    def _write(self, line: str) -> None:
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()


def headline(evaluator: Evaluator) -> str:
    """The first cumulative metric, for the progress bar."""
    for metric, window, value in evaluator.values():
        if window == "cumulative":
            return f"{metric} {value:.4f}"
    return ""


def mapped_rows(settings: Settings, mapping: Mapping, clients: Clients) -> tuple[list[Row], int]:
    """The readings on the mapped readings topic, each with its label when the feedback topic
    (mapped, or riverflow's own format without a ``[feedback]`` table) has one, in event-time
    order; and how many records were refused. Both topics are read whole, to their ends."""
    s = settings
    refused = 0
    labels: dict[str, Any] = {}
    fb = mapping.feedback
    extractor = FeedbackExtractor(fb, s.max_message_bytes, s.max_ts_skew_s) if fb else None
    decoder = Decoder.from_settings(s)

    def feedback(record: Any) -> Feedback:
        if extractor is not None:
            return extractor.feedback(record, None)
        return decoder.feedback(record.value, None)

    for record in read_whole(clients, s, mapping.feedback_topic(s)):
        try:
            f = feedback(record)
        except InvalidEvent:
            refused += 1
            continue
        labels[f.event_id] = f.label
    readings = ReadingExtractor(
        mapping.readings, s.max_features, s.max_message_bytes, s.max_ts_skew_s
    )
    rows = []
    for record in read_whole(clients, s, mapping.readings_topic(s)):
        try:
            r = readings.reading(record, None)
        except InvalidEvent:
            refused += 1
            continue
        rows.append(Row(r.x, labels.get(r.event_id), r.event_id, r.sensor_id, r.ts))
    rows.sort(key=lambda row: row.ts or 0)
    return rows, refused


def train(
    spec: ModelSpec,
    rows: Iterable[Row],
    window: int,
    detector: str,
    bar: Bar | None = None,
    clean: bool = True,
) -> Trained:
    """Test-then-train ``spec``'s fresh estimator on ``rows`` (anomaly models learn every row
    and are scored on the labelled ones). ``clean``: rows of a dataset or CSV, whose values
    become features as ``riverflow replay`` sends them; mapped rows are ready already."""
    task = spec.task
    model = spec.build()
    argmax = task == "classification" and predicts_by_argmax(model)
    served, evaluator = Evaluator(task, window), Evaluator(task, window)
    drift = ConceptDriftMonitor(detector)
    cleaner = FeatureCleaner()
    learned = skipped = done = 0
    started = time.monotonic()
    for row in rows:
        done += 1
        if bar is not None:
            bar.update(done, headline(evaluator))
        x, y = (cleaner(row.x) if clean else row.x), wire_label(row.y)
        try:
            if task == "anomaly":
                score = float(model.score_one(x))
                model.learn_one(x)
                learned += 1
                if y is not None:
                    evaluator.update(y, score)
                continue
            if y is None:
                skipped += 1
                continue
            err = evaluate_one(model, task, x, y, evaluator, argmax)
            model.learn_one(x, y)
        except Exception:  # a row the model refuses is skipped, as the learner dead-letters it
            skipped += 1
            continue
        learned += 1
        if err is not None:
            drift.update(err)
    if bar is not None:
        bar.finish(done, headline(evaluator))
    evaluation = {"served": served, "learner": evaluator, "drift": drift}
    return Trained(model, learned, skipped, evaluation, time.monotonic() - started)
