"""riverflow against its peers on one broker: Quix Streams + River, and a bare loop per client.

    python benchmarks/peers.py [infer] [--readings 200000] [--features 8] [--rounds 3]
    python benchmarks/peers.py learner [--events 200000] [--rounds 3]
    python benchmarks/peers.py latency [--rate 2000] [--seconds 30]

Needs the ``bench`` extra (Quix Streams, confluent-kafka) and a broker: ``riverflow kafka
start``, then RIVERFLOW_BOOTSTRAP_SERVERS or ``--bootstrap-servers``. Every contestant runs as its
own process, so none shares a GIL with this harness; rounds are interleaved (each round runs
every contestant once, in an order rotated by one per round), so a noisy neighbour hits all alike.

infer: ``--readings`` readings of ``--features`` features, in riverflow's reading format, are
produced once to a ``--partitions`` topic (reused while it holds exactly that many). Each run
has a fresh consumer group and a fresh output topic: ``riverflow infer --model logreg`` for each
of ``--riverflow-clients``, and the peers of ``peer_contestants.py`` (``quix``,
``bare-confluent``, ``bare-kafka-python``). Output topics stamp records with the broker's append
time (``message.timestamp.type=LogAppendTime``): one clock for everyone, and Quix's
``to_topic`` would otherwise copy the reading's timestamp. A run's rate is its outputs over the
span from its first to its last output's timestamp, so process start, group join and exit are
left out; it counts only if there is exactly one output per reading, by event_id.

learner: ``--events`` predictions and their labels (``learner_throughput.preproduce``), then
``riverflow learn --model logreg`` per riverflow client against a bare join-and-learn loop per
client. Both rates count learned events from the 1,000th to the last: riverflow's from its
snapshot headers (``learned_count``, ``created_ts``), the bare loops' timed inside the loop.

latency: ``riverflow infer`` per client follows a fresh topic while readings are produced at a
steady ``--rate`` for ``--seconds``; p50 and p99 of each output's append time minus its reading's
``ts``, and of its two parts: the reading's append time minus its ``ts`` (the producing side) and
the output's append time minus the reading's (the worker).

``--baseline DIR`` adds ``riverflow-<client>@base`` contestants: riverflow imported from another
checkout (``git worktree add DIR <commit>``), to measure a change before and after in one
interleaved run.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from inference_throughput import (
    SKEW_FOR_OLD_READINGS_S,
    env_for,
    infer_cmd,
    preproduce,
    produce_steadily,
    replace_topics,
    started_following,
    topic_size,
)
from learner_throughput import fresh, learner_run
from learner_throughput import preproduce as preproduce_feedback
from peer_outputs import check, create_output_topic, rate, read_outputs

from riverflow.settings import Settings, load_settings
from riverflow.topics import create_topics

ROOT = Path(__file__).resolve().parents[1]
CONTESTANTS = Path(__file__).with_name("peer_contestants.py")
PEERS = {  # contestant name -> peer_contestants.py name, per mode
    "infer": {
        "quix": "infer-quix",
        "bare-confluent": "infer-confluent",
        "bare-kafka-python": "infer-kafka-python",
    },
    "learner": {"bare-confluent": "learn-confluent", "bare-kafka-python": "learn-kafka-python"},
    "latency": {},
}
IDLE_EXIT_S = 3  # riverflow stops this long after its last record; outside every measured span
LOG_DIR = Path(tempfile.gettempdir()) / "bench-peers"
BASE = "@base"  # suffix of the contestants that run the --baseline checkout's riverflow


def riverflow_clients(command: str, asked: str | None, root: Path = ROOT) -> list[str]:
    """The clients to run riverflow on: ``asked``, or every one the riverflow in ``root`` offers
    (``--kafka-client`` in its help: kafka-python and confluent; otherwise kafka-python)."""
    if has_client_flag(command, root):
        return asked.split(",") if asked else ["kafka-python", "confluent"]
    if asked and asked != "kafka-python":
        raise SystemExit("this riverflow has no --kafka-client: it runs on kafka-python only")
    return ["kafka-python"]


@functools.cache
def has_client_flag(command: str, root: Path = ROOT) -> bool:
    cmd = [sys.executable, "-m", "riverflow", command, "--help"]
    env = {**os.environ, "PYTHONPATH": str(root)}
    help_text = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True).stdout
    return "--kafka-client" in help_text


def client_args(command: str, contestant: str, root: Path) -> list[str]:
    """``--kafka-client`` for ``riverflow-<client>``, where that riverflow has the flag."""
    client = contestant.removeprefix("riverflow-").removesuffix(BASE)
    return ["--kafka-client", client] if has_client_flag(command, root) else []


def tree(args: argparse.Namespace, contestant: str) -> Path:
    """The checkout a contestant imports riverflow from."""
    return Path(args.baseline) if contestant.endswith(BASE) else ROOT


def rotated(names: list[str], by: int) -> list[str]:
    k = by % len(names)
    return names[k:] + names[:k]


def run_process(
    name: str, cmd: list[str], env: dict[str, str], timeout_s: float, cwd: Path = ROOT
) -> str:
    """Run one contestant to its end; its stdout. Its log is kept in ``LOG_DIR``."""
    log = LOG_DIR / f"{name}-{uuid.uuid4().hex[:6]}.log"
    with log.open("w") as err:
        try:
            done = subprocess.run(
                cmd,
                env=env,
                cwd=cwd,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                timeout=timeout_s,
            )
        except subprocess.TimeoutExpired:
            raise SystemExit(f"{name} did not finish in {timeout_s:.0f}s; its log: {log}") from None
    if done.returncode:
        raise SystemExit(f"{name} exited with {done.returncode}; its log: {log}")
    return done.stdout


def peer_cmd(peer: str, settings: Settings, group: str, count: int, *topics: str) -> list[str]:
    cmd = [
        sys.executable,
        str(CONTESTANTS),
        peer,
        "--bootstrap-servers",
        settings.bootstrap_servers,
    ]
    cmd += ["--group", group, "--count", str(count), "--batch", str(settings.max_poll_records)]
    return cmd + list(topics)


def infer_once(
    name: str, base: Settings, readings: str, event_ids: set[str], root: Path = ROOT
) -> float:
    uid = uuid.uuid4().hex[:8]
    settings = replace_topics(base, readings, uid)
    out_topic = f"bench-peers-{name.replace('@', '-')}-{uid}"
    settings = settings.model_copy(update={"predictions_topic": out_topic})
    out_topic = settings.predictions_topic
    create_output_topic(settings, out_topic)
    group, n = f"bench-peers-{name.replace('@', '-')}-{uid}", len(event_ids)
    if name.startswith("riverflow-"):
        create_topics(settings)  # its models, dead letters and feedback topics
        cmd = infer_cmd(group, 0, IDLE_EXIT_S) + client_args("infer", name, root)
        env = env_for(settings, root=root, max_ts_skew_s=SKEW_FOR_OLD_READINGS_S)
    else:
        topics = ["--input", readings, "--output", out_topic]
        cmd = peer_cmd(PEERS["infer"][name], settings, group, n, *topics)
        env = env_for(settings)
    run_process(name, cmd, env, timeout_s=120 + n / 500, cwd=root)
    out = read_outputs(base.bootstrap_servers, out_topic)
    check(name, out, n, event_ids)
    return rate(out)


def learn_once(name: str, topics: Settings, n: int, root: Path = ROOT) -> float:
    if name.startswith("riverflow-"):
        models_topic = f"{topics.models_topic}-{uuid.uuid4().hex[:6]}"
        models = topics.model_copy(update={"models_topic": models_topic})
        create_topics(models)
        # Reading a backlog, one topic runs ahead of the other: with the default bound the
        # learner evicts waiting predictions (17% of 200,000 in one run); the bare loop's dicts
        # are unbounded, so riverflow gets room for every event too.
        extra = ["--max-pending", str(n), *client_args("learn", name, root)]
        return learner_run(models, n, extra, root)
    group = f"bench-peers-{name}-{uuid.uuid4().hex[:8]}"
    names = ["--predictions", topics.predictions_topic, "--feedback", topics.feedback_topic]
    cmd = peer_cmd(PEERS["learner"][name], topics, group, n, *names)
    result = json.loads(run_process(name, cmd, env_for(topics), timeout_s=120 + n / 500))
    if result["learned"] != n:
        raise SystemExit(f"{name} learned {result['learned']} of {n} events")
    return float(result["events_per_s"])


def rounds(names: list[str], count: int, run: Callable[[str], float]) -> dict[str, list[float]]:
    """``count`` interleaved rounds of ``run(name)``: each contestant's rates."""
    rates: dict[str, list[float]] = {name: [] for name in names}
    for r in range(count):
        for name in rotated(names, r):
            rates[name].append(run(name))
            print(f"round {r + 1}  {name:<24} {rates[name][-1]:>9,.0f} events/s", flush=True)
        print(f"load average after round {r + 1}: {load()}", flush=True)
    return rates


