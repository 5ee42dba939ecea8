"""Drift monitors: one River detector per input feature, and one on the learner's error stream.

>>> m = FeatureDriftMonitor("adwin", max_features=2)
>>> for i in range(2000):
...     _ = m.update({"a": float(i >= 1000), "b": 0.0, "c": 1.0})
>>> sorted(m.scores)            # "c" is beyond the cap of two tracked features
['a', 'b']
>>> m.detections["a"] > 0, m.detections["b"]
(True, 0)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from river import drift

from riverflow.errors import ConfigError

DETECTORS: dict[str, Callable[[], Any]] = {
    "adwin": lambda: drift.ADWIN(),
    "page_hinkley": lambda: drift.PageHinkley(),
    "kswin": lambda: drift.KSWIN(seed=42),
}


def make_detector(name: str) -> Any:
    try:
        return DETECTORS[name]()
    except KeyError:
        raise ConfigError(
            f"unknown drift detector {name!r}: choose one of {', '.join(DETECTORS)}"
        ) from None


class _Stat:
    """A slow reference mean/variance and a fast recent mean, both exponentially weighted.

    Weights start at 1/n, so early values count like a plain average.
    """

    __slots__ = ("n", "mean", "var", "recent")

    # The reference forgets over ~1,000 readings, the recent mean over ~20: a shift shows at
    # once and fades as the reference absorbs the new regime.
    REFERENCE_ALPHA = 0.001
    RECENT_ALPHA = 0.05

    def __init__(self) -> None:
        self.n, self.mean, self.var, self.recent = 0, 0.0, 0.0, 0.0

    def update(self, x: float) -> None:
        self.n += 1
        a = max(1.0 / self.n, self.REFERENCE_ALPHA)
        diff = x - self.mean
        incr = a * diff
        self.mean += incr
        self.var = (1.0 - a) * (self.var + diff * incr)
        self.recent += max(1.0 / self.n, self.RECENT_ALPHA) * (x - self.recent)

    @property
    def score(self) -> float:
        """How many reference standard deviations the recent mean has moved."""
        if self.n < 2:
            return 0.0
        return abs(self.recent - self.mean) / (math.sqrt(self.var) + 1e-9)


class FeatureDriftMonitor:
    """One detector per feature, for at most ``max_features`` features (first seen first).

    ``update`` returns the features whose detector fired on this reading. ``scores`` holds each
    tracked feature's drift score: the shift of its recent mean (last ~20 readings) in standard
    deviations of its slowly forgetting reference (~1,000 readings).
    """

    def __init__(self, detector: str = "adwin", max_features: int = 64) -> None:
        make_detector(detector)  # fail fast on a bad name
        self.detector = detector
        self.max_features = max_features
        self._detectors: dict[str, Any] = {}
        self._stats: dict[str, _Stat] = {}
        self.detections: dict[str, int] = {}

    def update(self, x: dict[str, float]) -> list[str]:
        fired: list[str] = []
        detectors = self._detectors
        for name, value in x.items():
            det = detectors.get(name)
            if det is None:
                if len(detectors) >= self.max_features:
                    continue
                det = detectors[name] = make_detector(self.detector)
                self._stats[name] = _Stat()
                self.detections[name] = 0
            det.update(value)
            stat = self._stats[name]
            stat.update(value)
            if det.drift_detected:
                fired.append(name)
                self.detections[name] += 1
        return fired

    @property
    def scores(self) -> dict[str, float]:
        return {name: stat.score for name, stat in self._stats.items()}


class ConceptDriftMonitor:
    """A detector on the learner's error stream (0/1 for classification, |error| otherwise)."""

    def __init__(self, detector: str = "adwin") -> None:
        self.name = detector
        self._detector = make_detector(detector)
        self.detections = 0

    def update(self, error: float) -> bool:
        self._detector.update(error)
        if self._detector.drift_detected:
            self.detections += 1
            return True
        return False
