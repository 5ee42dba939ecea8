"""Learner throughput against a bare kafka-python join-and-learn loop, on a real broker.

    python benchmarks/learner_throughput.py [--events 100000] [--partitions 3] [--repeat 1]

1. Produces ``--events`` predictions (8 features, as inference writes them) and their labels
   (each sent 100 events after its prediction) to two fresh topics.
2. On those same two topics, in one run:
   (a) a bare loop: one assign-only consumer on both topics from the start, ``json.loads``,
       a dict join by event_id in both directions, and River's ``learn_one`` on
       StandardScaler | LogisticRegression (what the logreg preset builds);
   (b) ``riverflow learn --model logreg --idle-exit 3`` as a subprocess, on a fresh models topic.
   Both rates count joined-and-learned events per second from the 1,000th learned event to the
   last, so startup and the idle exit are left out: (a) timed in the loop, (b) from the
   ``created_ts`` and ``learned_count`` of its snapshots (one every 1,000 learned events).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from kafka import TopicPartition
from river import linear_model, preprocessing

from riverflow.online_model.snapshot import read_header
from riverflow.schemas import Reading, feedback_value, now_ms, prediction_value
from riverflow.settings import Settings, load_settings
from riverflow.topics import create_topics
from riverflow.transport.kafka_python import kafka_consumer as consumer
from riverflow.transport.kafka_python import kafka_producer as producer

ROOT = Path(__file__).resolve().parents[1]
FEATURES = 8
LABEL_LAG = 100  # events between a prediction and its label
WARMUP = 1000  # learned events left out of both rates (consumer start, first fetches)


def fresh(settings: Settings, uid: str) -> Settings:
    names = {
        "readings_topic": f"bench-learn-readings-{uid}",
        "predictions_topic": f"bench-learn-predictions-{uid}",
        "feedback_topic": f"bench-learn-feedback-{uid}",
        "models_topic": f"bench-learn-models-{uid}",
        "dead_letters_topic": f"bench-learn-dead-letters-{uid}",
    }
    topics = settings.model_copy(update=names)
    create_topics(topics)
    return topics


def preproduce(settings: Settings, n: int) -> None:
    rng = random.Random(42)
    p = producer(settings)
    started = time.perf_counter()
    labels: list[tuple[bytes, bytes]] = []
    ts = now_ms()
    for i in range(n + LABEL_LAG):
        if i < n:
            x = {f"f{j}": rng.gauss(0.0, 1.0) for j in range(FEATURES)}
            event_id, key = f"e{i}", f"sensor-{i % 100}".encode()
            reading = Reading(event_id=event_id, sensor_id=key.decode(), ts=ts + i, features=x)
            scores = {"True": 0.6, "False": 0.4}
            value = prediction_value(reading, "logreg", 0, True, scores, ts + i)
            p.send(settings.predictions_topic, key=key, value=value)
            label = sum(x.values()) > 0
            labels.append((key, feedback_value(event_id, key.decode(), ts + i + 1, label)))
        if i >= LABEL_LAG:
            key, value = labels[i - LABEL_LAG]
            p.send(settings.feedback_topic, key=key, value=value)
    p.flush()
    p.close()
    print(f"produced {n} predictions + {n} labels in {time.perf_counter() - started:.1f}s")


class JoinAndLearn:
    """The bare loop's work per record: ``json.loads``, a dict join by event_id in both
    directions, River's ``learn_one`` on StandardScaler | LogisticRegression (what the logreg
    preset builds), and the rate from the ``WARMUP``-th learned event on."""

    def __init__(self) -> None:
        self.model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
        self.features: dict[str, dict[str, float]] = {}
        self.labels: dict[str, bool] = {}
        self.learned = 0
        self._start = self._last = 0.0  # perf_counter at the WARMUP-th and the last learned

    def prediction(self, raw: bytes) -> None:
        v = json.loads(raw)
        y = self.labels.pop(v["event_id"], None)
        if y is None:
            self.features[v["event_id"]] = v["features"]
        else:
            self._learn(v["features"], y)

    def feedback(self, raw: bytes) -> None:
        v = json.loads(raw)
        x = self.features.pop(v["event_id"], None)
        if x is None:
            self.labels[v["event_id"]] = v["label"]
        else:
            self._learn(x, v["label"])

    def _learn(self, x: dict[str, float], y: bool) -> None:
        self.model.learn_one(x, y)
        self.learned += 1
        self._last = time.perf_counter()
        if self.learned == WARMUP:
            self._start = self._last

    def rate(self) -> float:
        """Learned events/s since the ``WARMUP``-th."""
        if not self._start:
            raise SystemExit(f"the rate counts from the {WARMUP}th learned event: learn more")
        return (self.learned - WARMUP) / (self._last - self._start)


def bare_loop(settings: Settings, n: int) -> JoinAndLearn:
    """The bare kafka-python loop over ``n`` events: the join with its count and rate."""
    c = consumer(settings, group_id=None)
    predictions_topic = settings.predictions_topic
    tps = [
        TopicPartition(topic, p)
        for topic in (predictions_topic, settings.feedback_topic)
        for p in sorted(c.partitions_for_topic(topic) or [])
    ]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    join = JoinAndLearn()
    try:
        while join.learned < n:
            for tp, records in c.poll(timeout_ms=500).items():
                learn = join.prediction if tp.topic == predictions_topic else join.feedback
                for r in records:
                    learn(r.value)
        return join
    finally:
        c.close()


def learner_run(
    settings: Settings, n: int, extra_args: Sequence[str] = (), root: Path = ROOT
) -> float:
    """Joined-and-learned events/s of ``riverflow learn`` (imported from ``root``), from its
    snapshot headers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIVERFLOW_")}
    for key in ("bootstrap_servers", "predictions_topic", "feedback_topic", "models_topic"):
        env[f"RIVERFLOW_{key.upper()}"] = str(getattr(settings, key))
    env["RIVERFLOW_DEAD_LETTERS_TOPIC"] = settings.dead_letters_topic
    env["RIVERFLOW_MODEL_SIGNING_KEY"] = secrets.token_hex(32)  # the learner signs, as deployed
    env["PYTHONPATH"] = str(root)
    cmd = [sys.executable, "-m", "riverflow", "learn", "--model", "logreg", "--idle-exit", "3"]
    cmd += ["--metrics-port", "0", "--group-id", f"bench-learn-{uuid.uuid4().hex}", *extra_args]
    subprocess.run(cmd, env=env, check=True, cwd=root, stderr=subprocess.DEVNULL)
    return snapshot_rate(settings, n)


