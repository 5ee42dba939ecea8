"""Reads one model's snapshots from the compacted models topic, for hot swapping.

A worker-private consumer that is *assigned* every partition of the models topic (no group: each
inference process needs every snapshot, and must not rebalance the readings group). It first
reads the topic up to its end offsets and keeps the last snapshot of its model, then returns
newer ones from non-blocking polls between batches. Like every kafka-python client it is used
from the worker thread only.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from riverflow.clients import consumer, topic_partitions
from riverflow.settings import Settings
from riverflow.topics import MODELS_MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

# Reading a compacted models topic takes well under a second; more means a sick broker, and
# the worker then starts with what it has: later records still arrive through poll().
CATCH_UP_TIMEOUT_S = 30.0


class SnapshotFeed:
    def __init__(self, settings: Settings, model_name: str) -> None:
        self.topic = settings.models_topic
        self._key = model_name.encode()
        self._consumer = consumer(
            settings,
            group_id=None,
            # One snapshot can be as large as the topic allows; fetch it whole.
            max_partition_fetch_bytes=MODELS_MAX_MESSAGE_BYTES,
            fetch_max_bytes=MODELS_MAX_MESSAGE_BYTES,
        )

    def latest(self, timeout_s: float = CATCH_UP_TIMEOUT_S) -> bytes | None:
        """Assign the topic, read it to its end offsets and return the last snapshot value of
        this model (``None`` if it has none yet). Later snapshots come from :meth:`poll`."""
        c = self._consumer
        tps = topic_partitions(c, self.topic)
        c.assign(tps)
        c.seek_to_beginning(*tps)
        ends: dict[Any, int] = c.end_offsets(tps)
        last: bytes | None = None
        deadline = time.monotonic() + timeout_s
        while any(c.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                log.warning(
                    "reading %s to its end took over %.0fs: starting with what was read",
                    self.topic,
                    timeout_s,
                )
                break
            for records in c.poll(timeout_ms=200).values():
                for record in records:
                    if record.key == self._key:
                        last = record.value
        return last

    def poll(self) -> list[bytes | None]:
        """Snapshot values of this model published since the last call, oldest first; never
        blocks (timeout 0), so it can run between every batch."""
        return [
            record.value
            for records in self._consumer.poll(timeout_ms=0).values()
            for record in records
            if record.key == self._key
        ]

    def close(self, timeout_s: float) -> None:
        self._consumer.close(autocommit=False, timeout_ms=int(timeout_s * 1000))
