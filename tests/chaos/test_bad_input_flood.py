"""A flood of hostile readings among good ones, against a running inference worker.

Every reading of the named hostile corpus (``tests/hostile.py``: not JSON, non-UTF-8, 10**400 in
ts and features, deep nesting, NaN and infinities, too many features, 2 MB, wrong types, missing
fields, empty values and tombstones, ...) is sent twice, shuffled in among good readings and
readings that only look hostile (odd feature names, duplicate keys). Every good reading is
predicted once, every bad one is dead-lettered once with its reason and source, and the worker
stays up with a /metrics page that parses, hostile feature names in its labels included.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from typing import Any

import pytest
from kafka import KafkaProducer

from riverflow.schemas import now_ms
from riverflow.settings import kafka_kwargs
from tests.chaos.support import assert_alive, sample, set_topic_config, strict_page
from tests.hostile import HARMLESS_NAMES, Messages, corpus, duplicate_keys
from tests.integration.inference_support import (
    committed_total,
    event_ids,
    group,
    infer_args,
    read_all,
    reading,
)
from tests.integration.kit import Workers, wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

ROUNDS = 2
GOOD = 1000
# Room on the readings topic for the corpus's 2 MB reading, sent as it is (no compression).
READINGS_MAX_BYTES = 4 * 1024 * 1024


def test_every_hostile_reading_is_dead_lettered_and_every_good_one_predicted(
    stack: Any, workers: Workers
) -> None:
    s = stack(partitions=3, feature_drift_every=1)  # every reading's names reach the metrics
    set_topic_config(
        s.settings, s.settings.readings_topic, max_message_bytes=str(READINGS_MAX_BYTES)
    )
    now = now_ms()
    bad = {name: case for name, case in corpus(now).items() if case[0] == "reading"}
    sends: list[tuple[bytes, bytes | None]] = []
    expected: dict[bytes, tuple[str, str, bytes | None]] = {}  # key -> reason, stage, value
    good_ids: set[str] = set()
    for r in range(ROUNDS):
        for name, (_, hostile, reason, stage) in bad.items():
            key = f"bad-{r}-{name}".encode()
            expected[key] = (reason, stage, hostile)
            sends.append((key, hostile))
        for raw in (
            Messages(now).reading(event_id=f"names-{r}", features=HARMLESS_NAMES),
            duplicate_keys(now, f"duplicates-{r}"),
        ):
            good_ids.add(json.loads(raw)["event_id"])
            sends.append((b"harmless", raw))
    for i in range(GOOD):
        value = reading(i)
        good_ids.add(value["event_id"])
        sends.append((value["sensor_id"].encode(), json.dumps(value).encode()))
    random.Random(8).shuffle(sends)

    p = KafkaProducer(**kafka_kwargs(s.settings), max_request_size=READINGS_MAX_BYTES)
    futures = {key: p.send(s.settings.readings_topic, key=key, value=v) for key, v in sends}
    p.flush()
    p.close()
    sources = {
        key: f"{s.settings.readings_topic}/{m.partition}/{m.offset}".encode()
        for key, f in futures.items()
        if key in expected and (m := f.get(timeout=1))
    }

    g = group()
    worker = workers.spawn(s, *infer_args(g))
    worker.wait_for(lambda pg: bool(pg.select("riverflow_consumer_lag")))  # in the group
    wait_until(
        lambda: committed_total(s.settings, g) == len(sends),
        timeout=120,
        what="every reading committed",
    )
    assert_alive(worker)
    page = strict_page(worker)
    assert worker.stop() == 0

    predictions = read_all(s.settings, s.settings.predictions_topic)
    assert event_ids(predictions) == Counter(good_ids)  # each once
    echoed = {json.loads(r.value)["event_id"]: json.loads(r.value) for r in predictions}
    assert all(echoed[f"names-{r}"]["features"] == HARMLESS_NAMES for r in range(ROUNDS))
    assert all(echoed[f"duplicates-{r}"]["features"] == {"a": 2.0} for r in range(ROUNDS))

    letters = read_all(s.settings, s.settings.dead_letters_topic)
    assert sorted(r.key for r in letters) == sorted(expected)  # each once
    for letter in letters:
        reason, stage, original = expected[letter.key]
        h = dict(letter.headers)
        assert (h["riverflow-reason-code"], h["riverflow-stage"]) == (
            reason.encode(),
            stage.encode(),
        ), letter.key
        assert h["riverflow-error"] == b"InvalidEvent" and h["riverflow-reason"]
        assert h["riverflow-source"] == sources[letter.key]
        if "riverflow-truncated" in h:
            assert original is not None and original.startswith(letter.value)
            assert h["riverflow-original-sha256"] == hashlib.sha256(original).hexdigest().encode()
        else:
            assert letter.value == original, letter.key

    reasons = Counter(reason for reason, _, _ in expected.values())
    stages = Counter(stage for _, stage, _ in expected.values())
    for reason in ("not_json", "schema", "non_finite", "too_many_features", "oversize", "ts_skew"):
        assert sample(page, "riverflow_invalid_events", reason=reason) == reasons[reason], reason
    assert sample(page, "riverflow_invalid_events", reason="internal") == 0
    for stage in ("decode", "validate", "predict"):
        assert sample(page, "riverflow_dead_letters", stage=stage) == stages[stage], stage
    assert sample(page, "riverflow_predictions") == len(good_ids)
    print(
        f"\nflood: {len(good_ids)} good readings each predicted once, {len(expected)} hostile ones "
        f"each dead-lettered once: {dict(sorted(reasons.items()))}"
    )
    assert set(HARMLESS_NAMES) <= {
        labels["feature"] for labels, _ in page.select("riverflow_feature_drift_score")
    }
