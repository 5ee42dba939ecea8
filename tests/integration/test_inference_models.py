"""Hot swap: inference follows the models topic, swaps newer snapshots, refuses bad ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from river import linear_model, preprocessing

from riverflow.online_model.snapshot import SnapshotHeader, dumps
from riverflow.settings import Settings
from tests.integration.inference_support import (
    group,
    infer_args,
    produce,
    read_all,
    reading,
    scrape,
    send_model,
    stop,
    value,
)
from tests.integration.kit import free_port, wait_until

pytestmark = pytest.mark.integration


def trained_logreg() -> Any:
    """A model that is confident on the test readings, unlike the untrained version 0."""
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    for i in range(200):
        x = reading(i)["features"]
        model.learn_one(x, x["a"] >= 5)
    return model


def publish(
    settings: Settings,
    model: str,
    version: int,
    *,
    key: bytes | None | str = "settings",
    task: str = "classification",
    estimator: Any = None,
) -> None:
    """Publish a snapshot; ``key="settings"`` signs with the stack's signing key."""
    if key == "settings":
        secret = settings.model_signing_key
        key = secret.get_secret_value().encode() if secret else None
    assert not isinstance(key, str)
    blob = dumps(
        SnapshotHeader(model, version, task, learned_count=100 * version),
        estimator if estimator is not None else trained_logreg(),
        key=key,
    )
    send_model(settings, model, blob)


def versions(settings: Settings, ids: set[str]) -> set[int]:
    records = read_all(settings, settings.predictions_topic)
    found = [json.loads(r.value) for r in records]
    assert ids <= {p["event_id"] for p in found}
    return {p["model_version"] for p in found if p["event_id"] in ids}


def test_newer_snapshots_swap_in_and_bad_ones_are_refused(stack: Any, tmp_path: Path) -> None:
    s = stack(partitions=2)
    port = free_port()
    log = tmp_path / "infer.log"
    proc = s.start(*infer_args(group(), "--metrics-port", str(port)), log_path=str(log))
    try:

        def predictions_reach(n: int) -> None:
            wait_until(
                lambda: (value(scrape(port), "riverflow_predictions") or 0) >= n,
                what=f"{n} predictions",
            )

        produce(s.settings, [reading(i) for i in range(100)])
        predictions_reach(100)
        assert value(scrape(port), "riverflow_model_version") == 0

        publish(s.settings, "logreg", 1)
        wait_until(lambda: value(scrape(port), "riverflow_model_version") == 1, what="v1")
        produce(s.settings, [reading(i) for i in range(100, 200)])
        predictions_reach(200)

        # Refused: wrongly signed, unsigned, another task; ignored: not newer.
        publish(s.settings, "logreg", 2, key=b"not-the-key-of-16+")
        publish(s.settings, "logreg", 3, key=None)
        publish(s.settings, "logreg", 4, task="regression")
        publish(s.settings, "logreg", 1)
        metrics = wait_until(
            lambda: (
                m
                if value(m := scrape(port), "riverflow_snapshot_rejected", reason="wrong_task")
                else None
            ),
            what="the refusals",
        )
        produce(s.settings, [reading(i) for i in range(200, 300)])
        predictions_reach(300)
    finally:
        assert stop(proc) == 0

    assert value(metrics, "riverflow_snapshot_rejected", reason="bad_signature") == 1
    assert value(metrics, "riverflow_snapshot_rejected", reason="unsigned") == 1
    assert value(metrics, "riverflow_model_swaps") == 1
    assert value(metrics, "riverflow_model_version") == 1
    assert versions(s.settings, {f"e{i}" for i in range(100)}) == {0}
    assert versions(s.settings, {f"e{i}" for i in range(100, 300)}) == {1}
    # The swapped-in model is really the trained one (untrained logreg says 0.5 to everything).
    served = [json.loads(r.value) for r in read_all(s.settings, s.settings.predictions_topic)]
    assert {max(p["scores"].values()) for p in served if p["model_version"] == 0} == {0.5}
    assert all(max(p["scores"].values()) > 0.5 for p in served if p["model_version"] == 1)
    text = log.read_text()
    assert "refused a snapshot (bad_signature)" in text and "swapped in logreg v1" in text


def test_a_worker_starts_from_the_latest_snapshot_of_its_model(stack: Any) -> None:
    s = stack(partitions=2)
    publish(s.settings, "logreg", 1)
    publish(s.settings, "logreg", 2)
    publish(s.settings, "hoeffding", 7)  # another model's snapshot on the same topic
    produce(s.settings, [reading(i) for i in range(50)])
    result = s.run(*infer_args(group(), "--idle-exit", "3", "--metrics-port", "0"))
    assert "model logreg (classification) v2" in result.stderr
    assert versions(s.settings, {f"e{i}" for i in range(50)}) == {2}
