"""Output drift and join memory metrics: what the served model answers, what the join holds."""

from __future__ import annotations

from types import SimpleNamespace

from riverflow.consumers.learner.join_store import Side
from riverflow.consumers.learner.state import MessageSizes
from riverflow.metrics import InferenceMetrics, OutputDistribution


def test_class_shares_are_counted_with_bounded_labels() -> None:
    metrics = InferenceMetrics()
    out = OutputDistribution(metrics, "classification")
    out.add([True, False, True])
    out.add([f"c{i}" for i in range(40)])
    registry = metrics.registry
    assert registry.get_sample_value("riverflow_predicted_class_total", {"class": "True"}) == 2
    assert registry.get_sample_value("riverflow_predicted_class_total", {"class": "False"}) == 1
    labels = {
        s.labels["class"]
        for f in registry.collect()
        if f.name == "riverflow_predicted_class"
        for s in f.samples
    }
    assert len(labels) == OutputDistribution.MAX_CLASSES + 1 and "other" in labels
    other = registry.get_sample_value("riverflow_predicted_class_total", {"class": "other"})
    assert other == 42 - OutputDistribution.MAX_CLASSES


def test_regression_values_go_to_the_histogram() -> None:
    metrics = InferenceMetrics(output_buckets=(0.0, 10.0, 100.0))
    OutputDistribution(metrics, "regression").add([5.0, 50.0, None, 500.0])
    r = metrics.registry
    assert r.get_sample_value("riverflow_prediction_value_count") == 3
    assert r.get_sample_value("riverflow_prediction_value_bucket", {"le": "10.0"}) == 1
    assert r.get_sample_value("riverflow_prediction_value_sum") == 555.0


def test_message_sizes_average_each_side() -> None:
    sizes = MessageSizes()
    sizes.add(Side.PREDICTION, SimpleNamespace(value=b"x" * 100))
    sizes.add(Side.PREDICTION, SimpleNamespace(value=b"x" * 300))
    sizes.add(Side.FEEDBACK, None)  # tests and replays may have no record
    assert sizes.mean(Side.PREDICTION) == 200
    assert sizes.mean(Side.FEEDBACK) == 0
