from __future__ import annotations

import statistics
import subprocess
import sys
from itertools import islice
from typing import Any

import pytest
from river import metrics, tree

from riverflow.errors import ConfigError
from riverflow.producers.events import Outgoing, run_prefix
from riverflow.producers.fleet import CONCEPTS, fleet, sensor_names
from riverflow.producers.simulate import pick_concept
from riverflow.schemas import Decoder, feedback_value, reading_value


def take(n: int, concept: str = "sine", **kw: object) -> list[Outgoing]:
    options: dict[str, object] = {"sensors": 20, "seed": 1, "id_prefix": "p", **kw}
    return list(islice(fleet(CONCEPTS[concept], **options), n))  # type: ignore[arg-type]


def content(events: list[Outgoing]) -> list[tuple[object, ...]]:
    """Everything but the id prefix."""
    return [
        (e.event_id.split("-")[-1], e.sensor_id, e.features, e.label, e.label_delay) for e in events
    ]


@pytest.mark.parametrize("concept", sorted(CONCEPTS))
def test_same_seed_same_stream_other_seed_other_stream(concept: str) -> None:
    a = take(300, concept, seed=42, id_prefix="run-a", label_fraction=0.5, label_jitter=0.3)
    b = take(300, concept, seed=42, id_prefix="run-b", label_fraction=0.5, label_jitter=0.3)
    c = take(300, concept, seed=43, id_prefix="run-a", label_fraction=0.5, label_jitter=0.3)
    assert content(a) == content(b)
    assert {e.event_id for e in a}.isdisjoint(e.event_id for e in b)
    assert [e.features for e in a] != [e.features for e in c]
    assert [e.sensor_id for e in a] != [e.sensor_id for e in c]


def test_run_prefixes_differ_so_ids_never_collide_across_runs() -> None:
    assert len({run_prefix() for _ in range(100)}) == 100


def test_events_fit_the_reading_and_feedback_contracts() -> None:
    decoder = Decoder(max_features=256, max_message_bytes=65_536, max_ts_skew_s=60)
    for name in CONCEPTS:
        for e in take(50, name):
            assert e.label is not None
            reading = reading_value(e.event_id, e.sensor_id, 1, e.features)
            label = feedback_value(e.event_id, e.sensor_id, 1, e.label)
            assert decoder.reading(reading, now_ms=1).features == e.features
            assert decoder.feedback(label, now_ms=1).label == e.label
            assert all(isinstance(k, str) for k in e.features)
            assert (
                type(e.label)
                in {"sine": (int,), "agrawal": (int,), "sea": (bool,), "friedman": (float,)}[name]
            )


def test_sensors_come_from_the_fleet_and_all_report() -> None:
    events = take(2000, sensors=12)
    assert {e.sensor_id for e in events} == set(sensor_names(12))
    assert sensor_names(12)[:2] == ["sensor-00", "sensor-01"]


def disagreement(concept: str, drift_at: int, n: int) -> tuple[list[Outgoing], list[Outgoing]]:
    plain = take(n, concept, seed=5)
    drifted = take(n, concept, seed=5, drift_at=drift_at)
    return plain, drifted


# Minimum share of post-drift labels that differ from the pre-drift concept on the same features.
MIN_CHANGED = {"sine": 0.6, "agrawal": 0.6, "sea": 0.08, "friedman": 0.5}


@pytest.mark.parametrize("concept", sorted(CONCEPTS))
def test_drift_changes_only_the_labels_and_only_from_n_on(concept: str) -> None:
    plain, drifted = disagreement(concept, drift_at=500, n=3000)
    assert [e.features for e in plain] == [e.features for e in drifted]
    assert [e.label for e in plain[:500]] == [e.label for e in drifted[:500]]

    def changed(a: Outgoing, b: Outgoing) -> bool:
        if isinstance(a.label, float):  # regression: same noise draw, so any gap is the concept
            return abs(a.label - float(b.label or 0)) > 1.0
        return a.label != b.label

    after = [changed(a, b) for a, b in zip(plain[500:], drifted[500:], strict=True)]
    assert sum(after) / len(after) >= MIN_CHANGED[concept]


def test_a_model_trained_before_the_drift_gets_worse_after_it() -> None:
    events = take(6000, seed=3, drift_at=4000)
    model: Any = tree.HoeffdingTreeClassifier(grace_period=50)
    for e in events[:3000]:
        model.learn_one(e.features, e.label)
    before, after = metrics.Accuracy(), metrics.Accuracy()
    for e in events[3000:4000]:
        before.update(e.label, model.predict_one(e.features))
    for e in events[4000:5000]:
        after.update(e.label, model.predict_one(e.features))
    assert before.get() > 0.85
    assert after.get() < before.get() - 0.4


def test_label_fraction_selects_that_share_and_keeps_the_readings() -> None:
    all_labels = take(5000, label_fraction=1.0)
    some = take(5000, label_fraction=0.3)
    none = take(5000, label_fraction=0.0)
    assert all(e.label is not None for e in all_labels)
    assert all(e.label is None for e in none)
    share = sum(e.label is not None for e in some) / 5000
    assert 0.27 < share < 0.33
    assert [(e.sensor_id, e.features) for e in some] == [
        (e.sensor_id, e.features) for e in all_labels
    ]
    kept = [
        (a.label, b.label) for a, b in zip(some, all_labels, strict=True) if a.label is not None
    ]
    assert all(x == y for x, y in kept)


def test_label_delay_jitter_stays_in_its_band() -> None:
    delays = [e.label_delay for e in take(2000, label_delay=2.0, label_jitter=0.25)]
    assert min(delays) >= 1.5 and max(delays) <= 2.5
    assert statistics.pstdev(delays) > 0.2  # spread over the band, not stuck at 2.0
    assert abs(statistics.mean(delays) - 2.0) < 0.05
    assert {e.label_delay for e in take(100, label_delay=2.0, label_jitter=0.0)} == {2.0}


def test_concept_and_task_must_agree() -> None:
    assert pick_concept(None, None).name == "sine"
    assert pick_concept("regression", None).name == "friedman"
    assert pick_concept(None, "sea").task == "classification"
    with pytest.raises(ConfigError, match="regression concept"):
        pick_concept("classification", "friedman")


@pytest.mark.parametrize(
    "args",
    [
        ["--label-fraction", "1.5"],
        ["--label-jitter", "-0.1"],
        ["--rate", "-1"],
        ["--sensors", "0"],
        ["--count", "ten"],
        ["--concept", "friedman", "--task", "classification"],
    ],
)
def test_bad_simulate_options_exit_2_before_touching_kafka(args: list[str]) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "riverflow",
            "simulate",
            "--bootstrap-servers",
            "127.0.0.1:1",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "error" in result.stderr and "Traceback" not in result.stderr
