"""End to end: simulator with a drift point, two inference workers and the learner on the real
broker, scraped by a real Prometheus with the repo's config and alert rules. Every dashboard
panel's query must return data, and the concept drift alert must be true after the drift point.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from riverflow.local_prometheus import DEPLOY, LocalPrometheus
from tests.dashboards import panel_queries, wait_for_panels
from tests.integration.kit import free_ports

pytestmark = pytest.mark.integration

RATE = 200
DRIFT_AT = 4000  # 20 s in at RATE: the learner's model has settled by then
DURATION = 50


def alert_expr(name: str) -> str:
    groups = yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"]
    return next(r["expr"] for g in groups for r in g["rules"] if r.get("alert") == name)


def test_dashboards_show_data_from_real_workers_and_drift_alerts(
    stack: Any, prometheus: LocalPrometheus, tmp_path: Path
) -> None:
    s = stack(partitions=4)
    *infer_ports, learn_port = free_ports(3)
    prometheus.set_targets("inference", infer_ports)
    prometheus.set_targets("learner", [learn_port])
    procs = [
        s.start(
            "learn",
            "--model",
            "logreg",
            "--metrics-port",
            str(learn_port),
            log_path=str(tmp_path / "learn.log"),
        ),
        *[
            s.start(
                "infer",
                "--model",
                "logreg",
                "--metrics-port",
                str(port),
                log_path=str(tmp_path / f"infer-{port}.log"),
            )
            for port in infer_ports
        ],
    ]
    try:
        # Bad input, so the dead-letter panels have something to show.
        from kafka import KafkaProducer

        from riverflow.settings import kafka_kwargs

        producer = KafkaProducer(**kafka_kwargs(s.settings))
        for raw in (
            b"not json",
            b'{"event_id": "x"}',
            b'{"event_id":"n","sensor_id":"s","ts":1,"features":{"a":NaN}}',
        ):
            producer.send(s.settings.readings_topic, raw)
        producer.flush()
        producer.close()

        started = time.time()
        s.run(
            "simulate",
            "--rate",
            str(RATE),
            "--duration",
            str(DURATION),
            "--drift-at",
            str(DRIFT_AT),
            "--label-delay",
            "1",
            "--seed",
            "7",
            timeout=DURATION + 60,
        )
        drift_time = started + DRIFT_AT / RATE

        wait_for_panels(prometheus.query, panel_queries("1m"), 60, 2)
        assert len(prometheus.query('up{job="inference"} == 1')) == 2
        assert len(prometheus.query('up{job="learner"} == 1')) == 1
        for port in [*infer_ports, learn_port]:  # every worker's page passes Prometheus' lint
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
                text = page.read()
            assert b"process_cpu_seconds_total" in text and b"_created" not in text
            lint = subprocess.run(
                [shutil.which("promtool") or "promtool", "check", "metrics"],
                input=text,
                capture_output=True,
                timeout=60,
            )
            assert lint.returncode == 0, (lint.stdout + lint.stderr).decode()

        drift = alert_expr("RiverflowConceptDrift")
        assert prometheus.query(drift), "concept drift alert expression is false after the drift"
        detections_before = prometheus.query(
            "sum(riverflow_concept_drift_detections_total)", at=drift_time - 2
        )
        detections_now = prometheus.query("sum(riverflow_concept_drift_detections_total)")
        before = float(detections_before[0]["value"][1]) if detections_before else 0.0
        assert float(detections_now[0]["value"][1]) > before
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            assert proc.wait(timeout=60) == 0, json.dumps(
                {p.name: p.read_text()[-2000:] for p in tmp_path.glob("*.log")}, indent=1
            )
