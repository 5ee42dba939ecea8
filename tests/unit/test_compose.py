"""Static checks of docker-compose.yml and what it mounts: no Docker engine needed.

The Compose Specification's JSON schema comes from the npm package dclint (a maintained Compose
linter that ships the current schema): `npm install --global dclint@3.1.0`, or point
RIVERFLOW_COMPOSE_SCHEMA at a copy of the schema.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import yaml

from riverflow.cli import build_parser
from riverflow.kafka_jars import kafka_version
from riverflow.metrics import InferenceMetrics, LearnerMetrics
from riverflow.options import settings_from
from riverflow.settings import Settings, load_settings
from tests.dashboards import load_dashboards, panel_queries, panels

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
SCHEMA_PACKAGE = "dclint"
SCHEMA_IN_PACKAGE = Path("schemas") / "compose.schema.json"
SCHEMA_INSTALL = "npm install --global dclint@3.1.0"
# The scrape job of each worker command: alerts and dashboards select on these job names.
WORKER_JOBS = {"infer": "inference", "learn": "learner"}
# Environment variables the CLI reads that are not Settings fields.
CLI_VARIABLES = {"RIVERFLOW_LOG_LEVEL"}
DEFAULT = re.compile(r"\$\{(\w+):?-([^}]*)\}")  # ${VAR:-default} -> default
REQUIRED = re.compile(r"\$\{(\w+):?\?([^}]*)\}")  # ${VAR:?message}: compose stops without VAR
# What a user puts in .env for a required variable, in these checks.
USER_VALUE = "0123456789abcdef" * 4


def _npm_global_root() -> Path | None:
    npm = shutil.which("npm")
    if npm is None:
        return None
    out = subprocess.run([npm, "root", "--global"], capture_output=True, text=True, timeout=60)
    return Path(out.stdout.strip()) if out.returncode == 0 else None


@pytest.fixture(scope="module")
def compose_schema() -> dict[str, Any]:
    candidates = []
    if os.environ.get("RIVERFLOW_COMPOSE_SCHEMA"):
        candidates.append(Path(os.environ["RIVERFLOW_COMPOSE_SCHEMA"]))
    candidates.append(ROOT / "node_modules" / SCHEMA_PACKAGE / SCHEMA_IN_PACKAGE)
    npm_root = _npm_global_root()
    if npm_root is not None:
        candidates.append(npm_root / SCHEMA_PACKAGE / SCHEMA_IN_PACKAGE)
    for path in candidates:
        if path.is_file():
            schema: dict[str, Any] = json.loads(path.read_text())
            return schema
    pytest.fail(
        "the Compose Specification JSON schema is missing (looked in "
        + ", ".join(str(p) for p in candidates)
        + f"): install it with `{SCHEMA_INSTALL}` or set RIVERFLOW_COMPOSE_SCHEMA to its path"
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else [str(c) for c in command]


def option(command: list[str], flag: str) -> str | None:
    """The value of ``--flag V`` or ``--flag=V`` in an argv list."""
    for i, arg in enumerate(command):
        if arg == flag and i + 1 < len(command):
            return command[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def riverflow_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services that run the riverflow image (built from this repo)."""
    return {n: s for n, s in services(compose).items() if "build" in s}


