"""The Prometheus configs, alert rules and dashboard queries, checked by Prometheus itself.

promtool validates both configs and runs the alert unit tests; a real Prometheus, started with
the local config the way `riverflow up --prometheus` runs it, scrapes the metric families of
riverflow/metrics.py and answers every dashboard query. A missing promtool or prometheus binary
fails these tests (`apt-get install prometheus` provides both).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, start_http_server

from riverflow.errors import RiverflowError
from riverflow.local_prometheus import LocalPrometheus
from riverflow.metrics import InferenceMetrics, LearnerMetrics
from tests.dashboards import panel_queries, wait_for_panels
from tests.integration.kit import free_port, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
SEVERITIES = {"critical", "warning", "info"}


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        package = "prometheus-alertmanager" if name == "amtool" else "prometheus"
        pytest.fail(f"{name} is not installed: `apt-get install {package}` provides it")
    return path


def promtool(*args: str | Path, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


# --------------------------------------------------------------------------- promtool


def test_compose_config_is_valid() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_local_config_is_valid_with_its_target_files(tmp_path: Path) -> None:
    local = LocalPrometheus(tmp_path)
    config = local.prepare()
    local.set_targets("inference", [8000, 8002])
    local.set_targets("learner", [8001])
    result = promtool("check", "config", config, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr


def test_alert_rules_are_valid() -> None:
    result = promtool("check", "rules", ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_and_silent() -> None:
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    for rule in alert_rules():
        name = rule["alert"]
        outcomes = {bool(c.get("exp_alerts")) for c in cases if c["alertname"] == name}
        assert outcomes == {True, False}, f"{name} needs a firing and a silent case"


def test_every_alert_has_a_severity_and_explains_itself() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_every_alert_links_its_runbook_section() -> None:
    runbook = (ROOT / "docs" / "RUNBOOK.md").read_text()
    sections = {line[3:].strip().lower() for line in runbook.splitlines() if line.startswith("## ")}
    for rule in alert_rules():
        url = rule["annotations"].get("runbook_url", "")
        assert url == f"docs/RUNBOOK.md#{rule['alert'].lower()}", rule["alert"]
        assert rule["alert"].lower() in sections, f"docs/RUNBOOK.md has no section {rule['alert']}"


def version_of(tool: str) -> str:
    """``major.minor.patch`` that ``tool --version`` prints (promtool, amtool)."""
    out = subprocess.run([binary(tool), "--version"], capture_output=True, text=True, timeout=60)
    return (out.stdout + out.stderr).split("version ", 1)[1].split("+")[0].split()[0]


def test_compose_runs_the_versions_whose_tools_check_the_configs() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert compose["prometheus"]["image"] == f"prom/prometheus:v{version_of('promtool')}"
    assert compose["alertmanager"]["image"] == f"prom/alertmanager:v{version_of('amtool')}"


def test_alertmanager_config_is_valid_and_prometheus_sends_to_it() -> None:
    config = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
    result = subprocess.run(
        [binary("amtool"), "check-config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    prometheus = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    targets = prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["alertmanager:9093"]


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    # promtool has no query checker; recording rules make it parse every expression.
    rules = [
        {"record": f"riverflow_dashboard:query_{i}", "expr": q.expr}
        for i, q in enumerate(panel_queries("1m"))
    ]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = promtool("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- a real Prometheus


def exercise_inference(metrics: InferenceMetrics) -> None:
    """One sample in every inference family (and every label the dashboards group by)."""
    metrics.predictions.inc(10)
    metrics.invalid_events.labels(reason="schema").inc()
    metrics.dead_letters.labels(stage="validate").inc()
    metrics.predict_latency.observe(3e-5)
    metrics.end_to_end_latency.observe(0.02)
    metrics.batch_latency.observe(0.004)
    metrics.model_version.set(3)
    metrics.predicted_class.labels("True").inc(7)
    metrics.prediction_value.observe(0.3)
    metrics.model_swaps.inc()
    metrics.snapshot_rejected.labels(reason="unsigned").inc()
    metrics.feature_drift_detections.labels(feature="temperature").inc()
    metrics.feature_drift_score.labels(feature="temperature").set(0.4)
    metrics.add_lag(lambda: [(["sensor-readings", "0"], 5.0)])
    metrics.add_model_age(lambda: 12.0)


def exercise_learner(metrics: LearnerMetrics) -> None:
    for outcome in ("joined", "expired", "duplicate", "invalid"):
        metrics.feedback.labels(outcome=outcome).inc()
    metrics.feedback_delay.observe(2.0)
    metrics.pending_predictions.set(40)
    metrics.pending_feedback.set(2)
    metrics.pending_bytes.set(4200)
    metrics.learner_active.set(1)
    metrics.learned.inc(8)
    metrics.unlabelled_predictions.labels(reason="evicted").inc()
    metrics.learn_latency.observe(5e-5)
    for source in ("served", "learner"):
        for window in ("rolling", "cumulative"):
            metrics.model_metric.labels(source=source, metric="accuracy", window=window).set(0.9)
    metrics.concept_drift_detections.labels(detector="adwin").inc()
    metrics.model_version.set(4)
    metrics.snapshots_published.inc()
    metrics.snapshot_bytes.set(2048)
    metrics.snapshot_latency.observe(0.01)
    metrics.add_lag(lambda: [(["predictions", "0"], 1.0), (["sensor-feedback", "0"], 0.0)])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


@pytest.fixture
def workers() -> Iterator[dict[str, list[int]]]:
    """Two inference replicas and a learner serving riverflow's metric families."""
    registries: dict[str, list[CollectorRegistry]] = {"inference": [], "learner": []}
    for _ in range(2):
        inference = InferenceMetrics()
        exercise_inference(inference)
        registries["inference"].append(inference.registry)
    learner = LearnerMetrics()
    exercise_learner(learner)
    registries["learner"].append(learner.registry)
    servers = []
    targets: dict[str, list[int]] = {}
    for job, job_registries in registries.items():
        for registry in job_registries:
            server, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
            servers.append(server)
            targets.setdefault(job, []).append(server.server_port)
    try:
        yield targets
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def prometheus(tmp_path: Path, workers: dict[str, list[int]]) -> Iterator[str]:
    """A Prometheus started with the local config, as `riverflow up` runs it; yields its URL."""
    binary("prometheus")
    local = LocalPrometheus(tmp_path, free_port())
    for job, ports in workers.items():
        local.set_targets(job, ports)
    try:
        url = local.start()
    except RiverflowError as exc:
        pytest.fail(f"Prometheus did not start: {exc}")
    try:
        yield url
    finally:
        local.stop()


def query(url: str, expr: str) -> list[Any]:
    answer = get_json(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert answer["status"] == "success", (expr, answer)
    result: list[Any] = answer["data"]["result"]
    return result


def test_every_dashboard_query_answers_from_worker_metrics(prometheus: str) -> None:
    wait_for_panels(lambda expr: query(prometheus, expr), panel_queries("1m"), 60, 1)
    jobs = {r["metric"]["job"] for r in query(prometheus, "up == 1")}
    assert jobs == {"inference", "learner"}
    assert len(query(prometheus, 'up{job="inference"} == 1')) == 2


def test_alert_rules_evaluate_on_worker_metrics(prometheus: str) -> None:

    def evaluated() -> list[dict[str, Any]] | None:
        groups = get_json(f"{prometheus}/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        # A rule not evaluated yet reports the zero time, 0001-01-01T00:00:00Z.
        if rules and not any(r["lastEvaluation"].startswith("0001") for r in rules):
            return rules
        return None

    rules = wait_until(evaluated, 60, "the alert rules to be evaluated", 1)
    assert {r["name"] for r in rules} == {r["alert"] for r in alert_rules()}
    failing = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert failing == {}
