"""The models and history topics as ``riverflow models`` sees them: read whole, written atomically.

Reading assigns every partition (no group), reads up to the end offsets and folds the records
by key (a tombstone removes its key), so what is returned is what compaction will keep. Writing
is one Kafka transaction per command, under a transactional id of its own (never the learner's,
which would fence it): the new version lands on the models and history topics together, with
the tombstone of the version leaving the history window, or not at all.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from riverflow.errors import BrokerError
from riverflow.online_model.history import history_records, parse_history_key, pin_key
from riverflow.settings import Settings
from riverflow.topics import MODELS_MAX_MESSAGE_BYTES
from riverflow.transport import Clients, Record, clients_for, topic_partitions
from riverflow.transport.errors import TransportError

# A topic being read that yields nothing for this long has a sick broker.
READ_TIMEOUT_S = 60.0

Write = tuple[str, bytes, bytes | None]  # topic, key, value (None: a tombstone)


@dataclass
class Stored:
    """What the two topics hold: the models topic's latest value per key, and each model's
    versions in the history."""

    models: dict[bytes, bytes]
    history: dict[str, dict[int, bytes]]

    def latest(self, name: str) -> bytes | None:
        return self.models.get(name.encode())

    def pin(self, name: str) -> bytes | None:
        return self.models.get(pin_key(name))

    def versions(self, name: str) -> dict[int, bytes]:
        return self.history.get(name, {})

    def names(self) -> list[str]:
        """Every model with a snapshot or a history (pins alone do not make a model)."""
        pins = {pin_key(n) for n in self.history} | {k for k in self.models if k.endswith(b"@pin")}
        found = {k.decode(errors="replace") for k in self.models if k not in pins}
        return sorted(found | set(self.history))


def read_whole(
    clients: Clients, settings: Settings, topic: str, max_record_bytes: int | None = None
) -> Iterator[Record]:
    """Every record of ``topic`` up to its end offsets at the call, partition by partition in
    offset order, without a group."""
    consumer = clients.consumer(None, max_record_bytes=max_record_bytes)
    try:
        tps = topic_partitions(consumer, topic)
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        ends = consumer.end_offsets(tps)
        deadline = time.monotonic() + READ_TIMEOUT_S
        while not all((consumer.position(tp) or 0) >= ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise BrokerError(f"{topic}: nothing read for {READ_TIMEOUT_S:g}s before its end")
            for records in consumer.poll_batch(0.5).values():
                deadline = time.monotonic() + READ_TIMEOUT_S
                yield from records
    finally:
        consumer.close(settings.shutdown_timeout_s)


class ModelStore:
    def __init__(self, settings: Settings, clients: Clients | None = None) -> None:
        self.settings = settings
        self.clients = clients or clients_for(settings)

    def read(self) -> Stored:
        s = self.settings
        models = self._read_topic(s.models_topic)
        history: dict[str, dict[int, bytes]] = {}
        for key, value in self._read_topic(s.models_history_topic).items():
            parsed = parse_history_key(key)
            if parsed is not None:
                history.setdefault(parsed[0], {})[parsed[1]] = value
        return Stored(models, history)

    def _read_topic(self, topic: str) -> dict[bytes, bytes]:
        latest: dict[bytes, bytes] = {}
        for r in read_whole(self.clients, self.settings, topic, MODELS_MAX_MESSAGE_BYTES):
            if r.key is None:
                continue
            if r.value is None:
                latest.pop(r.key, None)
            else:
                latest[r.key] = r.value
        return latest

    def write(self, writes: Sequence[Write]) -> None:
        """Every write in one transaction; raises :class:`TransportError` when it failed."""
        timeout_s = self.settings.shutdown_timeout_s
        producer = self.clients.producer(
            transactional_id=f"riverflow-models-{uuid.uuid4().hex}",
            max_request_bytes=MODELS_MAX_MESSAGE_BYTES,
            linger_ms=0,
        )
        errors: list[TransportError] = []

        def delivered(error: TransportError | None) -> None:
            if error is not None:
                errors.append(error)

        try:
            producer.init_transactions(timeout_s)
            producer.begin_transaction()
            for topic, key, value in writes:
                producer.send(topic, key, value, on_delivery=delivered)
            producer.commit_transaction(timeout_s)
        finally:
            producer.close(timeout_s)
        if errors:
            raise errors[0]

    def version_writes(self, name: str, version: int, blob: bytes) -> list[Write]:
        """A new version of ``name``: the models topic, the history and its cleanup."""
        s = self.settings
        return [
            (s.models_topic, name.encode(), blob),
            *(
                (s.models_history_topic, k, v)
                for k, v in history_records(name, version, blob, s.model_history)
            ),
        ]
