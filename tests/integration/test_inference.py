"""`riverflow infer` on the real broker: predictions, dead letters, groups, shutdown, metrics."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from riverflow.schemas import now_ms
from riverflow.transport import clients_for
from riverflow.transport.errors import CommitFailed
from tests.integration.inference_support import (
    committed_total,
    event_ids,
    group,
    infer_args,
    produce,
    read_all,
    reading,
    scrape,
    stop,
    value,
)
from tests.integration.kit import free_port, wait_until

pytestmark = pytest.mark.integration

SUPPORT = "tests.integration.inference_support"  # holds the custom estimators


def test_every_reading_gets_one_prediction_and_a_restart_continues(stack: Any) -> None:
    s = stack(partitions=3)
    g = group()
    sent = [reading(i) for i in range(600)]
    produce(s.settings, sent)
    s.run(*infer_args(g, "--idle-exit", "3", "--metrics-port", "0"))
    first = read_all(s.settings, s.settings.predictions_topic)
    assert event_ids(first) == Counter(r["event_id"] for r in sent)

    by_id = {r["event_id"]: r for r in sent}
    for record in first:
        p = json.loads(record.value)
        src = by_id[p["event_id"]]
        assert record.key == src["sensor_id"].encode()
        assert (p["sensor_id"], p["event_ts"], p["features"]) == (
            src["sensor_id"],
            src["ts"],
            src["features"],
        )
        assert (p["model"], p["model_version"]) == ("logreg", 0)
        assert p["prediction"] in (True, False) and set(p["scores"]) == {"False", "True"}
        assert p["predicted_ts"] >= p["event_ts"]
    assert committed_total(s.settings, g) == 600

    # A restart resumes from the committed offsets: only the new readings, none missed.
    more = [reading(i) for i in range(600, 1000)]
    produce(s.settings, more)
    s.run(*infer_args(g, "--idle-exit", "3", "--metrics-port", "0"))
    every = event_ids(read_all(s.settings, s.settings.predictions_topic))
    assert every == Counter(r["event_id"] for r in sent + more)
    assert committed_total(s.settings, g) == 1000


def test_bad_input_is_dead_lettered_with_reasons_and_nothing_is_lost(stack: Any) -> None:
    s = stack(partitions=2, max_features=16, max_message_bytes=2048)
    g = group()
    now = now_ms()
    bad: list[tuple[dict[str, Any] | bytes, str, str]] = [
        (b"this is not json", "decode", "not valid JSON"),
        (b'{"event_id": "x1", "ts": 1}', "validate", "Field required"),
        (
            b'{"event_id":"x2","sensor_id":"s","ts":%d,"features":{"a":NaN}}' % now,
            "validate",
            "NaN and infinity",
        ),
        (reading(9001, features={f"f{i}": 1.0 for i in range(20)}), "validate", "max_features"),
        (reading(9002, pad="x" * 3000), "validate", "max_message_bytes"),
        (reading(9003, ts=now - 3 * 86_400_000), "validate", "max_ts_skew_s"),
        (reading(9004, features={"a": 1.0, "boom": 1.0}), "predict", "ArithmeticError"),
    ]
    good = [reading(i) for i in range(300)]
    produce(s.settings, [*good[:150], *(b for b, _, _ in bad), *good[150:]])
    model = SUPPORT + ":exploding"
    s.run(*infer_args(g, "--idle-exit", "3", "--metrics-port", "0", model=model))

    predictions = read_all(s.settings, s.settings.predictions_topic)
    dead = read_all(s.settings, s.settings.dead_letters_topic)
    assert event_ids(predictions) == Counter(r["event_id"] for r in good)
    assert len(predictions) + len(dead) == len(good) + len(bad)
    assert committed_total(s.settings, g) == len(good) + len(bad)

    originals = {
        (b if isinstance(b, bytes) else json.dumps(b).encode()): (stage, text)
        for b, stage, text in bad
    }
    for record in dead:
        headers = {k: v.decode() for k, v in record.headers}
        stage, text = originals.pop(record.value)
        assert headers["riverflow-stage"] == stage
        assert text in headers["riverflow-reason"], headers
        assert headers["riverflow-error"] == "InvalidEvent"
        topic, partition, offset = headers["riverflow-source"].rsplit("/", 2)
        assert topic == s.settings.readings_topic and int(offset) >= 0 and int(partition) in (0, 1)
    assert originals == {}


def test_two_workers_split_the_partitions_and_predict_everything(
    stack: Any, tmp_path: Path
) -> None:
    s = stack(partitions=4)
    g = group()
    ports = [free_port(), free_port()]
    procs = [
        s.start(
            *infer_args(g, "--metrics-port", str(port)), log_path=str(tmp_path / f"w{port}.log")
        )
        for port in ports
    ]
    try:
        lags = [
            wait_until(
                lambda p=port: scrape(p).select("riverflow_consumer_lag"),  # type: ignore[misc]
                what="both workers to report lag",
            )
            for port in ports
        ]
        # Each owns half of the partitions once the group settles.
        wait_until(
            lambda: all(len(scrape(p).select("riverflow_consumer_lag")) == 2 for p in ports),
            what="a 2 + 2 split",
        )
        owned = [
            {labels["partition"] for labels, _ in scrape(p).select("riverflow_consumer_lag")}
            for p in ports
        ]
        assert lags and owned[0].isdisjoint(owned[1]) and owned[0] | owned[1] == set("0123")

        sent = [reading(i) for i in range(2000)]
        produce(s.settings, sent)
        counts = wait_until(
            lambda: (
                c
                if sum(c := [value(scrape(p), "riverflow_predictions") or 0 for p in ports]) >= 2000
                else None
            ),
            what="2000 predictions",
        )
        assert all(c > 0 for c in counts), counts
    finally:
        codes = [stop(p) for p in procs]
    assert codes == [0, 0]
    assert event_ids(read_all(s.settings, s.settings.predictions_topic)) == Counter(
        r["event_id"] for r in sent
    )


def test_sigterm_leaves_no_finished_work_uncommitted(stack: Any, tmp_path: Path) -> None:
    s = stack(partitions=3, max_poll_records=50)
    g = group()
    produce(s.settings, (reading(i) for i in range(20_000)))  # ~40 s of work for the slow model
    log = tmp_path / "infer.log"
    port = free_port()
    proc = s.start(
        *infer_args(
            g, "--metrics-port", str(port), model="tests.integration.inference_support:slow"
        ),
        log_path=str(log),
    )
    wait_until(
        lambda: (value(scrape(port), "riverflow_predictions") or 0) > 500,
        what="some predictions",
    )
    started = time.monotonic()
    assert stop(proc) == 0
    assert time.monotonic() - started < s.settings.shutdown_timeout_s
    predictions = read_all(s.settings, s.settings.predictions_topic)
    assert 500 < len(predictions) < 20_000, "stopped halfway"
    assert len(event_ids(predictions)) == len(predictions)
    assert committed_total(s.settings, g) == len(predictions)
    assert "infer stopped (SIGTERM)" in log.read_text()


def test_metrics_endpoint_serves_every_family(stack: Any, tmp_path: Path) -> None:
    from tests.integration.test_inference_models import publish

    s = stack(partitions=2)
    port = free_port()
    proc = s.start(*infer_args(group(), "--metrics-port", str(port)), log_path=str(tmp_path / "l"))
    try:
        wait_until(lambda: scrape(port).select("riverflow_consumer_lag"), what="the endpoint")
        # Feature "c" shifts by three standard deviations halfway: the sampled monitor sees it.
        rng = random.Random(7)
        shifting = [
            reading(i, features={"a": 1.0, "b": 2.0, "c": rng.gauss(3.0 * (i >= 2000), 1.0)})
            for i in range(4000)
        ]
        produce(s.settings, [*shifting, b"{not json"])
        publish(s.settings, "logreg", 1)
        publish(s.settings, "logreg", 2, key=None)
        m = wait_until(
            lambda: (
                mm
                if (value(mm := scrape(port), "riverflow_predictions") or 0) >= 4000
                and value(mm, "riverflow_snapshot_rejected", reason="unsigned")
                and value(mm, "riverflow_invalid_events", reason="not_json")
                else None
            ),
            what="predictions, the dead letter and a refused snapshot",
        )
    finally:
        assert stop(proc) == 0
    assert value(m, "riverflow_invalid_events", reason="not_json") == 1
    assert value(m, "riverflow_dead_letters", stage="decode") == 1
    assert value(m, "riverflow_model_version") == 1
    assert value(m, "riverflow_model_swaps") == 1
    assert 0 <= (value(m, "riverflow_model_age_seconds") or -1) < 60
    for histogram in ("predict_latency", "end_to_end_latency", "batch_latency"):
        assert (value(m, f"riverflow_{histogram}_seconds_count") or 0) > 0, histogram
    lag = m.select("riverflow_consumer_lag")
    assert {labels["partition"] for labels, _ in lag} == {"0", "1"}
    assert all(v >= 0 for _, v in lag)
    scores = m.select("riverflow_feature_drift_score")
    assert {labels["feature"] for labels, _ in scores} == {"a", "b", "c"}
    detections = {
        labels["feature"]: v for labels, v in m.select("riverflow_feature_drift_detections_total")
    }
    assert detections["a"] == detections["b"] == 0 and detections["c"] >= 1


def test_revocation_commits_finished_work_before_the_handover(stack: Any) -> None:
    from riverflow.consumers.inference.worker import InferenceWorker

    g = group()
    s = stack(partitions=2, group_id=g, metrics_port=0)
    produce(s.settings, [reading(i) for i in range(100)])
    clients = clients_for(s.settings)
    worker = InferenceWorker(s.settings, clients)
    worker.start()
    commit = worker.consumer.commit

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise CommitFailed("injected: the group is rebalancing")

    worker.consumer.commit = refuse  # type: ignore[method-assign]  # offsets stay pending
    newcomer = clients.consumer(g)
    stolen: list[Any] = []
    try:
        registry = worker.metrics.registry
        wait_until(
            lambda: (
                worker.step(0.5) == 0
                and registry.get_sample_value("riverflow_predictions_total") == 100
            )
        )
        # Batch commits are refused, so only a revocation commits: the group's first join can
        # already have rebalanced once (kafka-python does when the topic's metadata settles).
        assert committed_total(s.settings, g) in (0, 100)

        # A second member joins: the worker's next polls revoke its partitions, and the
        # listener commits the pending offsets before anyone else may read them.
        def join_and_read() -> None:
            newcomer.subscribe([s.settings.readings_topic])
            for _ in range(20):
                stolen.extend(newcomer.poll_batch(0.5).values())

        joined = threading.Thread(target=join_and_read)
        joined.start()
        while joined.is_alive():
            worker.step(0.1)
        assert committed_total(s.settings, g) == 100
        assert newcomer.assignment(), "the newcomer took partitions"
        assert not any(stolen), "the newcomer re-read nothing"
    finally:
        worker.consumer.commit = commit  # type: ignore[method-assign]
        newcomer.close(10)
        worker.close()
