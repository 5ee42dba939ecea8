"""``riverflow up``: the whole pipeline on this machine, with a live summary.

Starts the local Kafka when nothing is configured, creates the topics, runs the simulator (with a
drift point), inference and the learner as child processes (and a local Prometheus with
``--prometheus``), and refreshes a summary read from the workers' own /metrics pages. Ctrl-C or
the end of ``--duration`` stops everything in dependency order: producer, inference, learner,
Prometheus, and the broker last.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from riverflow.config_file import config_path, read_config
from riverflow.errors import ConfigError
from riverflow.lifecycle import Stopper
from riverflow.local_kafka import LocalKafka, state_dir
from riverflow.local_prometheus import LocalPrometheus
from riverflow.scrape import Page, quantile
from riverflow.settings import load_settings
from riverflow.topics import create_topics

log = logging.getLogger(__name__)

# The summary compares metric snapshots this many seconds apart: long enough for a stable
# rate and p99, short enough to show a change within seconds.
WINDOW_S = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", dest="model", help="preset or module:factory (default logreg)")
    parser.add_argument(
        "--duration",
        type=float,
        help="stop after the pipeline has run this many seconds (counted once it is started)",
    )
    parser.add_argument("--rate", type=float, default=200.0, help="readings/s (default 200)")
    parser.add_argument("--sensors", type=int, default=20, help="fleet size (default 20)")
    parser.add_argument(
        "--drift-at",
        type=int,
        default=6000,
        help="reading number where the concept changes (default 6000, "
        "30 s at the default rate; 0 = never)",
    )
    parser.add_argument(
        "--label-delay",
        type=float,
        default=2.0,
        help="seconds from a reading to its label (default 2)",
    )
    parser.add_argument("--replicas", type=int, default=2, help="inference processes (default 2)")
    parser.add_argument(
        "--metrics-port",
        dest="metrics_port",
        type=int,
        help="first metrics port (default 8000): inference 8000, 8002, ..., learner 8001",
    )
    parser.add_argument(
        "--prometheus",
        action="store_true",
        help="also run a local Prometheus (needs the prometheus binary)",
    )
    parser.add_argument("--prometheus-port", type=int, default=9090)
    parser.add_argument(
        "--kafka-port",
        dest="kafka_port",
        type=int,
        help="port of the local broker started when none is configured (env "
        "RIVERFLOW_KAFKA_PORT, default 9092)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the last run's broker state (topics, models, offsets) instead of starting "
        "clean; a broker that up did not start is always resumed, never cleared",
    )


def with_signing_key(env: dict[str, str], key_file: Path) -> dict[str, str]:
    """``env`` for the children with a key to sign snapshots: the user's when set (returned
    as is), otherwise the one kept in ``key_file``."""
    if env.get("RIVERFLOW_MODEL_SIGNING_KEY"):
        return env
    return {**env, "RIVERFLOW_MODEL_SIGNING_KEY": signing_key(key_file)}


def signing_key(path: Path) -> str:
    """The key ``up`` signs its snapshots with: random, made on the first run (mode 0600), then
    read again, so that snapshots of earlier runs on the same broker still verify."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            os.chmod(path, 0o600)
            log.warning("%s was readable by others: now mode 0600", path)
        key = path.read_text().strip()
        if len(key) < 32:
            raise ConfigError(f"{path} holds no usable key: delete it to make a new one") from None
        return key
    key = secrets.token_hex(32)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    return key


def up_data_dir(port: int) -> Path:
    """The data dir of the broker ``up`` starts, apart from ``riverflow kafka start``'s, so a
    clean start of ``up`` never touches a broker the user keeps."""
    return state_dir() / "up" / f"kafka-{port}"


def configured_bootstrap(flag: str | None) -> str | None:
    """The bootstrap servers given by flag, environment or config file, in that order; None
    when none is, and ``up`` starts its own broker."""
    path = config_path()
    file = read_config(path) if path else {}
    given = flag or os.environ.get("RIVERFLOW_BOOTSTRAP_SERVERS") or file.get("bootstrap_servers")
    return str(given) if given else None


def resuming(bootstrap: str) -> str:
    return (
        f"using the Kafka at {bootstrap}, which this run did not start: resuming the topics, "
        "models and consumer offsets already there, deleting nothing (`riverflow reset` clears "
        "riverflow's topics and groups)"
    )


