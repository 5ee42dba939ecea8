"""Helpers for the chaos suite: a steady producer, settled topics, strict /metrics parsing,
topic configs. The integration kit (``tests/integration``) provides the rest, a broker that
may be killed included (``outage_support``)."""

from __future__ import annotations

import threading
import time
import urllib.request

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from prometheus_client.parser import text_string_to_metric_families

from riverflow.schemas import dumps, now_ms
from riverflow.scrape import Page
from riverflow.settings import Settings, kafka_kwargs
from riverflow.transport.kafka_python import kafka_admin as admin
from riverflow.transport.kafka_python import kafka_producer as producer
from tests.integration.inference_support import reading
from tests.integration.kit import WorkerProcess, value


def strict_page(worker: WorkerProcess) -> Page:
    """The worker's /metrics page, which must answer and parse (a parse error fails the test)."""
    url = f"http://127.0.0.1:{worker.port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    families = list(text_string_to_metric_families(text))
    assert families, f"{worker.command}: empty /metrics page"
    return Page.parse(text)


def assert_alive(*workers: WorkerProcess) -> None:
    for w in workers:
        assert w.proc.poll() is None, f"{w.command} exited {w.proc.returncode}:\n{w.text()[-3000:]}"


def set_topic_config(settings: Settings, topic: str, **configs: str) -> None:
    """Alter a topic's configs (``max_message_bytes="..."`` sets ``max.message.bytes``)."""
    client = admin(settings)
    try:
        resource = ConfigResource(
            ConfigResourceType.TOPIC,
            topic,
            configs={k.replace("_", "."): v for k, v in configs.items()},
        )
        client.alter_configs([resource])
    finally:
        client.close()


def settled(settings: Settings, topic: str) -> bool:
    """True when no transaction is open on ``topic``: read_committed readers see its end."""
    clients = [
        KafkaConsumer(**kafka_kwargs(settings), group_id=None, isolation_level=level)
        for level in ("read_committed", "read_uncommitted")
    ]
    try:
        tps = [TopicPartition(topic, p) for p in sorted(clients[0].partitions_for_topic(topic))]
        stable, end = (c.end_offsets(tps) for c in clients)
        return bool(stable == end)
    finally:
        for c in clients:
            c.close()


class Feeder(threading.Thread):
    """Sends readings ``e0``, ``e1``, ... at ``rate`` per second until :meth:`finish`, with a
    label for each on the feedback topic when ``labels``; features carry ``n`` for counting
    models. Sending until told to stop keeps data flowing through every fault a test injects,
    however slow the machine."""

    def __init__(self, settings: Settings, rate: float, *, labels: bool = False) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.rate = rate
        self.labels = labels
        self.sent = 0
        self.refused = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()

    @property
    def event_ids(self) -> set[str]:
        return {f"e{i}" for i in range(self.sent)}

    def run(self) -> None:
        s = self.settings
        p = producer(s)
        started = time.monotonic()
        try:
            while not self._halt.wait(max(0.0, started + self.sent / self.rate - time.monotonic())):
                i = self.sent
                value = reading(i, features={"n": float(i), "a": float(i % 10)})
                key = value["sensor_id"].encode()
                sends = [(s.readings_topic, value)]
                if self.labels:
                    label = {"event_id": value["event_id"], "sensor_id": value["sensor_id"],
                             "ts": now_ms(), "label": i % 3 == 0}  # fmt: skip
                    sends.append((s.feedback_topic, label))
                for topic, message in sends:
                    p.send(topic, key=key, value=dumps(message)).add_errback(self._refused)
                self.sent += 1
            p.flush()
        except BaseException as exc:  # reported by finish()
            self.error = exc
        finally:
            p.close()

    def _refused(self, exc: BaseException) -> None:
        self.refused += 1

    def finish(self, timeout: float = 120) -> int:
        """Stop sending, wait until everything sent is in Kafka; returns how many readings."""
        self._halt.set()
        self.join(timeout)
        assert not self.is_alive(), "the feeder did not finish"
        assert self.error is None, f"the feeder failed: {self.error!r}"
        assert self.refused == 0, f"Kafka refused {self.refused} of the feeder's records"
        return self.sent


def sample(page: Page, name: str, **labels: str) -> float:
    """A sample's value, which must be there (``name`` or ``name_total``)."""
    found = value(page, name, **labels)
    assert found is not None, f"no sample {name}{labels or ''} on the page"
    return found
