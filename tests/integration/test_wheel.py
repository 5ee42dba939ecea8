"""The wheel as a user installs it: built from the checkout, installed in a fresh venv with its
dependencies from PyPI, then ``riverflow up --prometheus`` run from outside the checkout, so
nothing it needs may come from the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import riverflow
from tests.checkout import copy_checkout
from tests.integration.kit import free_ports
from tests.integration.test_up import free_port_run

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str | Path, cwd: Path, env: dict[str, str], timeout: float) -> str:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{args}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def test_the_wheel_runs_up_with_prometheus_from_a_fresh_venv(tmp_path: Path) -> None:
    # Nothing of the checkout or of the test's settings reaches the installed riverflow.
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("RIVERFLOW_") and k != "PYTHONPATH"
    }
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    pip = [sys.executable, "-m", "pip"]
    source = copy_checkout(tmp_path / "source")  # the build's leftovers stay out of the repo
    run(
        *pip,
        "wheel",
        "--no-deps",
        "-w",
        tmp_path / "dist",
        source,
        cwd=outside,
        env=env,
        timeout=600,
    )
    (wheel,) = (tmp_path / "dist").glob("riverflow-*.whl")
    assert wheel.name.startswith(f"riverflow-{riverflow.__version__}-")  # one version source
    # Everything under riverflow/: no generic top-level consumers, producers or online_model.
    with zipfile.ZipFile(wheel) as contents:
        tops = {name.split("/")[0] for name in contents.namelist()}
        assert "riverflow/consumers/learner/worker.py" in contents.namelist()
    assert tops == {"riverflow", f"riverflow-{riverflow.__version__}.dist-info"}, tops

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=outside, env=env, timeout=120)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", wheel, cwd=outside, env=env, timeout=900)
    where = run(
        python,
        "-c",
        "import importlib.metadata as m, riverflow; print(riverflow.__file__); "
        "print(m.metadata('riverflow')['License-Expression'])",
        cwd=outside,
        env=env,
        timeout=60,
    ).split()
    package = Path(where[0]).parent
    assert package.is_relative_to(venv), where  # the installed copy, not the checkout
    assert where[1] == "BSD-3-Clause"
    for name in ("prometheus.local.yml", "alerts.yml"):  # what `up --prometheus` reads
        shipped = package / "deploy" / "prometheus" / name
        assert shipped.read_text() == (ROOT / "deploy" / "prometheus" / name).read_text()

    kafka_port = free_port_run(2)
    metrics, prometheus = free_port_run(4), free_ports(1)[0]
    out = run(
        venv / "bin" / "riverflow",
        "up",
        "--duration",
        "20",
        "--prometheus",
        "--kafka-port",
        str(kafka_port),
        "--metrics-port",
        str(metrics),
        "--prometheus-port",
        str(prometheus),
        cwd=outside,
        env=env,
        timeout=600,
    )
    assert f"Prometheus on http://127.0.0.1:{prometheus}" in out
    assert "stopping: simulator, inference, learner, Prometheus, the broker" in out
    assert "final summary:" in out and "served model" in out.split("final summary:")[1]
    # Prometheus ran on the packaged config and rules, copied into the run's directory.
    (run_dir,) = (tmp_path / "state" / "riverflow" / "up").glob("2*/prometheus")
    assert (run_dir / "alerts.yml").read_text() == (
        package / "deploy/prometheus/alerts.yml"
    ).read_text()
