"""Whether a process reaches Kafka: one definition for every worker and producer.

*Connected* means that at least one of the clients a process watches holds an open connection
to a broker (the transport's ``connected()``); the watched clients are the ones
that talk to Kafka all the time (a worker's consumers, a producer that sends without pause), so
"no connection" means the broker is away, not that a client is idle. Both clients reconnect by
themselves, with a bounded backoff (:data:`riverflow.settings.RECONNECT_BACKOFF_MAX_MS`).

A :class:`BrokerLink` samples its clients from a small thread, so its state stays current while
the worker's own thread waits in a flush or a commit for the broker to come back. Each change of
state sets the ``riverflow_kafka_connected`` gauge and logs one line: never one per retry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from prometheus_client import Gauge

log = logging.getLogger(__name__)

# How often the clients are looked at: a flag read per connection, so sampling costs nothing.
SAMPLE_S = 0.5
# A client replacing its only connection (an idle close, a leader move) has none for a few
# milliseconds; an outage is a broker unreachable for longer than this.
DOWN_AFTER_S = 2.0

Probe = Callable[[], bool]


class Watched(Protocol):
    """A transport consumer or producer."""

    def connected(self) -> bool: ...


class BrokerLink:
    """The connected state of one process, from the clients it :meth:`watch`\\ es.

    ``connected`` is ``None`` until the first decision, then ``True`` or ``False``. The first
    decision is not logged (the process says what it connected to itself); every later change is,
    once, and the gauge (when given) follows it.
    """

    def __init__(
        self,
        where: str,
        gauge: Gauge | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.where = where
        self.connected: bool | None = None
        self._gauge = gauge
        self._clock = clock
        self._probes: dict[int, Probe] = {}
        self._lock = threading.Lock()
        self._unreachable_since: float | None = None
        self._down_since = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, client: Watched) -> None:
        """Count ``client``'s connections from now on."""
        self.watch_probe(id(client), client.connected)

    def watch_probe(self, key: int, probe: Probe) -> None:
        with self._lock:
            self._probes[key] = probe

    def forget(self, client: Watched) -> None:
        """Stop counting ``client`` (before it is closed)."""
        with self._lock:
            self._probes.pop(id(client), None)

    def sample(self) -> bool | None:
        """Look at the clients once and apply a change of state; returns the state."""
        with self._lock:
            if not self._probes:
                return self.connected
            live = any(probe() for probe in self._probes.values())
            now = self._clock()
            if live:
                self._unreachable_since = None
                self._change(True, now)
            else:
                if self._unreachable_since is None:
                    self._unreachable_since = now
                if now - self._unreachable_since >= DOWN_AFTER_S:
                    self._change(False, self._unreachable_since)
            return self.connected

    def _change(self, connected: bool, at: float) -> None:
        before, self.connected = self.connected, connected
        if before == connected:
            return
        if self._gauge is not None:
            self._gauge.set(1 if connected else 0)
        if not connected:
            self._down_since = at
            log.warning(
                "Kafka unreachable at %s: waiting for it, reconnecting every second or so",
                self.where,
            )
        elif before is False:
            log.warning(
                "Kafka reachable again at %s after %.1fs",
                self.where,
                self._clock() - self._down_since,
            )

    # -- the sampling thread --------------------------------------------------------------------

    def start(self) -> BrokerLink:
        """Sample every :data:`SAMPLE_S` from a daemon thread until :meth:`close`."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="riverflow-kafka-link", daemon=True
            )
            self._thread.start()
        return self

    def _run(self) -> None:
        failed = False
        while not self._stop.wait(SAMPLE_S):
            try:
                self.sample()
            except Exception as exc:  # a client mid-close; say so once, keep sampling
                if not failed:
                    log.error("could not read the Kafka clients' connection state: %r", exc)
                failed = True

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(SAMPLE_S * 4)
