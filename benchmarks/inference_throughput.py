"""Inference throughput and latency against the bare kafka-python loop, on a real broker.

    python benchmarks/inference_throughput.py [--readings 200000] [--repeat 3]

1. Pre-produces ``--readings`` 8-feature readings to a benchmark topic once (reused while it
   holds enough records).
2. Throughput, each run on that same topic with a fresh consumer group:
   (a) a bare loop: poll, ``json.loads`` each value, produce a fixed small output per record,
       flush and commit per batch, with the same client settings as riverflow;
   (b) ``riverflow infer --model logreg --idle-exit 3`` as a subprocess.
   Rates count from the first to the last record processed (startup and the idle exit are
   left out): for (b), from the predictions' ``predicted_ts``.
3. Latency: ``riverflow infer`` follows a fresh topic while readings are produced at a steady
   ``--rate`` per second; p50/p99 of ``predicted_ts - event_ts`` over the predictions, and of
   the worker's end_to_end_latency_seconds histogram (observed after the flush).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from kafka import TopicPartition

from riverflow.schemas import now_ms, reading_value
from riverflow.scrape import Page, quantile
from riverflow.settings import Settings, load_settings
from riverflow.topics import create_topics
from riverflow.transport.kafka_python import kafka_consumer as consumer
from riverflow.transport.kafka_python import kafka_producer as producer

ROOT = Path(__file__).resolve().parents[1]
FEATURES = 8
BARE_OUTPUT = b'{"ok":1}'
# The pre-produced readings are reused for days; their ts must stay inside the allowed skew.
SKEW_FOR_OLD_READINGS_S = 365 * 86400.0


def fresh_topics(settings: Settings, readings_topic: str) -> Settings:
    uid = uuid.uuid4().hex[:8]
    topics = replace_topics(settings, readings_topic, uid)
    create_topics(topics)
    return topics


def replace_topics(settings: Settings, readings_topic: str, uid: str) -> Settings:
    return settings.model_copy(
        update={
            "readings_topic": readings_topic,
            "predictions_topic": f"bench-predictions-{uid}",
            "models_topic": f"bench-models-{uid}",
            "dead_letters_topic": f"bench-dead-letters-{uid}",
            "feedback_topic": f"bench-feedback-{uid}",
        }
    )


def reading(i: int, sensors: int = 100, features: int = FEATURES) -> bytes:
    x = {f"f{j}": random.gauss(0.0, 1.0) for j in range(features)}
    return reading_value(uuid.uuid4().hex, f"sensor-{i % sensors}", now_ms(), x)


def topic_size(settings: Settings, topic: str) -> int:
    c = consumer(settings, group_id=None)
    try:
        parts = c.partitions_for_topic(topic)
        if not parts:
            return 0
        ends = c.end_offsets([TopicPartition(topic, p) for p in parts])
        return int(sum(ends.values()))
    finally:
        c.close()


def preproduce(settings: Settings, n: int, features: int = FEATURES) -> None:
    have = topic_size(settings, settings.readings_topic)
    if have >= n:
        print(f"reusing {settings.readings_topic} ({have} readings)")
        return
    create_topics(settings)
    p = producer(settings)
    started = time.perf_counter()
    for i in range(n - have):
        key = f"sensor-{i % 100}".encode()
        p.send(settings.readings_topic, key=key, value=reading(i, features=features))
    p.flush()
    p.close()
    took = time.perf_counter() - started
    print(f"produced {n - have} readings to {settings.readings_topic} in {took:.1f}s")


def bare_loop(settings: Settings, n: int) -> float:
    """Events/s of the bare kafka-python loop over ``n`` records."""
    c = consumer(settings, settings.readings_topic, group_id=f"bench-bare-{uuid.uuid4().hex}")
    p = producer(settings)
    out = settings.predictions_topic
    seen = 0
    first = 0.0
    try:
        while seen < n:
            batch = c.poll(timeout_ms=500)
            if not batch:
                continue
            if not first:
                first = time.perf_counter()
            for records in batch.values():
                for record in records:
                    json.loads(record.value)
                    p.send(out, key=record.key, value=BARE_OUTPUT)
                seen += len(records)
            p.flush()
            c.commit()
        return seen / (time.perf_counter() - first)
    finally:
        p.close()
        c.close()


def env_for(settings: Settings, *, root: Path = ROOT, **extra: Any) -> dict[str, str]:
    """The environment of a worker on ``settings``' topics, importing riverflow from ``root``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIVERFLOW_")}
    for key in (
        "bootstrap_servers",
        "readings_topic",
        "predictions_topic",
        "models_topic",
        "dead_letters_topic",
        "feedback_topic",
    ):
        env[f"RIVERFLOW_{key.upper()}"] = str(getattr(settings, key))
    env.update({f"RIVERFLOW_{k.upper()}": str(v) for k, v in extra.items()})
    env["PYTHONPATH"] = str(root)
    return env


def infer_cmd(group: str, port: int, idle_exit: float) -> list[str]:
    return [
        sys.executable,
        "-m",
        "riverflow",
        "infer",
        "--model",
        "logreg",
        "--idle-exit",
        str(idle_exit),
        "--group-id",
        group,
        "--metrics-port",
        str(port),
    ]


