"""Two deployments side by side on one broker, scraped by one real Prometheus: every dashboard
panel's query returns data for each deployment chosen in the dashboard variables, and what it
returns belongs to that deployment alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from riverflow.local_prometheus import LocalPrometheus
from tests.dashboards import panel_queries, wait_for_panels
from tests.integration.kit import Stack, free_ports

pytestmark = pytest.mark.integration

# deployment -> model: different models, topics and consumer groups.
DEPLOYMENTS = {"pumps": "logreg", "fans": "hoeffding"}
RATE = 150
DURATION = 25


def test_two_deployments_fill_every_panel_and_never_mix(
    stack: Any, prometheus: LocalPrometheus, tmp_path: Path
) -> None:
    stacks: dict[str, Stack] = {d: stack(partitions=2) for d in DEPLOYMENTS}
    ports: dict[str, dict[str, int]] = {}
    procs = []
    for deployment, model in DEPLOYMENTS.items():
        infer_port, learn_port = free_ports(2)
        ports[deployment] = {"inference": infer_port, "learner": learn_port}
        s = stacks[deployment]
        env = {"RIVERFLOW_DEPLOYMENT": deployment}
        for command, port in (("learn", learn_port), ("infer", infer_port)):
            log = str(tmp_path / f"{deployment}-{command}.log")
            args = (command, "--model", model, "--metrics-port", str(port))
            procs.append(s.start(*args, extra_env=env, log_path=log))
    for job in ("inference", "learner"):
        prometheus.set_targets(job, [p[job] for p in ports.values()])
    try:
        for s in stacks.values():
            s.run(
                "simulate",
                "--rate",
                str(RATE),
                "--duration",
                str(DURATION),
                "--label-delay",
                "1",
                "--seed",
                "3",
                timeout=DURATION + 60,
            )
        for deployment, model in DEPLOYMENTS.items():
            instances = {f"127.0.0.1:{port}" for port in ports[deployment].values()}
            chosen = {
                "model": model,
                "deployment": deployment,
                "instance": "|".join(sorted(instances)),
            }
            queries = panel_queries("1m", chosen)
            wait_for_panels(prometheus.query, queries, 90, 2, f"{deployment}: ")
            for q in queries:
                for series in prometheus.query(q.expr):
                    labels = series["metric"]
                    if "deployment" in labels or "model" in labels:
                        assert labels.get("deployment") == deployment, (str(q), labels)
                        assert labels.get("model") == model, (str(q), labels)
                    else:  # Prometheus' own `up` carries no model: its instance says whose
                        assert labels.get("instance") in instances, (str(q), labels)
        # Each deployment's workers report under their own labels only.
        for deployment, model in DEPLOYMENTS.items():
            versions = prometheus.query(f'riverflow_model_version{{deployment="{deployment}"}}')
            assert {v["metric"]["model"] for v in versions} == {model}
            assert {v["metric"]["job"] for v in versions} == {"inference", "learner"}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            assert proc.wait(timeout=60) == 0, json.dumps(
                {p.name: p.read_text()[-2000:] for p in tmp_path.glob("*.log")}, indent=1
            )
