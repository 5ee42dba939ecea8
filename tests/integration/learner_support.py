"""Helpers for the learner's integration tests: messages, a learner process, its snapshots."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from riverflow.online_model.snapshot import Snapshot, Trust, loads
from riverflow.online_model.unpickler import Allowlist
from riverflow.schemas import Reading, feedback_value, now_ms, prediction_value
from tests.integration.kit import Stack, WorkerProcess, Workers


def prediction(
    event_id: str,
    ts: int,
    features: dict[Any, float],
    prediction: Any = True,
    scores: dict[str, float] | None = None,
) -> bytes:
    x = {str(k): float(v) for k, v in features.items()}  # JSON keys are strings
    reading = Reading(event_id=event_id, sensor_id="s1", ts=ts, features=x)
    return prediction_value(reading, "test", 0, prediction, scores, ts)


def feedback(event_id: str, ts: int, label: Any) -> bytes:
    return feedback_value(event_id, "s1", ts, label)


def base_ts() -> int:
    """Event times that stay inside the default ts skew for the whole test."""
    return now_ms() - 3_600_000


class LearnerProcess(WorkerProcess):
    """``riverflow learn`` in the background, with its own metrics port and log file."""

    def __init__(
        self,
        stack: Stack,
        tmp: Path,
        *args: str,
        group_id: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        group = ["--group-id", group_id] if group_id is not None else []
        super().__init__(stack, tmp, "learn", *args, *group, env=env)

    def wait_active(self, timeout: float = 60) -> None:
        self.wait_for(lambda pg: pg.sum("riverflow_learner_active") == 1, timeout)


class Learners(Workers):
    """Starts learner processes for one test and kills whatever still runs when it ends."""

    def start(self, stack: Stack, *args: str, **kw: Any) -> LearnerProcess:
        return self.add(LearnerProcess(stack, self.tmp, *args, **kw))


@pytest.fixture
def learners(tmp_path: Path) -> Iterator[Learners]:
    started = Learners(tmp_path)
    try:
        yield started
    finally:
        started.close()


def snapshots(stack: Stack, model: str, key: bytes | None = None) -> list[Snapshot]:
    """Every committed snapshot of ``model`` on the models topic, oldest first, verified with
    ``key`` (default: the stack's) and loaded as a worker would (the test models allowed)."""
    trust = Trust(key or stack.key, allowed=Allowlist(["tests"]))
    records = stack.read(stack.settings.models_topic)
    return [loads(r.value, trust) for r in records if r.key == model.encode()]
