"""Reads one model's snapshots from the compacted models topic, for hot swapping.

A worker-private consumer that is *assigned* every partition of the models topic (no group: each
inference process needs every snapshot, and must not rebalance the readings group). It first
reads the topic up to its end offsets and keeps the newest snapshot of its model that the caller
does not refuse, then returns newer ones from non-blocking polls between batches. It receives
its consumer (:func:`feed_consumer`) and is used from the worker thread only.

Every process that reads the models topic reads it here, so this is where a tombstone (the
model deleted) is logged, at WARNING.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence

from riverflow.online_model.history import pin_key
from riverflow.topics import MODELS_MAX_MESSAGE_BYTES
from riverflow.transport import Clients, Consumer, Record, topic_partitions
from riverflow.transport.errors import Timeout

log = logging.getLogger(__name__)

# Reading a compacted models topic takes well under a second; more means a sick broker, and
# the worker then starts with what it has: later records still arrive through poll().
CATCH_UP_TIMEOUT_S = 30.0


def feed_consumer(clients: Clients) -> Consumer:
    """The assign-only reader a :class:`SnapshotFeed` needs: one snapshot can be as large as
    the models topic allows, and is fetched whole."""
    return clients.consumer(max_record_bytes=MODELS_MAX_MESSAGE_BYTES)


class SnapshotFeed:
    def __init__(self, consumer: Consumer, topic: str, model_name: str) -> None:
        self.topic = topic
        self._key = model_name.encode()
        self._pin_key = pin_key(model_name)
        # The model's pin record as of latest(): None when there is none (or it was deleted).
        self.pin: bytes | None = None
        self._consumer = consumer
        self.refused_newer = 0

    def latest(
        self,
        refuse: Callable[[bytes], str | None] = lambda value: None,
        timeout_s: float = CATCH_UP_TIMEOUT_S,
        complete: bool = False,
    ) -> bytes | None:
        """Assign the topic, read it to its end offsets and return the newest snapshot value of
        this model that ``refuse`` accepts (it returns a refusal reason, or None); ``None`` if
        there is none, or the model was deleted after it. A hostile or broken record on the
        topic therefore costs a restart nothing but a log line; :attr:`refused_newer` says how
        many refused records came after the one returned (or after the deletion). Later
        snapshots come from :meth:`poll`.

        Past ``timeout_s`` it returns what it has read, or with ``complete`` raises
        :class:`~riverflow.transport.errors.Timeout`: a learner must resume from the very last
        snapshot, never from an older one that would make it learn again what the newer one
        holds."""
        c = self._consumer
        tps = topic_partitions(c, self.topic)
        c.assign(tps)
        for tp, offset in c.beginning_offsets(tps).items():
            c.seek(tp, offset)
        ends = c.end_offsets(tps)
        last: bytes | None = None
        refused: Counter[str] = Counter()
        deadline = time.monotonic() + timeout_s
        while any((c.position(tp, 1.0) or 0) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                if complete:
                    raise Timeout(f"{self.topic} not read to its end in {timeout_s:g}s")
                log.warning(
                    "reading %s to its end took over %.0fs: starting with what was read",
                    self.topic,
                    timeout_s,
                )
                break
            for records in c.poll_batch(0.2).values():
                for record in self._mine(records):
                    if record.key == self._pin_key:
                        self.pin = record.value
                    elif record.value is None:
                        last, self.refused_newer = None, 0
                    elif (reason := refuse(record.value)) is None:
                        last, self.refused_newer = record.value, 0
                    else:
                        refused[reason] += 1
                        self.refused_newer += 1
        if refused:
            log.warning(
                "passed over %d snapshots of %s on %s that this process refuses (%s)",
                sum(refused.values()),
                self._key.decode(),
                self.topic,
                ", ".join(f"{reason}: {n}" for reason, n in sorted(refused.items())),
            )
        return last

    def poll(self) -> list[bytes | None]:
        """Snapshot values of this model and its pin records published since the last call,
        oldest first (``None`` for a tombstone); never blocks (timeout 0), so it can run
        between every batch."""
        return [
            record.value
            for records in self._consumer.poll_batch(0).values()
            for record in self._mine(records)
        ]

    def _mine(self, records: Sequence[Record]) -> list[Record]:
        """This model's records and its pin records; a tombstone of the model is logged."""
        keys = (self._key, self._pin_key)
        mine = [r for r in records if r.key in keys]
        for r in mine:
            if r.value is None and r.key == self._key:
                log.warning(
                    "model %s was deleted: tombstone on %s partition %d offset %d",
                    self._key.decode(),
                    r.topic,
                    r.partition,
                    r.offset,
                )
        return mine

    def close(self, timeout_s: float) -> None:
        self._consumer.close(timeout_s)