@dataclass
class ServedVersions:
    """Predictions per served model version, tallied from successive scrapes of each inference
    worker: what a worker predicted between two scrapes counts for the version it served at the
    later one (so a swap inside an interval is counted for the new version; ``up`` scrapes every
    second to keep that small).

    >>> tally = ServedVersions()
    >>> tally.add("w0", 300, 0); tally.add("w0", 400, 1); tally.add("w1", 100, 1)
    >>> tally.most()
    (0, 0.6)
    """

    last: dict[str, float] = field(default_factory=dict)
    counts: dict[int, float] = field(default_factory=dict)

    def add(self, worker: str, predictions: float, version: float | None) -> None:
        before = self.last.get(worker, 0.0)
        self.last[worker] = predictions
        if version is None:
            return
        # A worker that restarted counts from 0 again: all it reports is new.
        new = predictions - before if predictions >= before else predictions
        self.counts[int(version)] = self.counts.get(int(version), 0.0) + new

    def most(self) -> tuple[int, float] | None:
        """The version that served the most predictions and its share of them."""
        total = sum(self.counts.values())
        if total <= 0:
            return None
        version = max(self.counts, key=self.counts.__getitem__)
        return version, self.counts[version] / total


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path


class Up:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.base_port = args.metrics_port or 8000
        self.infer_ports = [self.base_port + (0 if i == 0 else i + 1) for i in range(args.replicas)]
        self.learn_port = self.base_port + 1
        self.run_dir = state_dir() / "up" / time.strftime("%Y%m%d-%H%M%S")
        self.children: list[Child] = []
        self.broker: LocalKafka | None = None
        self.prometheus: LocalPrometheus | None = None
        self.history: deque[tuple[float, Page]] = deque()
        self.served = ServedVersions()
        self.started = time.monotonic()
        self.lines_drawn = 0

    # -- start -------------------------------------------------------------------------------

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        given = configured_bootstrap(self.args.bootstrap_servers)
        if given is None:
            env["RIVERFLOW_BOOTSTRAP_SERVERS"] = self.start_broker()
        else:
            env["RIVERFLOW_BOOTSTRAP_SERVERS"] = given
            print(resuming(given), flush=True)
        if self.args.kafka_client:  # the children use the client asked for
            env["RIVERFLOW_KAFKA_CLIENT"] = self.args.kafka_client
        key_file = state_dir() / "signing.key"
        self.env = with_signing_key(env, key_file)
        if self.env is not env:
            print(f"model snapshots are signed with the key in {key_file}", flush=True)
        settings = load_settings(
            bootstrap_servers=env["RIVERFLOW_BOOTSTRAP_SERVERS"],
            model=self.args.model,
            kafka_client=self.args.kafka_client,
        )
        self.model = settings.model
        for line in create_topics(settings):
            log.info("topics: %s", line)
        if self.args.prometheus:
            self.prometheus = LocalPrometheus(
                self.run_dir / "prometheus", self.args.prometheus_port
            )
            self.prometheus.set_targets("inference", self.infer_ports)
            self.prometheus.set_targets("learner", [self.learn_port])
            print(f"Prometheus on {self.prometheus.start()}", flush=True)
        # Each worker is a static group member under its own name: one that crashes and is
        # started again gets its partitions back at once (see --instance-id).
        worker = ["--model", self.model, "--instance-id"]
        self.spawn("learner", "learn", *worker, "learner", "--metrics-port", str(self.learn_port))
        for i, port in enumerate(self.infer_ports):
            name = f"inference-{i}"
            self.spawn(name, "infer", *worker, name, "--metrics-port", str(port))
        sim = [
            "simulate",
            "--rate",
            str(self.args.rate),
            "--sensors",
            str(self.args.sensors),
            "--label-delay",
            str(self.args.label_delay),
        ]
        if self.args.drift_at:
            sim += ["--drift-at", str(self.args.drift_at)]
        self.spawn("simulator", *sim)
        print(f"logs in {self.run_dir}", flush=True)

    def start_broker(self) -> str:
        """Start up's own broker, from clean state unless --resume; its bootstrap."""
        port = load_settings(kafka_port=self.args.kafka_port).kafka_port
        broker = LocalKafka(port, up_data_dir(port))
        if broker.answers():  # a broker this run did not start: use it, never clear it
            print(resuming(broker.bootstrap), flush=True)
            return broker.bootstrap
        if self.args.resume:
            state = f"resuming the last run's state in {broker.home}"
        else:
            broker.wipe()
            state = f"clean state in {broker.home} (--resume keeps a run's state)"
        print(f"starting local Kafka on {broker.bootstrap} with {state} ...", flush=True)
        bootstrap = broker.start()
        self.broker = broker
        return bootstrap

    def spawn(self, name: str, *argv: str) -> None:
        path = self.run_dir / f"{name}.log"
        with open(path, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "riverflow", "--log-level", "INFO", *argv],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches only us; we stop children in order
            )
        self.children.append(Child(name, proc, path))

    # -- summary -----------------------------------------------------------------------------

    def scrape(self) -> Page:
        pages = {p: Page.fetch([f"http://127.0.0.1:{p}/metrics"]) for p in self.infer_ports}
        for port, page in pages.items():
            if page.samples:
                self.served.add(
                    str(port),
                    page.sum("riverflow_predictions_total"),
                    page.max("riverflow_model_version"),
                )
        learner = Page.fetch([f"http://127.0.0.1:{self.learn_port}/metrics"])
        return Page.merge([*pages.values(), learner])

    def summary(self) -> list[str]:
        now = time.monotonic()
        page = self.scrape()
        self.history.append((now, page))
        while len(self.history) > 2 and now - self.history[1][0] >= WINDOW_S:
            self.history.popleft()
        then, old = self.history[0]
        dt = max(now - then, 1e-9)
        rate = (
            page.sum("riverflow_predictions_total") - old.sum("riverflow_predictions_total")
        ) / dt
        p99 = quantile(
            0.99,
            page.buckets("riverflow_end_to_end_latency_seconds"),
            old.buckets("riverflow_end_to_end_latency_seconds"),
        )
        served = page.max(
            "riverflow_model_metric", source="served", metric="accuracy", window="rolling"
        )
        learner = page.max(
            "riverflow_model_metric", source="learner", metric="accuracy", window="rolling"
        )
        versions = [v for _, v in page.select("riverflow_model_version")]
        elapsed = int(now - self.started)
        return [
            f"riverflow up  {elapsed // 60:02d}:{elapsed % 60:02d}  model {self.model}  "
            f"(Ctrl-C stops)",
            f"  throughput     {rate:8.0f} predictions/s   total "
            f"{page.sum('riverflow_predictions_total'):,.0f}",
            f"  latency p99    {_ms(p99):>8} end to end",
            f"  lag            {page.sum('riverflow_consumer_lag'):8,.0f} records",
            f"  model version  {_versions(versions):>8}   learned "
            f"{page.sum('riverflow_learned_total'):,.0f}",
            f"  accuracy       {_num(served):>8} served (rolling)   {_num(learner)} learner",
            f"  served model   {_served(self.served.most(), page)}",
            f"  drift          {page.sum('riverflow_feature_drift_detections_total'):8.0f} "
            f"feature   {page.sum('riverflow_concept_drift_detections_total'):.0f} concept",
            f"  dead letters   {page.sum('riverflow_dead_letters_total'):8.0f}",
            f"  kafka          {_connected(page):>8} workers connected",
            f"  ready          {self.readiness():>8} workers (/readyz)",
        ]

    def readiness(self) -> str:
        """How many workers answer /readyz with 200, and the first one's reason when not all."""
        ports = {"learner": self.learn_port} | {
            f"inference-{i}": p for i, p in enumerate(self.infer_ports)
        }
        waiting = []
        for name, port in ports.items():
            ok, text = probe(f"http://127.0.0.1:{port}/readyz")
            if not ok:
                waiting.append(f"{name}: {text}")
        ready = f"{len(ports) - len(waiting)}/{len(ports)}"
        return f"{ready} ({waiting[0]})" if waiting else ready

    def draw(self, lines: list[str]) -> None:
        if sys.stdout.isatty():
            if self.lines_drawn:
                sys.stdout.write(f"\x1b[{self.lines_drawn}F")
            sys.stdout.write("".join(f"\x1b[2K{line}\n" for line in lines))
            self.lines_drawn = len(lines)
        else:
            sys.stdout.write(" | ".join(part.strip() for part in lines) + "\n")
        sys.stdout.flush()

    # -- stop --------------------------------------------------------------------------------

    def crashed(self) -> Child | None:
        return next((c for c in self.children if c.proc.poll() is not None), None)

    def stop(self) -> bool:
        """Stop in dependency order; True when every child exited cleanly."""
        clean = True
        for prefix in ("simulator", "inference", "learner"):
            group = [c for c in self.children if c.name.startswith(prefix)]
            for c in group:
                if c.proc.poll() is None:
                    c.proc.terminate()
            for c in group:
                try:
                    code = c.proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop within 60 s; killing it", c.name)
                    c.proc.kill()
                    code = c.proc.wait()
                if code not in (0, -15):
                    clean = False
                    print(f"{c.name} exited with {code}; see {c.log_path}", file=sys.stderr)
        if self.prometheus is not None:
            self.prometheus.stop()
        if self.broker is not None:
            self.broker.stop()
        return clean


