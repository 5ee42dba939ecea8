"""The README documents every setting, metric family and alert that the code defines."""

from __future__ import annotations

from pathlib import Path

import yaml

from riverflow.metrics import InferenceMetrics, LearnerMetrics
from riverflow.settings import OTHER_ENV, Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_every_setting_is_in_the_settings_table() -> None:
    missing = [n for n in Settings.model_fields if f"`RIVERFLOW_{n.upper()}`" not in README]
    assert missing == []
    assert [n for n in OTHER_ENV if f"`{n}`" not in README] == []


def test_every_metric_family_is_in_the_metrics_table() -> None:
    families = set()
    for metrics in (InferenceMetrics(), LearnerMetrics()):
        metrics.add_lag(lambda: [])
        families |= {
            (m.name, m.type) for m in metrics.registry.collect() if m.name.startswith("riverflow_")
        }
    missing = [
        name
        for name, kind in families
        if (f"{name}_total" if kind == "counter" else name) not in README
    ]
    assert missing == []


def test_every_alert_is_listed() -> None:
    groups = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())["groups"]
    alerts = [r["alert"] for g in groups for r in g["rules"] if "alert" in r]
    assert alerts and [a for a in alerts if f"`{a}`" not in README] == []
