"""``/healthz`` and ``/readyz`` beside ``/metrics``, on every worker's metrics port.

- ``/healthz`` (liveness): 200 while the worker's loop has turned within ``health_stall_s``
  (each turn checks :attr:`riverflow.lifecycle.Stopper.stopping`), or while the worker is cut
  off from Kafka: waiting out a broker outage is what it should do, and a restart would not
  help. 503 otherwise: the loop is stuck, restart it.
- ``/readyz`` (readiness): 200 once the worker says it has nothing missing (its partitions or
  its standby role, its model, the broker); 503 with a one-line reason otherwise.

:func:`riverflow.metrics.serve` answers both on the metrics server's threads, which read only
plain attributes the worker sets.

>>> from riverflow.lifecycle import Stopper
>>> clock = iter([0.0, 0.0, 5.0, 100.0]).__next__
>>> health = Health(60, Stopper(clock=clock), lambda: False)
>>> health.ready()
(False, 'starting')
>>> _ = health.stopper.stopping   # the loop turns at 0 s
>>> health.live()
(True, 'ok: the loop turned 5s ago')
>>> health.live()
(False, 'stalled: the loop has not turned for 100s')
"""

from __future__ import annotations

from collections.abc import Callable

from riverflow.lifecycle import Stopper


class Health:
    def __init__(
        self,
        stall_s: float,
        stopper: Stopper,
        cut_off: Callable[[], bool],
    ) -> None:
        self.stall_s = stall_s
        self.stopper = stopper
        self.cut_off = cut_off
        # Why the worker is not ready (None: ready); the worker replaces it once it is built.
        self.not_ready: Callable[[], str | None] = lambda: "starting"

    def live(self) -> tuple[bool, str]:
        idle = self.stopper.clock() - self.stopper.turned_at
        if idle <= self.stall_s:
            return True, f"ok: the loop turned {idle:.0f}s ago"
        if self.cut_off():
            return True, f"ok: waiting for Kafka (the loop turned {idle:.0f}s ago)"
        return False, f"stalled: the loop has not turned for {idle:.0f}s"

    def ready(self) -> tuple[bool, str]:
        try:
            reason = self.not_ready()
        except Exception as exc:  # a probe must answer, whatever the worker is doing
            reason = f"readiness unknown: {exc}"
        return (True, "ready") if reason is None else (False, reason)
