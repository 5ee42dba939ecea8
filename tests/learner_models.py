"""Model factories for learner tests (``--model tests.learner_models:counting``).

:class:`CountingClassifier` remembers the ``n`` feature of every example it learned from, in
order; it travels inside snapshots, so a test can check that each labelled event was learned
exactly once across crashes and takeovers.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from river import base


class CountingClassifier(base.Classifier):
    def __init__(self) -> None:
        self.seen: list[int] = []

    def learn_one(self, x: dict[Hashable, Any], y: Any, **kwargs: Any) -> None:
        self.seen.append(int(x["n"]))

    def predict_proba_one(self, x: dict[Hashable, Any], **kwargs: Any) -> dict[Any, float]:
        return {True: 0.5, False: 0.5}


def counting() -> CountingClassifier:
    return CountingClassifier()