def snapshot_rate(settings: Settings, n: int) -> float:
    """Learned events/s from the learner's snapshot headers, the ``WARMUP``-th event on; all
    ``n`` events must have been learned by the last snapshot."""
    c = consumer(settings, group_id=None)
    tp = TopicPartition(settings.models_topic, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    end = c.end_offsets([tp])[tp]
    marks: list[tuple[int, int]] = []  # (learned_count, created_ts)
    while c.position(tp) < end:
        for records in c.poll(timeout_ms=500).values():
            for r in records:
                header = read_header(r.value)[0]
                marks.append((header.learned_count, header.created_ts))
    c.close()
    if not marks or marks[-1][0] != n:
        raise SystemExit(f"riverflow learn learned {marks[-1][0] if marks else 0} of {n} events")
    first = next(m for m in marks if m[0] >= WARMUP)
    # The final snapshot is normally the one published on shutdown, after the idle exit: stop
    # at the one before it, so the idle wait is not counted as learning time.
    last = marks[-2]
    return (last[0] - first[0]) / ((last[1] - first[1]) / 1000)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=1, help="runs of each loop, interleaved")
    args = ap.parse_args()
    base = load_settings(partitions=args.partitions)
    topics = fresh(base, uuid.uuid4().hex[:8])
    preproduce(topics, args.events)
    bare: list[float] = []
    learn: list[float] = []
    for _ in range(args.repeat):  # interleaved, so a noisy neighbour hits both alike
        bare.append(bare_loop(topics, args.events).rate())
        print(f"bare join + learn_one loop: {bare[-1]:,.0f} events/s")
        models = topics.model_copy(update={"models_topic": f"{topics.models_topic}-{len(learn)}"})
        create_topics(models)
        learn.append(learner_run(models, args.events))
        print(f"riverflow learn logreg:     {learn[-1]:,.0f} events/s")
    b, lr = statistics.median(bare), statistics.median(learn)
    print(f"median of {args.repeat}: bare {b:,.0f}/s, learn {lr:,.0f}/s, ratio {lr / b:.2f}")


if __name__ == "__main__":
    main()