def report(rates: dict[str, list[float]], clients: list[str], unit: str) -> None:
    """The table of medians, then each riverflow contestant's ratios: of the medians, and the
    ratio within each round (both ran under the same neighbours)."""
    medians = {name: statistics.median(values) for name, values in rates.items()}
    print(f"\n| contestant | median {unit}/s | runs |\n|---|---|---|")
    for name, median in sorted(medians.items(), key=lambda kv: -kv[1]):
        runs = ", ".join(f"{v:,.0f}" for v in rates[name])
        print(f"| {name} | {median:,.0f} | {runs} |")
    print()
    for client in clients:
        for ours in (f"riverflow-{client}", f"riverflow-{client}{BASE}"):
            peers = ["quix", f"bare-{client}"] + ([f"{ours}{BASE}"] if BASE not in ours else [])
            for peer in peers:
                if ours in rates and peer in rates:
                    rounds = [a / b for a, b in zip(rates[ours], rates[peer], strict=True)]
                    per_round = ", ".join(f"{r:.2f}" for r in rounds)
                    print(
                        f"{ours} / {peer}: {medians[ours] / medians[peer]:.2f} "
                        f"(per round: {per_round})"
                    )


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def infer_mode(args: argparse.Namespace, base: Settings, names: list[str]) -> None:
    readings = f"bench-peers-readings-{args.readings}x{args.features}x{base.partitions}"
    preproduce(replace_topics(base, readings, "pre"), args.readings, args.features)
    if (have := topic_size(base, readings)) != args.readings:
        raise SystemExit(f"{readings} holds {have} readings, not {args.readings}: delete it")
    event_ids = set(read_outputs(base.bootstrap_servers, readings, "ts").event_ids)
    rates = rounds(
        names,
        args.rounds,
        lambda name: infer_once(name, base, readings, event_ids, tree(args, name)),
    )
    report(rates, args.clients, "events")


