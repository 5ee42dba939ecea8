"""`--exactly-once`: a batch's predictions, dead letters and offsets commit in one transaction."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from riverflow.consumers.inference.worker import InferenceWorker
from riverflow.transport import clients_for
from riverflow.transport.errors import TransportError
from tests.integration.inference_support import (
    committed_total,
    event_ids,
    group,
    infer_args,
    produce,
    read_all,
    reading,
)
from tests.integration.kit import wait_until

pytestmark = pytest.mark.integration


def test_read_committed_never_sees_an_aborted_batch(stack: Any) -> None:
    g = group()
    s = stack(partitions=2, exactly_once=True, group_id=g, max_poll_records=100, metrics_port=0)
    good = [reading(i) for i in range(300)]
    produce(s.settings, [*good[:50], b"not json", *good[50:]])

    worker = InferenceWorker(s.settings, clients_for(s.settings))
    worker.start()
    producer = worker.delivery.producer
    commit_transaction = producer.commit_transaction
    failed_batches: list[int] = []

    def crash_before_commit(timeout_s: float) -> None:
        # The batch's predictions, dead letter and offsets are in the log, inside the open
        # transaction; the worker "dies" before committing it.
        producer.flush(timeout_s)
        failed_batches.append(1)
        raise TransportError("injected fault: commit_transaction failed")

    producer.commit_transaction = crash_before_commit  # type: ignore[method-assign]
    try:
        wait_until(lambda: worker.step(0.5) and failed_batches, what="a batch to fail")
        producer.commit_transaction = commit_transaction  # type: ignore[method-assign]
        wait_until(
            lambda: worker.step(0.5) == 0 and committed_total(s.settings, g) == len(good) + 1,
            what="every reading committed",
        )
    finally:
        worker.close()

    committed = read_all(s.settings, s.settings.predictions_topic)
    written = read_all(s.settings, s.settings.predictions_topic, committed_only=False)
    assert event_ids(committed) == Counter(r["event_id"] for r in good)  # each exactly once
    aborted = len(written) - len(committed)
    assert 0 < aborted <= 100, "the aborted batch reached the log, and stayed invisible"
    assert set(event_ids(written)) == set(event_ids(committed))

    dead = read_all(s.settings, s.settings.dead_letters_topic)
    assert [d.value for d in dead] == [b"not json"]
    dead_written = read_all(s.settings, s.settings.dead_letters_topic, committed_only=False)
    assert len(dead_written) in (1, 2)  # twice if the bad reading was in the aborted batch


def test_exactly_once_command_predicts_each_reading_once(stack: Any) -> None:
    s = stack(partitions=3)
    g = group()
    good = [reading(i) for i in range(1000)]
    produce(s.settings, [*good, b"{}"])
    result = s.run(*infer_args(g, "--exactly-once", "--idle-exit", "3", "--metrics-port", "0"))
    assert "exactly-once" in result.stderr
    predictions = read_all(s.settings, s.settings.predictions_topic)
    assert event_ids(predictions) == Counter(r["event_id"] for r in good)
    assert {json.loads(p.value)["model_version"] for p in predictions} == {0}
    assert len(read_all(s.settings, s.settings.dead_letters_topic)) == 1
    assert committed_total(s.settings, g) == len(good) + 1
