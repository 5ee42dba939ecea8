from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest
from river import datasets, evaluate, linear_model, metrics, preprocessing, utils

from riverflow.online_model.evaluation import Evaluator, error, evaluate_one, served_scores
from riverflow.online_model.presets import resolve


def values(ev: Evaluator) -> dict[tuple[str, str], float]:
    return {(m, w): v for m, w, v in ev.values()}


def river_pair(cls: Any, window: int) -> tuple[Any, Any]:
    return cls(), utils.Rolling(cls, window_size=window)


def check(ev: Evaluator, expected: dict[str, tuple[Any, Any]]) -> None:
    got = values(ev)
    assert set(got) == {(n, w) for n in expected for w in ("cumulative", "rolling")}
    for name, (cumulative, rolling) in expected.items():
        assert got[(name, "cumulative")] == pytest.approx(cumulative.get(), abs=1e-12)
        assert got[(name, "rolling")] == pytest.approx(rolling.get(), abs=1e-12)


def test_binary_classification_matches_river_metrics() -> None:
    rng = random.Random(1)
    ev = Evaluator("classification", window=50)
    expected = {
        "accuracy": river_pair(metrics.Accuracy, 50),
        "f1": river_pair(metrics.F1, 50),
        "log_loss": river_pair(metrics.LogLoss, 50),
    }
    macro = metrics.MacroF1()
    for _ in range(500):
        y = rng.random() < 0.4
        p = rng.random()
        proba = {True: p, False: 1 - p}
        ev.update(y, p > 0.5, proba)
        macro.update(y, p > 0.5)
        for name, pair in expected.items():
            for m in pair:
                m.update(y, proba if name == "log_loss" else p > 0.5)
    check(ev, expected)
    # boolean labels get the binary F1 of True, not the macro average
    assert values(ev)[("f1", "cumulative")] != pytest.approx(macro.get())


def test_binary_log_loss_is_rivers_to_the_bit_at_the_clamps() -> None:
    ev, cumulative = Evaluator("classification", window=3), metrics.LogLoss()
    rolling = utils.Rolling(metrics.LogLoss(), window_size=3)
    for y, p_true in [(True, 0.0), (False, 1.0), (True, 1e-300), (False, 0.5), (True, 1.0)]:
        proba = {True: p_true, False: 1 - p_true}
        ev.update(y, p_true > 0.5, proba)
        cumulative.update(y, proba)
        rolling.update(y, proba)
        assert values(ev)[("log_loss", "cumulative")] == cumulative.get()
        assert values(ev)[("log_loss", "rolling")] == rolling.get()


def test_multiclass_uses_macro_f1_and_cross_entropy() -> None:
    rng = random.Random(2)
    ev = Evaluator("classification", window=30)
    expected = {
        "accuracy": river_pair(metrics.Accuracy, 30),
        "f1": river_pair(metrics.MacroF1, 30),
        "log_loss": river_pair(metrics.CrossEntropy, 30),
    }
    for _ in range(300):
        y = rng.choice(["a", "b", "c"])
        raw = [rng.random() for _ in range(3)]
        proba = {c: r / sum(raw) for c, r in zip("abc", raw, strict=True)}
        y_pred = max(proba, key=proba.__getitem__)
        ev.update(y, y_pred, proba)
        for name, pair in expected.items():
            for m in pair:
                m.update(y, proba if name == "log_loss" else y_pred)
    check(ev, expected)


def test_regression_and_anomaly_match_river_metrics() -> None:
    rng = random.Random(3)
    reg = Evaluator("regression", window=20)
    reg_expected = {"mae": river_pair(metrics.MAE, 20), "rmse": river_pair(metrics.RMSE, 20)}
    anomaly = Evaluator("anomaly", window=20)
    auc = river_pair(metrics.ROCAUC, 20)
    for _ in range(200):
        y, y_pred = rng.gauss(0, 1), rng.gauss(0, 1)
        reg.update(y, y_pred)
        for pair in reg_expected.values():
            for m in pair:
                m.update(y, y_pred)
        label, score = rng.choice([0, 1, "", "yes"]), rng.random()
        anomaly.update(label, score)  # a truthy label means "anomaly"
        for m in auc:
            m.update(bool(label), score)
    check(reg, reg_expected)
    check(anomaly, {"roc_auc": auc})


def test_missing_predictions_update_nothing_like_river() -> None:
    ev = Evaluator("classification", window=10)
    assert list(ev.values()) == []
    ev.update(True, None, {})
    ev.update(True, True, None)  # a label but no probabilities: log_loss skipped
    got = values(ev)
    assert got[("accuracy", "cumulative")] == 1.0
    assert got[("log_loss", "cumulative")] == 0.0  # River's empty mean


def test_unknown_task_is_refused() -> None:
    with pytest.raises(ValueError):
        Evaluator("ranking", window=10)


def test_test_then_train_equals_progressive_val_score_on_json_floats() -> None:
    """What the learner does per joined pair, with features that went through JSON (ints
    became floats), gives River's progressive validation score exactly."""
    dataset = list(datasets.Phishing())
    reference = evaluate.progressive_val_score(
        dataset,
        preprocessing.StandardScaler() | linear_model.LogisticRegression(),
        metrics.Accuracy(),
    )
    assert any(isinstance(v, int) for x, _ in dataset for v in x.values())
    model, ev = resolve("logreg").build(), Evaluator("classification", window=1000)
    for x, y in dataset:
        wire = json.loads(json.dumps({k: float(v) for k, v in x.items()}))
        evaluate_one(model, "classification", wire, y, ev)
        model.learn_one(wire, y)
    assert values(ev)[("accuracy", "cumulative")] == pytest.approx(reference.get(), abs=1e-12)


def test_served_scores_get_their_class_types_back() -> None:
    assert served_scores("classification", True, {"True": 0.7, "False": 0.3}) == {
        True: 0.7,
        False: 0.3,
    }
    assert served_scores("classification", 2, {"1": 0.2, "2": 0.8}) == {"1": 0.2, 2: 0.8}
    assert served_scores("classification", "x", None) is None
    assert served_scores("regression", 1.0, {"a": 1.0}) is None
    ll = metrics.LogLoss()
    ll.update(False, served_scores("classification", False, {"True": 0.9, "False": 0.1}))
    assert ll.get() == pytest.approx(-math.log(0.1))


def test_error_streams_for_drift() -> None:
    assert error("classification", True, False) == 1.0
    assert error("classification", "a", "a") == 0.0
    assert error("regression", 3, 1.5) == 1.5
    assert error("anomaly", 1, 0.25) == 0.75
    assert error("classification", True, None) is None
