"""Model presets by name, and custom River estimators through ``module:factory``.

>>> spec = resolve("logreg")
>>> spec.task
'classification'
>>> type(spec.build()).__name__
'Pipeline'
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from river import anomaly, compose, forest, linear_model, naive_bayes, preprocessing, tree

from riverflow.errors import ConfigError
from riverflow.online_model.tasks import Task, task_of


@dataclass(frozen=True)
class ModelSpec:
    """A named way to build a fresh estimator, and the task it solves."""

    name: str
    task: Task
    factory: Callable[[], Any]
    doc: str = ""

    def build(self) -> Any:
        return self.factory()

    def with_categories(self, names: Sequence[str]) -> ModelSpec:
        """The same model behind a one-hot encoding of the categorical features ``names``
        (strings): ``status="running"`` becomes ``status_running=1``, so every preset (and any
        River estimator) takes them; numbers pass through unchanged. River classes only, so
        snapshots stay within the unpickler's allow-list.

        >>> spec = resolve("logreg").with_categories(["status"])
        >>> model = spec.build()
        >>> model.learn_one({"t": 1.0, "status": "running"}, True)
        >>> sorted(model.predict_proba_one({"t": 1.0, "status": "stopped"}))
        [False, True]
        """
        if not names:
            return self
        chosen = tuple(names)
        factory = self.factory

        def build() -> Any:
            encode = compose.SelectType(str) | preprocessing.OneHotEncoder()
            return compose.TransformerUnion(encode, compose.Discard(*chosen)) | factory()

        return ModelSpec(self.name, self.task, build, f"{self.doc}, one-hot {', '.join(chosen)}")


PRESETS: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec(
            "logreg",
            "classification",
            lambda: preprocessing.StandardScaler() | linear_model.LogisticRegression(),
            "standard scaler + logistic regression (binary)",
        ),
        ModelSpec(
            "hoeffding",
            "classification",
            lambda: tree.HoeffdingTreeClassifier(),
            "Hoeffding tree (binary and multiclass)",
        ),
        ModelSpec(
            "arf",
            "classification",
            lambda: forest.ARFClassifier(n_models=10, seed=42),
            "adaptive random forest, 10 trees",
        ),
        ModelSpec("nb", "classification", lambda: naive_bayes.GaussianNB(), "Gaussian naive Bayes"),
        ModelSpec(
            "linreg",
            "regression",
            lambda: preprocessing.StandardScaler() | linear_model.LinearRegression(),
            "standard scaler + linear regression",
        ),
        ModelSpec(
            "htr", "regression", lambda: tree.HoeffdingTreeRegressor(), "Hoeffding tree regressor"
        ),
        ModelSpec(
            "hst",
            "anomaly",
            lambda: preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=42),
            "min-max scaler + half-space trees (anomaly score)",
        ),
    )
}


def resolve(name: str) -> ModelSpec:
    """A preset by name, or ``package.module:factory`` returning a River estimator."""
    if name in PRESETS:
        return PRESETS[name]
    if ":" not in name:
        raise ConfigError(
            f"unknown model {name!r}: use a preset ({', '.join(PRESETS)}) or module:factory"
        )
    module_name, attr = name.split(":", 1)
    # The `riverflow` script, unlike `python -m`, does not put the working directory on the
    # path: a mymodels.py beside the user is found all the same (after installed modules).
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load model factory {name!r}: {exc}") from None
    if not callable(factory):
        raise ConfigError(f"{name!r} is not callable")
    return ModelSpec(attr, task_of(factory()), factory, f"custom factory {name}")