def metrics_ports(compose: dict[str, Any]) -> dict[str, int]:
    """service -> the --metrics-port its command serves on."""
    ports = {}
    for name, service in riverflow_services(compose).items():
        port = option(command_of(service), "--metrics-port")
        if port is not None:
            ports[name] = int(port)
    return ports


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, PurePosixPath]]:
    """(host path, container path) of every bind mount; named volumes are left out."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
            if not source.startswith((".", "/", "~")):
                continue  # a named volume
        elif volume.get("type") == "bind":
            source, target = volume["source"], volume["target"]
        else:
            continue
        mounts.append(((COMPOSE_FILE.parent / source).resolve(), PurePosixPath(target)))
    return mounts


def host_path(service: dict[str, Any], container_path: str) -> Path | None:
    """The file of the repo that ``container_path`` shows inside the service, if any."""
    path = PurePosixPath(container_path)
    best: tuple[Path, PurePosixPath] | None = None
    for source, target in bind_mounts(service):
        inside = path == target or target in path.parents
        if inside and (best is None or len(target.parts) > len(best[1].parts)):
            best = (source, target)
    if best is None:
        return None
    return best[0].joinpath(*path.relative_to(best[1]).parts)


def env_file_paths(service: dict[str, Any]) -> list[Path]:
    entries = service.get("env_file", [])
    entries = [entries] if isinstance(entries, str | dict) else entries
    return [ROOT / (e["path"] if isinstance(e, dict) else e) for e in entries]


def service_env(service: dict[str, Any]) -> dict[str, str]:
    """What the container's environment would hold: env files, then `environment`, with
    ${VAR:-default} taken at its default and ${VAR:?message} as a user would set it."""
    env: dict[str, str] = {}
    for path in env_file_paths(service):
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                key, _, value = line.partition("=")
                env[key.strip()] = value.strip()
    given = service.get("environment", {})
    if isinstance(given, list):
        given = dict(item.split("=", 1) for item in given)
    for key, value in given.items():
        value = DEFAULT.sub(lambda m: m.group(2), "" if value is None else str(value))
        env[key] = REQUIRED.sub(USER_VALUE, value)
    return env


def service_env_files(service: dict[str, Any]) -> str:
    """The text of the env files a service reads (secrets must not be kept there)."""
    return "".join(
        line
        for path in env_file_paths(service)
        for line in path.read_text().splitlines(True)
        if not line.lstrip().startswith("#")
    )


# --------------------------------------------------------------------------- the file itself


def test_compose_file_follows_the_compose_specification(
    compose: dict[str, Any], compose_schema: dict[str, Any]
) -> None:
    # The spec's schema is draft-07 (its $schema URL lacks the '#' jsonschema looks up).
    assert "draft-07" in compose_schema["$schema"]
    validator = jsonschema.Draft7Validator(compose_schema)
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(compose)
    ]
    assert errors == []
    # The schema is strict enough to matter: a misspelt key is refused.
    broken = copy.deepcopy(compose)
    broken["services"]["kafka"]["helthcheck"] = broken["services"]["kafka"].pop("healthcheck")
    assert not validator.is_valid(broken)


def test_every_file_it_mounts_or_builds_from_exists(compose: dict[str, Any]) -> None:
    missing = []
    for name, service in services(compose).items():
        for source, _ in bind_mounts(service):
            if not source.exists():
                missing.append(f"{name}: volume {source}")
        missing += [f"{name}: env_file {p}" for p in env_file_paths(service) if not p.is_file()]
        build = service.get("build")
        if build is not None:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = context / (
                "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            )
            if not dockerfile.is_file():
                missing.append(f"{name}: build {dockerfile}")
    assert missing == []


def test_depends_on_names_services_that_can_meet_the_condition(compose: dict[str, Any]) -> None:
    all_services = services(compose)
    problems = []
    for name, service in all_services.items():
        depends = service.get("depends_on", {})
        if isinstance(depends, list):
            depends = {d: {"condition": "service_started"} for d in depends}
        for other, spec in depends.items():
            condition = spec.get("condition", "service_started")
            if other not in all_services:
                problems.append(f"{name} depends on unknown service {other}")
            elif condition == "service_healthy" and "healthcheck" not in all_services[other]:
                problems.append(f"{name} waits for {other} to be healthy; it has no healthcheck")
            elif condition == "service_completed_successfully" and all_services[other].get(
                "restart", "no"
            ) not in ("no", "on-failure"):
                problems.append(f"{name} waits for {other} to exit, but it always restarts")
    assert problems == []


def test_third_party_images_are_pinned_and_kafka_matches_the_local_broker(
    compose: dict[str, Any],
) -> None:
    images = {n: s["image"] for n, s in services(compose).items() if "build" not in s}
    assert all(":" in i and not i.endswith(":latest") for i in images.values()), images
    assert images["kafka"] == f"apache/kafka:{kafka_version()}"


# --------------------------------------------------------------------------- riverflow services


def test_shared_env_file_names_only_settings_and_loads(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, service in riverflow_services(compose).items():
        env = service_env(service)
        unknown = [
            k
            for k in env
            if k.startswith("RIVERFLOW_")
            and k not in CLI_VARIABLES
            and k.removeprefix("RIVERFLOW_").lower() not in Settings.model_fields
        ]
        assert unknown == [], f"{name}: not a riverflow setting: {unknown}"
        for key in list(os.environ):
            if key.startswith("RIVERFLOW_"):
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = load_settings()
        assert settings.bootstrap_servers == "kafka:9092"


def test_riverflow_services_need_a_signing_key_and_say_where_to_set_it(
    compose: dict[str, Any],
) -> None:
    for name, service in riverflow_services(compose).items():
        given = str(service["environment"]["RIVERFLOW_MODEL_SIGNING_KEY"])
        required = REQUIRED.fullmatch(given)
        assert required is not None, f"{name}: the signing key has a default: {given}"
        assert required.group(1) == "RIVERFLOW_MODEL_SIGNING_KEY"
        assert ".env" in required.group(2) and "README" in required.group(2)
        assert "RIVERFLOW_MODEL_SIGNING_KEY" not in service_env_files(service)
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_worker_commands_are_valid_riverflow_invocations(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in list(os.environ):
        if key.startswith("RIVERFLOW_"):
            monkeypatch.delenv(key)
    models = {}
    for name, service in riverflow_services(compose).items():
        argv = command_of(service)
        for key, value in service_env(service).items():
            monkeypatch.setenv(key, value)
        try:
            args = build_parser(argv).parse_args(argv)
        except SystemExit:
            pytest.fail(f"{name}: `riverflow {' '.join(argv)}` is not a valid command line")
        settings = settings_from(args)
        if argv[0] in WORKER_JOBS:
            models[name] = settings.model
    # Inference serves what the learner publishes: one model name for both.
    assert len(set(models.values())) == 1, models


def test_prometheus_scrapes_every_worker_on_its_metrics_port(compose: dict[str, Any]) -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    all_services = services(compose)
    ports = metrics_ports(compose)
    scraped: dict[str, tuple[str, int]] = {}  # service -> (job, port)
    for job in config["scrape_configs"]:
        targets = [(n, sd["port"]) for sd in job.get("dns_sd_configs", []) for n in sd["names"]]
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                targets.append((host, int(port)))
        for host, port in targets:
            if host == "localhost":  # Prometheus scraping itself, on its default port
                assert (job["job_name"], port) == ("prometheus", 9090)
                continue
            assert host in all_services, f"job {job['job_name']} scrapes unknown host {host}"
            scraped[host] = (job["job_name"], port)
    expected = {
        name: (WORKER_JOBS[command_of(all_services[name])[0]], port) for name, port in ports.items()
    }
    assert scraped == expected
    assert set(expected) == {"inference", "learner"}


def test_prometheus_container_reads_the_repo_config_and_rules(compose: dict[str, Any]) -> None:
    prometheus = services(compose)["prometheus"]
    config_path = option(prometheus["command"], "--config.file")
    assert config_path is not None
    assert host_path(prometheus, config_path) == PROMETHEUS_CONFIG
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    for rule_file in config["rule_files"]:
        in_container = str(PurePosixPath(config_path).parent / rule_file)
        found = host_path(prometheus, in_container)
        assert found is not None and found.is_file(), f"{in_container} is not mounted"
    assert "--storage.tsdb.retention.time=15d" in prometheus["command"]


# --------------------------------------------------------------------------- grafana


def grafana_provisioning(compose: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The provisioning YAML documents of ``kind`` (datasources, dashboards) Grafana reads."""
    directory = host_path(services(compose)["grafana"], f"/etc/grafana/provisioning/{kind}")
    assert directory is not None and directory.is_dir(), f"no {kind} provisioning is mounted"
    files = sorted(directory.glob("*.yml")) + sorted(directory.glob("*.yaml"))
    assert files, f"no {kind} provisioning file in {directory}"
    return [yaml.safe_load(f.read_text()) for f in files]


