"""Graceful stop for long-running workers: signals and idle time end the loop, never mid-batch."""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType

log = logging.getLogger(__name__)


class Stopper:
    """Turns SIGTERM/SIGINT and ``--idle-exit`` into a flag the worker loop checks between batches.

    The loop finishes its batch, then flushes, commits and publishes before it returns; a second
    signal while stopping is ignored so the shutdown work is not interrupted halfway.
    """

    def __init__(self, idle_exit_s: float | None = None) -> None:
        self.idle_exit_s = idle_exit_s
        self.reason: str | None = None
        self._event = threading.Event()
        self._last_input = time.monotonic()

    def install(self) -> Stopper:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_signal)
        return self

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if not self._event.is_set():
            log.info("received %s: finishing the batch, then stopping", signal.Signals(signum).name)
        self.stop(signal.Signals(signum).name)

    def stop(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self._event.set()

    def saw_input(self, count: int) -> None:
        if count:
            self._last_input = time.monotonic()

    @property
    def stopping(self) -> bool:
        if self._event.is_set():
            return True
        if self.idle_exit_s is not None and time.monotonic() - self._last_input > self.idle_exit_s:
            log.info("no input for %.1fs (--idle-exit): stopping", self.idle_exit_s)
            self.stop("idle")
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` unless asked to stop; True if stopping."""
        return self._event.wait(seconds)