def probe(url: str) -> tuple[bool, str]:
    """Whether ``url`` answers 200, and its one-line answer (or why there is none)."""
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            return True, answer.read().decode(errors="replace").strip()
    except urllib.error.HTTPError as exc:
        return False, exc.read().decode(errors="replace").strip()
    except OSError:
        return False, "not answering"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _served(most: tuple[int, float] | None, page: Page) -> str:
    """Which version served most predictions, and how many versions the served model trailed
    the learner by (median over joined predictions): inference serves the snapshot the learner
    published last, so served quality trails learner quality."""
    if most is None:
        return "       -   no predictions yet"
    version, share = most
    lag = _median_bound(page.buckets("riverflow_served_version_lag"))
    behind = "-" if lag is None else f"{lag:g} version{'s' * (lag != 1)}"
    served = f"v{version}"
    return f"{served:>8} for {share:.0%} of predictions; trails the learner by {behind} (median)"


def _median_bound(buckets: dict[float, float]) -> float | None:
    """The upper bound of the histogram bucket that holds the median (exact for the small
    integer lags, whose buckets are 0, 1, 2, 3)."""
    if not buckets or max(buckets.values()) <= 0:
        return None
    half = max(buckets.values()) / 2
    return min(bound for bound, count in buckets.items() if count >= half)