def provisioned_datasource(compose: dict[str, Any]) -> dict[str, Any]:
    sources = [
        s for doc in grafana_provisioning(compose, "datasources") for s in doc["datasources"]
    ]
    assert len(sources) == 1
    return sources[0]


def test_grafana_datasource_points_at_the_compose_prometheus(compose: dict[str, Any]) -> None:
    source = provisioned_datasource(compose)
    assert source["type"] == "prometheus" and source["uid"]
    assert source["url"] == "http://prometheus:9090"
    assert "prometheus" in services(compose)


def test_grafana_loads_the_repo_dashboards(compose: dict[str, Any]) -> None:
    grafana = services(compose)["grafana"]
    providers = [p for doc in grafana_provisioning(compose, "dashboards") for p in doc["providers"]]
    assert providers
    for provider in providers:
        directory = host_path(grafana, provider["options"]["path"])
        assert directory is not None and sorted(directory.glob("*.json")), provider
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    home_file = host_path(grafana, home)
    assert home_file is not None and home_file.is_file()


def test_dashboards_have_unique_uids_and_pick_their_datasource(compose: dict[str, Any]) -> None:
    """Importable into any Grafana: every Prometheus reference is the ``$datasource`` variable
    (no fixed uid), which starts on the default data source (the provisioned one here), and
    every dashboard can be narrowed to models and deployments."""
    dashboards = load_dashboards()
    assert len(dashboards) == 3
    uids = [d["uid"] for d in dashboards.values()]
    assert len(set(uids)) == len(uids) and all(uids)
    assert provisioned_datasource(compose)["isDefault"] is True
    uid = "${datasource}"
    for path, dashboard in dashboards.items():
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        source = variables["datasource"]
        assert source["type"] == "datasource" and source["query"] == "prometheus"
        assert not source["current"], "the default data source, whatever its uid"
        for name in ("model", "deployment"):
            assert variables[name]["includeAll"] and variables[name]["multi"], path.name
        assert "riverflow-prometheus" not in path.read_text(), path.name
        refs = [p["datasource"] for p in panels(dashboard)]
        refs += [t["datasource"] for p in panels(dashboard) for t in p.get("targets", [])]
        refs += [v["datasource"] for v in dashboard["templating"]["list"] if "datasource" in v]
        refs += [a["datasource"] for a in dashboard["annotations"]["list"]]
        prometheus_refs = [r for r in refs if r.get("type") == "prometheus"]
        assert prometheus_refs and all(r["uid"] == uid for r in prometheus_refs), path.name
        ids = [p["id"] for p in panels(dashboard)]
        assert len(set(ids)) == len(ids), f"{path.name}: duplicate panel ids"


