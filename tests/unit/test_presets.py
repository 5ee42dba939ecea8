from __future__ import annotations

import pytest

from riverflow.errors import ConfigError
from riverflow.online_model.presets import PRESETS, resolve
from riverflow.online_model.tasks import predict, task_of

X = {"a": 0.5, "b": -1.0}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_predicts_and_learns(name: str) -> None:
    spec = resolve(name)
    model = spec.build()
    assert task_of(model) == spec.task
    for i in range(30):
        x = {"a": i / 30, "b": (i % 7) / 7}
        if spec.task == "anomaly":
            model.learn_one(x)
        elif spec.task == "classification":
            model.learn_one(x, i % 2 == 0)
        else:
            model.learn_one(x, 2.0 * i)
    prediction, scores = predict(model, spec.task, X)
    if spec.task == "classification":
        assert prediction in (True, False)
        assert scores is not None and abs(sum(scores.values()) - 1) < 1e-6
        assert set(scores) <= {"True", "False"}
    elif spec.task == "regression":
        assert isinstance(prediction, float) and scores is None
    else:
        assert scores == {"anomaly": prediction} and 0.0 <= prediction <= 1.0


def test_fresh_classifier_without_probabilities_falls_back_to_predict_one() -> None:
    prediction, scores = predict(resolve("hoeffding").build(), "classification", X)
    assert prediction is None and scores is None


def test_custom_factory() -> None:
    spec = resolve("river.linear_model:LinearRegression")
    assert spec.name == "LinearRegression" and spec.task == "regression"


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("nope", "unknown model"),
        ("no.such.module:f", "cannot load"),
        ("river.linear_model:Nope", "cannot load"),
        ("river.preprocessing:StandardScaler", "not a River"),
    ],
)
def test_bad_model_names_are_config_errors(name: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        resolve(name)