def _connected(page: Page) -> str:
    states = [v for _, v in page.select("riverflow_kafka_connected")]
    return f"{sum(states):.0f}/{len(states)}" if states else "-"


def _versions(values: list[float]) -> str:
    if not values:
        return "-"
    lo, hi = int(min(values)), int(max(values))
    return f"v{hi}" if lo == hi else f"v{lo}..v{hi}"


def run(args: argparse.Namespace) -> int:
    up = Up(args)
    stopper = Stopper().install()
    try:
        up.start()
        # From here: starting the broker can take half a minute on a busy machine.
        deadline = time.monotonic() + args.duration if args.duration else None
        lines: list[str] = []
        drawn = -WINDOW_S
        while not stopper.stopping:
            if deadline is not None and time.monotonic() >= deadline:
                break
            failed = up.crashed()
            if failed is not None:
                print(
                    f"{failed.name} stopped unexpectedly (exit {failed.proc.returncode}); "
                    f"see {failed.log_path}",
                    file=sys.stderr,
                )
                break
            lines = up.summary()  # every second: the served-version tally needs the detail
            if sys.stdout.isatty() or time.monotonic() - drawn >= WINDOW_S:
                up.draw(lines)
                drawn = time.monotonic()
            stopper.wait(1.0)
        order = ["simulator", "inference", "learner"]
        order += ["Prometheus"] * (up.prometheus is not None) + ["the broker"] * (
            up.broker is not None
        )
        print(f"stopping: {', '.join(order)} ...", flush=True)
        final = up.summary() if up.children else lines
    finally:
        clean = up.stop()
    print("\n".join(["final summary:", *final[1:]]))
    failed = up.crashed()
    return 0 if clean and (failed is None or failed.proc.returncode in (0, -15)) else 1
