"""Helpers for the inference integration tests (test_inference*.py), and custom estimators
for `--model tests.integration.inference_support:<factory>`."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from typing import Any

from river import linear_model

from riverflow.schemas import now_ms
from riverflow.scrape import Page
from riverflow.settings import Settings
from riverflow.transport import clients_for, topic_partitions
from tests.integration.kit import read_topic
from tests.integration.kit import value as value  # re-exported for the inference tests


def reading(i: int, **overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "event_id": f"e{i}",
        "sensor_id": f"s{i % 50}",
        "ts": now_ms(),
        "features": {"a": float(i % 10), "b": 0.5 * i, "c": -1.0},
    }
    value.update(overrides)
    return value


def produce(settings: Settings, values: Iterable[dict[str, Any] | bytes]) -> int:
    """Send readings (dicts are JSON-encoded, bytes sent as they are); returns how many."""
    p = clients_for(settings).producer()
    n = 0
    for item in values:
        if isinstance(item, dict):
            key = str(item.get("sensor_id", "none")).encode()
            raw = json.dumps(item).encode()
        else:
            key, raw = b"raw", item
        p.send(settings.readings_topic, key, raw)
        n += 1
    assert p.flush(60) == 0, "readings not delivered"
    p.close(10)
    return n


def send_model(settings: Settings, model: str, value: bytes | None) -> None:
    """Write ``value`` (any bytes, or a tombstone) under ``model`` on the models topic."""
    p = clients_for(settings).producer()
    p.send(settings.models_topic, model.encode(), value)
    assert p.flush(60) == 0, "model not delivered"
    p.close(10)


def read_all(settings: Settings, topic: str, *, committed_only: bool = True) -> list[Any]:
    """Every record of ``topic`` up to its end offsets (its writers are done)."""
    return read_topic(settings, topic, timeout=600, committed_only=committed_only)


def event_ids(records: list[Any]) -> Counter[str]:
    return Counter(json.loads(r.value)["event_id"] for r in records)


def committed_total(settings: Settings, group: str) -> int:
    client = clients_for(settings).consumer(group)  # never subscribes: reads offsets only
    try:
        offsets = client.committed(topic_partitions(client, settings.readings_topic))
    finally:
        client.close(10)
    return sum(o or 0 for o in offsets.values())


def scrape(port: int) -> Page:
    """The worker's metrics page; empty when the endpoint is not up yet."""
    return Page.fetch([f"http://127.0.0.1:{port}/metrics"], timeout_s=2)


def group() -> str:
    return f"test-infer-{uuid.uuid4().hex[:8]}"


def infer_args(group_id: str, *extra: str, model: str = "logreg") -> list[str]:
    return ["infer", "--model", model, "--group-id", group_id, *extra]


def stop(proc: subprocess.Popen[str], timeout: float = 30) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=timeout)


# Custom estimators for `--model tests.integration.inference_support:<factory>`.


class _Exploding(linear_model.LogisticRegression):
    """Raises on readings with a truthy "boom" feature: a model error, not a data error."""

    def predict_proba_one(self, x: dict[Any, Any], **kwargs: Any) -> dict[Any, float]:
        if x.get("boom"):
            raise ArithmeticError("boom feature")
        return super().predict_proba_one(x, **kwargs)


def exploding() -> _Exploding:
    return _Exploding()


class _Slow(linear_model.LogisticRegression):
    """Takes ~2 ms per prediction, so a test can stop the worker halfway through a backlog."""

    def predict_proba_one(self, x: dict[Any, Any], **kwargs: Any) -> dict[Any, float]:
        time.sleep(0.002)
        return super().predict_proba_one(x, **kwargs)


def slow() -> _Slow:
    return _Slow()


class _Verbose(linear_model.LogisticRegression):
    """Answers readings with a truthy "verbose" feature with 400 classes of 1 KB names: a
    prediction of ~420 KB, more than a predictions topic whose max.message.bytes is lowered."""

    def predict_proba_one(self, x: dict[Any, Any], **kwargs: Any) -> dict[Any, float]:
        if x.get("verbose"):
            return {f"{i:04d}" + "c" * 1024: 1 / 400 for i in range(400)}
        return super().predict_proba_one(x, **kwargs)


def verbose() -> _Verbose:
    return _Verbose()
