"""The Grafana dashboards of deploy/grafana, and every PromQL query their panels run.

Tests evaluate these queries against a real Prometheus, so Grafana's own variables are
replaced by what Grafana would send: a concrete range for ``$__rate_interval`` and friends, and
each dashboard variable's current value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"

# Grafana's built-in range variables, all given the same concrete range.
RANGE_VARIABLES = ("__rate_interval", "__interval", "__range")
# $name, ${name} and ${name:format}.
VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str  # the dashboard's uid
    panel: str  # the panel's title
    expr: str  # PromQL with every variable replaced

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel}: {self.expr}"


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def load_dashboards() -> dict[Path, dict[str, Any]]:
    return {path: json.loads(path.read_text()) for path in dashboard_files()}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def variable_values(dashboard: dict[str, Any], rng: str) -> dict[str, str]:
    """What Grafana substitutes for each variable: current values, built-ins as ``rng``."""
    values = dict.fromkeys(RANGE_VARIABLES, rng)
    for var in dashboard.get("templating", {}).get("list", []):
        current = var.get("current", {}).get("value")
        chosen = current if isinstance(current, list) else [current]
        if "$__all" in chosen:
            values[var["name"]] = var.get("allValue") or ".*"
        else:
            values[var["name"]] = "|".join(str(v) for v in chosen)
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"unknown Grafana variable ${name} in {expr!r}")
        return values[name]

    return VARIABLE.sub(one, expr)


def panel_queries(rng: str = "1m", chosen: dict[str, str] | None = None) -> list[PanelQuery]:
    """Every ``targets[].expr`` of every panel of every dashboard, ready for Prometheus.

    ``rng`` replaces ``$__rate_interval``, ``$__interval`` and ``$__range``; it must hold at
    least two scrapes for ``rate()`` to return a value. ``chosen`` sets variables as a user
    would pick them (``{"model": "logreg", "deployment": "a"}``); the others keep their
    dashboard's current value.
    """
    queries = []
    for dashboard in load_dashboards().values():
        values = {**variable_values(dashboard, rng), **(chosen or {})}
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    queries.append(
                        PanelQuery(
                            dashboard["uid"], panel["title"], substitute(target["expr"], values)
                        )
                    )
    return queries


def wait_for_panels(
    query: Callable[[str], list[Any]],
    queries: list[PanelQuery],
    timeout: float,
    interval: float,
    whose: str = "",
) -> None:
    """Ask ``query`` (a PromQL expression -> its series) until every panel query has an answer:
    rate() needs two scrapes of a target, so the first answers come some seconds in."""
    from tests.integration.kit import wait_until  # here: the unit tests use the rest alone

    empty = list(queries)

    def answered() -> bool:
        empty[:] = [q for q in empty if not query(q.expr)]
        return not empty

    wait_until(
        answered,
        timeout,
        lambda: f"{whose}data in every panel:\n" + "\n".join(map(str, empty)),
        interval,
    )