def learner_mode(args: argparse.Namespace, base: Settings, names: list[str]) -> None:
    topics = fresh(base, uuid.uuid4().hex[:8])
    preproduce_feedback(topics, args.events)
    rates = rounds(
        names, args.rounds, lambda name: learn_once(name, topics, args.events, tree(args, name))
    )
    report(rates, args.clients, "learned events")


def latency_mode(args: argparse.Namespace, base: Settings, names: list[str]) -> None:
    for name in names:
        uid = uuid.uuid4().hex[:8]
        settings = replace_topics(base, f"bench-peers-live-{uid}", uid)
        # Both topics stamped by the broker: each latency splits at the reading's append time.
        create_output_topic(settings, settings.readings_topic)
        create_output_topic(settings, settings.predictions_topic)
        create_topics(settings)
        root = tree(args, name)
        cmd = infer_cmd(f"bench-peers-live-{uid}", 0, 5) + client_args("infer", name, root)
        proc = started_following(cmd, env_for(settings, root=root), root)
        sent = produce_steadily(settings, args.rate, args.seconds)
        proc.wait(timeout=120)
        out = read_outputs(base.bootstrap_servers, settings.predictions_topic)
        check(name, out, sent)
        ins = read_outputs(base.bootstrap_servers, settings.readings_topic, "ts")
        appended = dict(zip(ins.event_ids, ins.stamps, strict=True))
        total = [s - e for e, s in zip(out.event_ts, out.stamps, strict=True)]
        worker = [s - appended[i] for i, s in zip(out.event_ids, out.stamps, strict=True)]
        sensor = [a - e for e, a in zip(ins.event_ts, ins.stamps, strict=True)]
        print(
            f"{name}: {sent:,} readings at {args.rate:,}/s, output append time - reading ts: "
            f"{quantiles(total)}; of which reading ts -> reading appended (the producing "
            f"side): {quantiles(sensor)}, reading appended -> output appended (the worker): "
            f"{quantiles(worker)} (load {load()})",
            flush=True,
        )