def test_dashboard_panels_do_not_overlap() -> None:
    for path, dashboard in load_dashboards().items():
        boxes = [(p["title"], p["gridPos"]) for p in panels(dashboard)]
        for i, (title_a, a) in enumerate(boxes):
            assert a["x"] + a["w"] <= 24, f"{path.name}: {title_a} is wider than the grid"
            for title_b, b in boxes[i + 1 :]:
                apart = (
                    a["x"] + a["w"] <= b["x"]
                    or b["x"] + b["w"] <= a["x"]
                    or a["y"] + a["h"] <= b["y"]
                    or b["y"] + b["h"] <= a["y"]
                )
                assert apart, f"{path.name}: {title_a} overlaps {title_b}"


def test_every_panel_query_uses_only_known_variables() -> None:
    queries = panel_queries("1m")
    assert len(queries) >= 40
    assert not [q for q in queries if "$" in q.expr]
    assert not [q for q in queries if not q.expr.strip()]


def test_dashboards_show_every_metric_family() -> None:
    inference, learner = InferenceMetrics(), LearnerMetrics()
    inference.add_lag(list)
    inference.add_model_age(float)
    families = {
        f.name
        for m in (inference, learner)
        for f in m.registry.collect()
        if f.name.startswith("riverflow_")
    }
    exprs = [q.expr for q in panel_queries("1m")]
    unseen = [
        name
        for name in sorted(families)
        if not any(re.search(rf"{name}(_total|_bucket|_count|_sum)?(?!\w)", e) for e in exprs)
    ]
    assert unseen == []
