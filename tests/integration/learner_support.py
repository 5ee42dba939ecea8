"""Helpers for the learner's integration tests: messages, a learner process, its snapshots."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from online_model.snapshot import Snapshot, Trust, loads
from online_model.unpickler import Allowlist
from riverflow.schemas import dumps, now_ms
from riverflow.scrape import Page
from tests.integration.kit import Stack, free_port


def prediction(
    event_id: str,
    ts: int,
    features: dict[str, float],
    prediction: Any = True,
    scores: dict[str, float] | None = None,
) -> bytes:
    return dumps(
        {
            "event_id": event_id,
            "sensor_id": "s1",
            "event_ts": ts,
            "predicted_ts": ts,
            "model": "test",
            "model_version": 0,
            "prediction": prediction,
            "scores": scores,
            "features": features,
        }
    )


def feedback(event_id: str, ts: int, label: Any) -> bytes:
    return dumps({"event_id": event_id, "sensor_id": "s1", "ts": ts, "label": label})


def base_ts() -> int:
    """Event times that stay inside the default ts skew for the whole test."""
    return now_ms() - 3_600_000


class LearnerProcess:
    """``riverflow learn`` in the background, with its own metrics port and log file."""

    def __init__(
        self,
        stack: Stack,
        tmp: Path,
        *args: str,
        group_id: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.log = tmp / f"learner-{uuid.uuid4().hex[:6]}.log"
        argv = ["learn", "--metrics-port", str(self.port), *args]
        if group_id is not None:
            argv += ["--group-id", group_id]
        self.proc: subprocess.Popen[str] = stack.start(*argv, extra_env=env, log_path=str(self.log))

    def page(self) -> Page:
        return Page.fetch([f"http://127.0.0.1:{self.port}/metrics"])

    def wait_for(self, check: Callable[[Page], bool], timeout: float = 60) -> Page:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            page = self.page()
            if page.samples and check(page):
                return page
            if self.proc.poll() is not None:
                raise AssertionError(f"learner exited {self.proc.returncode}:\n{self.text()}")
            time.sleep(0.2)
        raise AssertionError(f"learner metrics never got there:\n{self.text()[-4000:]}")

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def wait_active(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while "active learner" not in self.text():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"learner never became active:\n{self.text()[-4000:]}")
            time.sleep(0.1)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait for a clean exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)


class Learners:
    """Starts learner processes for one test and kills whatever still runs when it ends."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[LearnerProcess] = []

    def start(self, stack: Stack, *args: str, **kw: Any) -> LearnerProcess:
        learner = LearnerProcess(stack, self.tmp, *args, **kw)
        self.started.append(learner)
        return learner

    def close(self) -> None:
        for learner in self.started:
            if learner.proc.poll() is None:
                learner.kill()


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
    records = stack.read(stack.settings.models_topic, idle=2.0)
    return [loads(r.value, trust) for r in records if r.key == model.encode()]