def quantiles(latencies: list[int]) -> str:
    q = statistics.quantiles(latencies, n=100)
    return f"p50 {q[49]:.0f} ms, p99 {q[98]:.0f} ms"


MODES = {"infer": infer_mode, "learner": learner_mode, "latency": latency_mode}


def contestants(
    mode: str, clients: list[str], base_clients: list[str], only: str | None
) -> list[str]:
    names = [f"riverflow-{c}" for c in clients] + [f"riverflow-{c}{BASE}" for c in base_clients]
    names += list(PEERS[mode])
    if not only:
        return names
    unknown = set(only.split(",")) - set(names)
    if unknown:
        raise SystemExit(f"unknown contestants {sorted(unknown)} for {mode}: pick from {names}")
    return [n for n in names if n in only.split(",")]


def versions() -> str:
    from importlib.metadata import version

    import confluent_kafka

    pkgs = ("quixstreams", "confluent-kafka", "kafka-python", "river")
    return (
        ", ".join(f"{p} {version(p)}" for p in pkgs)
        + f", librdkafka {confluent_kafka.libversion()[0]}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("mode", nargs="?", choices=list(MODES), default="infer")
    ap.add_argument("--bootstrap-servers", help="default: RIVERFLOW_BOOTSTRAP_SERVERS")
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--readings", type=int, default=200_000, help="infer: pre-produced readings")
    ap.add_argument("--features", type=int, default=8, help="infer: features per reading")
    ap.add_argument("--events", type=int, default=200_000, help="learner: predictions + labels")
    ap.add_argument("--rate", type=int, default=2000, help="latency: readings per second")
    ap.add_argument("--seconds", type=float, default=30.0, help="latency: length of each run")
    ap.add_argument(
        "--riverflow-clients",
        help="comma-separated Kafka clients to run riverflow on (default: all it offers)",
    )
    ap.add_argument("--contestants", help="comma-separated subset of the contestants to run")
    ap.add_argument(
        "--baseline",
        metavar="DIR",
        help="also run the riverflow of this checkout, as riverflow-<client>@base",
    )
    args = ap.parse_args()
    command = "learn" if args.mode == "learner" else "infer"
    args.clients = riverflow_clients(command, args.riverflow_clients)
    base_clients = []
    if args.baseline:
        base_clients = riverflow_clients(command, None, Path(args.baseline).resolve())
        base_clients = [c for c in base_clients if c in args.clients]
    overrides = {"bootstrap_servers": args.bootstrap_servers} if args.bootstrap_servers else {}
    base = load_settings(partitions=args.partitions, **overrides)
    names = contestants(args.mode, args.clients, base_clients, args.contestants)
    LOG_DIR.mkdir(exist_ok=True)
    print(f"{args.mode}: {', '.join(names)}; {versions()}; load {load()}; logs in {LOG_DIR}")
    MODES[args.mode](args, base, names)


if __name__ == "__main__":
    main()