def read_predicted_ts(settings: Settings, n: int) -> list[tuple[int, int]]:
    """(event_ts, predicted_ts) of every prediction on the predictions topic."""
    c = consumer(settings, group_id=None)
    out: list[tuple[int, int]] = []
    try:
        tps = [
            TopicPartition(settings.predictions_topic, p)
            for p in c.partitions_for_topic(settings.predictions_topic) or []
        ]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        deadline = time.monotonic() + 120
        while len(out) < n and time.monotonic() < deadline:
            for records in c.poll(timeout_ms=500).values():
                for r in records:
                    v = json.loads(r.value)
                    out.append((v["event_ts"], v["predicted_ts"]))
        return out
    finally:
        c.close()


def infer_run(settings: Settings, n: int, drift_every: int) -> float:
    """Events/s of ``riverflow infer`` over the ``n`` pre-produced readings."""
    env = env_for(settings, max_ts_skew_s=SKEW_FOR_OLD_READINGS_S, feature_drift_every=drift_every)
    cmd = infer_cmd(f"bench-infer-{uuid.uuid4().hex}", 0, 3)
    subprocess.run(cmd, env=env, check=True, cwd=ROOT, stderr=subprocess.DEVNULL)
    stamps = [p for _, p in read_predicted_ts(settings, n)]
    if len(stamps) < n:
        raise SystemExit(f"infer produced {len(stamps)} of {n} predictions")
    return len(stamps) / ((max(stamps) - min(stamps)) / 1000)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def started_following(
    cmd: list[str], env: dict[str, str], cwd: Path = ROOT
) -> subprocess.Popen[str]:
    """Start a worker and return once it owns its partitions (its "assigned" log line)."""
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if "assigned" in line:
            # Keep reading its log, so a full pipe never blocks the worker.
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc
    raise SystemExit(f"{cmd[3]} exited with {proc.wait()} before owning its partitions")


def produce_steadily(settings: Settings, rate: int, seconds: float) -> int:
    """Produce readings at ``rate`` per second for ``seconds``, ts set when sent; the count."""
    p = producer(settings)
    sent = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        due = int(elapsed * rate)
        while sent < due:
            p.send(
                settings.readings_topic, key=f"sensor-{sent % 100}".encode(), value=reading(sent)
            )
            sent += 1
        time.sleep(0.002)
    p.flush()
    p.close()
    return sent


def latency_run(base: Settings, rate: int, seconds: float) -> None:
    uid = uuid.uuid4().hex[:8]
    settings = fresh_topics(base, f"bench-live-readings-{uid}")
    port = free_port()
    proc = started_following(infer_cmd(f"bench-live-{uid}", port, 5), env_for(settings))
    sent = produce_steadily(settings, rate, seconds)
    time.sleep(1.5)
    metrics = Page.parse(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode())
    proc.wait(timeout=120)
    pairs = read_predicted_ts(settings, sent)
    lat = sorted(pt - et for et, pt in pairs)
    q = statistics.quantiles(lat, n=100)
    buckets = metrics.buckets("riverflow_end_to_end_latency_seconds")
    h50, h99 = (quantile(p, buckets, {}) or 0.0 for p in (0.5, 0.99))
    print(
        f"latency at {rate}/s for {seconds:.0f}s ({len(pairs)}/{sent} predictions): "
        f"predicted_ts - event_ts p50 {q[49]:.0f} ms, p99 {q[98]:.0f} ms; "
        f"histogram (after flush) p50 ~{h50 * 1000:.0f} ms, p99 ~{h99 * 1000:.0f} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--readings", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=1, help="throughput runs of each loop")
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--rate", type=int, default=2000, help="readings/s for the latency run")
    ap.add_argument("--seconds", type=float, default=30.0, help="length of the latency run")
    ap.add_argument(
        "--drift-every",
        type=int,
        default=Settings.model_fields["feature_drift_every"].default,
        help="feature_drift_every for the infer runs (default: the setting's default)",
    )
    args = ap.parse_args()
    base = load_settings(partitions=args.partitions)
    topic = f"bench-readings-{args.readings}x{FEATURES}"
    preproduce(replace_topics(base, topic, "pre"), args.readings)

    bare: list[float] = []
    infer: list[float] = []
    for _ in range(args.repeat):  # interleaved, so a noisy neighbour hits both alike
        bare.append(bare_loop(fresh_topics(base, topic), args.readings))
        print(f"bare kafka-python loop: {bare[-1]:,.0f} events/s")
        infer.append(infer_run(fresh_topics(base, topic), args.readings, args.drift_every))
        print(f"riverflow infer logreg: {infer[-1]:,.0f} events/s")
    b, i = statistics.median(bare), statistics.median(infer)
    print(f"median of {args.repeat}: bare {b:,.0f}/s, infer {i:,.0f}/s, ratio {i / b:.2f}")
    latency_run(base, args.rate, args.seconds)


if __name__ == "__main__":
    main()
