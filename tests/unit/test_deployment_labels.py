"""Every sample a worker serves carries its model and deployment, added at scrape time."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from riverflow.metrics import DeploymentLabels, InferenceMetrics, deployment_labels
from riverflow.settings import load_settings


def test_every_sample_carries_model_and_deployment() -> None:
    metrics = InferenceMetrics()
    metrics.predictions.inc(3)
    metrics.invalid_events.labels("schema").inc()
    metrics.add_lag(lambda: [(["readings", "0"], 5.0)])
    exposed = CollectorRegistry()
    labels = {"model": "logreg", "deployment": "pumps"}
    exposed.register(DeploymentLabels(metrics.registry, labels))
    families = list(text_string_to_metric_families(generate_latest(exposed).decode()))
    samples = [s for f in families for s in f.samples]
    assert len(samples) > 50  # riverflow's own and the process collectors' samples
    assert all(s.labels["model"] == "logreg" and s.labels["deployment"] == "pumps" for s in samples)
    by_name = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in samples}
    assert (
        by_name[("riverflow_predictions_total", (("deployment", "pumps"), ("model", "logreg")))]
        == 3
    )
    lag = (
        "riverflow_consumer_lag",
        (("deployment", "pumps"), ("model", "logreg"), ("partition", "0"), ("topic", "readings")),
    )
    assert by_name[lag] == 5.0
    # The worker's own registry is left as it was.
    assert metrics.registry.get_sample_value("riverflow_predictions_total") == 3


def test_deployment_defaults_to_the_model_name() -> None:
    assert deployment_labels(load_settings(model="hoeffding")) == {
        "model": "hoeffding",
        "deployment": "hoeffding",
    }
    custom = load_settings(model="tests.learner_models:make_model", deployment="fans-2")
    assert deployment_labels(custom) == {"model": "make_model", "deployment": "fans-2"}
