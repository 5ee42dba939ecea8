"""riverflow's peers, each run in its own process by ``benchmarks/peers.py``.

    python benchmarks/peer_contestants.py NAME --bootstrap-servers HOST:PORT --group G --count N
        [--input T --output T | --predictions T --feedback T]

Inference (one JSON output per reading on ``--output``, exit after ``--count`` outputs), all with
the model of riverflow's ``logreg`` preset (StandardScaler | LogisticRegression) and riverflow's
predict step (``riverflow.online_model.tasks.predict``: ``predict_proba_one``, the most likely
class):

- ``infer-quix``: a Quix Streams application, ``apply`` then ``to_topic``, Quix's defaults
  (JSON serializers, at-least-once, commit every 5 s) but for reading from the earliest offset;
- ``infer-confluent``: a bare confluent-kafka loop: ``consume`` a batch, ``json.loads``, predict,
  ``json.dumps``, ``produce``; ``flush`` and a synchronous ``commit`` per batch;
- ``infer-kafka-python``: the same loop on kafka-python with riverflow's client settings.

Learning (``learn-confluent``, ``learn-kafka-python``): one assign-only consumer on both topics
from the start, ``learner_throughput.JoinAndLearn`` on every record; prints the learned count
and rate as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from typing import Any

from learner_throughput import JoinAndLearn, bare_loop

from riverflow.online_model.presets import resolve
from riverflow.online_model.tasks import predict
from riverflow.settings import load_settings
from riverflow.transport.kafka_python import kafka_consumer as consumer
from riverflow.transport.kafka_python import kafka_producer as producer

MODEL = resolve("logreg")


def output(model: Any, reading: dict[str, Any]) -> dict[str, Any]:
    """What each peer writes for one reading (riverflow also echoes the features)."""
    label, scores = predict(model, MODEL.task, reading["features"])
    return {
        "event_id": reading["event_id"],
        "sensor_id": reading["sensor_id"],
        "event_ts": reading["ts"],
        "prediction": label,
        "scores": scores,
    }


def confluent_config(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    """librdkafka settings matching riverflow's kafka-python ones (its kafka_python transport)."""
    return {"bootstrap.servers": args.bootstrap_servers, **extra}


def infer_quix(args: argparse.Namespace) -> None:
    from quixstreams import Application

    model = MODEL.build()
    with tempfile.TemporaryDirectory() as state_dir:
        app = Application(
            broker_address=args.bootstrap_servers,
            consumer_group=args.group,
            auto_offset_reset="earliest",
            state_dir=state_dir,
            loglevel="WARNING",
        )
        sdf = app.dataframe(app.topic(args.input))
        sdf = sdf.apply(lambda reading: output(model, reading))
        sdf.to_topic(app.topic(args.output))
        app.run(count=args.count, collect=False)


def infer_confluent(args: argparse.Namespace) -> None:
    from confluent_kafka import Consumer, KafkaException, Producer

    c = Consumer(
        confluent_config(
            args,
            **{
                "group.id": args.group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
            },
        )
    )
    p = Producer(
        confluent_config(args, **{"acks": "all", "enable.idempotence": True, "linger.ms": 5})
    )
    c.subscribe([args.input])
    model = MODEL.build()
    seen = 0
    try:
        while seen < args.count:
            batch = c.consume(num_messages=args.batch, timeout=0.5)
            for m in batch:
                if m.error():
                    raise KafkaException(m.error())
                value = json.dumps(output(model, json.loads(m.value())))
                p.produce(args.output, value, key=m.key())
            if batch:
                seen += len(batch)
                p.flush()
                c.commit(asynchronous=False)
    finally:
        c.close()


def infer_kafka_python(args: argparse.Namespace) -> None:
    settings = load_settings(bootstrap_servers=args.bootstrap_servers, max_poll_records=args.batch)
    c = consumer(settings, args.input, group_id=args.group)
    p = producer(settings)
    model = MODEL.build()
    seen = 0
    try:
        while seen < args.count:
            batch = c.poll(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    value = json.dumps(output(model, json.loads(r.value))).encode()
                    p.send(args.output, key=r.key, value=value)
                seen += len(records)
            if batch:
                p.flush()
                c.commit()
    finally:
        p.close()
        c.close()


def learn_confluent(args: argparse.Namespace) -> JoinAndLearn:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

    c = Consumer(confluent_config(args, **{"group.id": args.group, "enable.auto.commit": False}))
    topics = (args.predictions, args.feedback)
    c.assign(
        [
            TopicPartition(topic, p, OFFSET_BEGINNING)
            for topic in topics
            for p in sorted(c.list_topics(topic, timeout=10).topics[topic].partitions)
        ]
    )
    join = JoinAndLearn()
    try:
        while join.learned < args.count:
            for m in c.consume(num_messages=args.batch, timeout=0.5):
                if m.error():
                    raise KafkaException(m.error())
                if m.topic() == args.predictions:
                    join.prediction(m.value())
                else:
                    join.feedback(m.value())
        return join
    finally:
        c.close()


def learn_kafka_python(args: argparse.Namespace) -> JoinAndLearn:
    settings = load_settings(
        bootstrap_servers=args.bootstrap_servers,
        max_poll_records=args.batch,
        predictions_topic=args.predictions,
        feedback_topic=args.feedback,
    )
    return bare_loop(settings, args.count)


INFER: dict[str, Callable[[argparse.Namespace], None]] = {
    "infer-quix": infer_quix,
    "infer-confluent": infer_confluent,
    "infer-kafka-python": infer_kafka_python,
}
LEARN: dict[str, Callable[[argparse.Namespace], JoinAndLearn]] = {
    "learn-confluent": learn_confluent,
    "learn-kafka-python": learn_kafka_python,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("name", choices=[*INFER, *LEARN])
    ap.add_argument("--bootstrap-servers", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--count", type=int, required=True, help="outputs (or learned events)")
    ap.add_argument("--batch", type=int, default=500, help="records per poll at most")
    ap.add_argument("--input", help="readings topic (inference)")
    ap.add_argument("--output", help="outputs topic (inference)")
    ap.add_argument("--predictions", help="predictions topic (learning)")
    ap.add_argument("--feedback", help="feedback topic (learning)")
    args = ap.parse_args()
    if args.name in INFER:
        INFER[args.name](args)
    else:
        join = LEARN[args.name](args)
        print(json.dumps({"learned": join.learned, "events_per_s": join.rate()}))


if __name__ == "__main__":
    main()
