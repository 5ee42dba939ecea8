"""A local Prometheus that scrapes workers on this machine with the repo's config and rules.

Used by ``riverflow up --prometheus`` and the end-to-end tests. It needs the ``prometheus``
binary (Debian: ``apt-get install prometheus``); its config and rules come with the package
(``riverflow/deploy`` links to the repository's ``deploy/``, and the wheel carries the files).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from riverflow.errors import ConfigError, RiverflowError

DEPLOY = Path(__file__).resolve().parent / "deploy" / "prometheus"


@dataclass
class LocalPrometheus:
    """One Prometheus process with its own run directory (config, targets, storage)."""

    run_dir: Path
    port: int = 9090
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_targets(self, job: str, ports: list[int]) -> None:
        """Point ``job`` (inference or learner) at workers on these local ports."""
        targets = self.run_dir / "targets"
        targets.mkdir(parents=True, exist_ok=True)
        tmp = targets / f".{job}.json.tmp"
        tmp.write_text(json.dumps([{"targets": [f"127.0.0.1:{p}" for p in ports]}]))
        tmp.replace(targets / f"{job}.json")  # atomic: Prometheus never reads half a file

    def prepare(self) -> Path:
        """Copy the repo's local config and alert rules into the run directory."""
        if not DEPLOY.is_dir():
            raise ConfigError(f"{DEPLOY} is missing: reinstall riverflow")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(DEPLOY / "prometheus.local.yml", self.run_dir / "prometheus.yml")
        shutil.copy(DEPLOY / "alerts.yml", self.run_dir / "alerts.yml")
        return self.run_dir / "prometheus.yml"

    def start(self, timeout_s: float = 30.0) -> str:
        binary = shutil.which("prometheus")
        if binary is None:
            raise ConfigError("`prometheus` is not installed (Debian: apt-get install prometheus)")
        self.prepare()
        log = open(self.run_dir / "prometheus.log", "wb")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={self.run_dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.run_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1d",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RiverflowError(f"prometheus exited: see {self.run_dir / 'prometheus.log'}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1):
                    return self.url
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RiverflowError(f"prometheus did not get ready within {timeout_s:.0f}s")

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Evaluate an instant query through the HTTP API; returns the result vector."""
        params = {"query": expr}
        if at is not None:
            params["time"] = str(at)
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
        if body.get("status") != "success":
            raise RiverflowError(f"query {expr!r} failed: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
