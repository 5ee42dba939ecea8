"""/healthz and /readyz on the workers' metrics ports, against the real broker."""

from __future__ import annotations

import functools
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest
from river import linear_model

from tests.integration.inference_support import produce, reading
from tests.integration.kit import WorkerProcess, Workers, wait_until

pytestmark = pytest.mark.integration


def probe(worker: WorkerProcess, path: str) -> tuple[int, str]:
    """Status and body of ``path`` on the worker's metrics port (0 while it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def ready(worker: WorkerProcess) -> bool:
    return probe(worker, "/readyz") == (200, "ready\n")


class _Sleepy(linear_model.LogisticRegression):
    """Holds the worker loop for ``sleep`` seconds on a reading with that feature."""

    def predict_proba_one(self, x: dict[Any, Any], **kwargs: Any) -> dict[Any, float]:
        if x.get("sleep"):
            time.sleep(x["sleep"])
        return super().predict_proba_one(x, **kwargs)


def sleepy() -> _Sleepy:
    return _Sleepy()


def test_ready_once_joined_with_a_model_and_live_while_the_loop_turns(
    stack: Any, workers: Workers
) -> None:
    s = stack(partitions=1)
    group = f"riverflow-learn-test-{uuid.uuid4().hex[:8]}"
    infer = workers.spawn(s, "infer", "--model", "logreg", "--group-id", f"i-{group}")
    active = workers.spawn(s, "learn", "--model", "logreg", "--group-id", group)
    standby = workers.spawn(s, "learn", "--model", "logreg", "--group-id", group)
    for worker in (infer, active, standby):
        try:
            wait_until(functools.partial(ready, worker), what=f"{worker.command} ready")
        except AssertionError:
            raise AssertionError(f"not ready: {probe(worker, '/readyz')}") from None
        status, body = probe(worker, "/healthz")
        assert status == 200 and body.startswith("ok: the loop turned"), body
        assert worker.value("riverflow_model_version") is not None  # /metrics is still there
    assert {w.value("riverflow_learner_active") for w in (active, standby)} == {0, 1}


def test_a_stalled_loop_is_unhealthy_until_it_turns_again(stack: Any, workers: Workers) -> None:
    s = stack(partitions=1)
    model = f"{__name__}:sleepy"
    infer = workers.spawn(
        s,
        "infer",
        "--model",
        model,
        "--group-id",
        f"i-{uuid.uuid4().hex[:8]}",
        env={"RIVERFLOW_HEALTH_STALL_S": "2"},
    )
    wait_until(lambda: ready(infer), what="ready")
    held = reading(0)
    held["features"]["sleep"] = 8.0
    produce(s.settings, [held])
    status, body = wait_until(
        lambda: (p := probe(infer, "/healthz"))[0] == 503 and p, what="a 503 while stalled"
    )
    assert body.startswith("stalled: the loop has not turned for"), body
    wait_until(lambda: (infer.value("riverflow_predictions") or 0) >= 1, what="the prediction")
    wait_until(lambda: probe(infer, "/healthz")[0] == 200, what="healthy again")
    assert infer.stop() == 0
