from __future__ import annotations

import random

import pytest

from riverflow.errors import ConfigError
from riverflow.online_model.drift import ConceptDriftMonitor, FeatureDriftMonitor, make_detector


@pytest.mark.parametrize("detector", ["adwin", "page_hinkley", "kswin"])
def test_feature_shift_is_detected_only_after_it_happens(detector: str) -> None:
    rng = random.Random(1)
    monitor = FeatureDriftMonitor(detector, max_features=8)
    before = sum(
        len(monitor.update({"t": rng.gauss(0, 1), "s": rng.gauss(0, 1)})) for _ in range(3000)
    )
    score_before = monitor.scores["t"]
    fired_t = 0
    for _ in range(3000):
        fired_t += "t" in monitor.update({"t": rng.gauss(4, 1), "s": rng.gauss(0, 1)})
    assert fired_t >= 1
    assert monitor.detections["t"] >= 1
    assert score_before < 1.0
    if detector == "adwin":  # the default is quiet on a stationary stretch
        assert before == 0


def test_score_rises_with_a_shift() -> None:
    rng = random.Random(2)
    m = FeatureDriftMonitor("adwin", max_features=1)
    for _ in range(500):
        m.update({"t": rng.gauss(0, 1)})
    calm = m.scores["t"]
    for _ in range(50):
        m.update({"t": rng.gauss(3, 1)})
    assert m.scores["t"] > calm + 1.5


def test_tracked_features_are_capped() -> None:
    m = FeatureDriftMonitor("adwin", max_features=3)
    m.update({f"f{i}": 1.0 for i in range(10)})
    m.update({"late": 1.0})
    assert len(m.scores) == 3 and "late" not in m.scores


def test_concept_drift_monitor_counts_detections() -> None:
    rng = random.Random(3)
    m = ConceptDriftMonitor("adwin")
    early = sum(m.update(float(rng.random() < 0.1)) for _ in range(2000))
    late = sum(m.update(float(rng.random() < 0.6)) for _ in range(2000))
    assert early == 0 and late >= 1 and m.detections == late


def test_unknown_detector() -> None:
    with pytest.raises(ConfigError, match="adwin"):
        make_detector("magic")
