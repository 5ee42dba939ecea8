"""Graceful stop for long-running workers: signals and idle time end the loop, never mid-batch."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import select
import signal
import threading
import time
import weakref
from collections.abc import Callable
from types import FrameType

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Signals that arrived while the process was still starting (see hold_signals).
_held: list[int] = []


def hold_signals() -> None:
    """Hold SIGTERM/SIGINT until a :class:`Stopper` takes them over, instead of dying mid-import.

    A worker takes seconds to import on a loaded machine; an orchestrator that stops it then
    must still see a clean exit. The worker's Stopper delivers a held signal as soon as it is
    installed, so the worker stops before its first batch. Commands without a Stopper call
    :func:`release_signals`."""
    if threading.current_thread() is threading.main_thread():
        for sig in SIGNALS:
            signal.signal(sig, _hold)


def release_signals(deliver: bool = True) -> None:
    """Default signal handling again; a held signal takes effect now if ``deliver`` (not once
    the command is over: it is ending anyway)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        held = _held[:]
        _held.clear()
        for signum in held if deliver else ():
            signal.raise_signal(signum)


def _hold(signum: int, _frame: FrameType | None) -> None:
    _held.append(signum)


class Deadline:
    """One shutdown timeout shared by every close of a stop, from :meth:`start` on (each close
    still gets a moment: a client closed with no time at all cannot even say goodbye)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._at: float | None = None

    def start(self) -> None:
        self._at = time.monotonic() + self.seconds

    def left(self) -> float:
        if self._at is None:
            return self.seconds
        return max(0.1, self._at - time.monotonic())


class Stopper:
    """Turns SIGTERM/SIGINT and ``--idle-exit`` into a flag the worker loop checks between batches.

    The loop finishes its batch, then flushes, commits and publishes before it returns; a second
    signal while stopping is ignored so the shutdown work is not interrupted halfway.

    The signal handler takes no lock and writes no log: it runs in the main thread between two
    bytecodes, possibly while that thread holds the very lock it would wait for (a
    ``threading.Event``'s, inside :meth:`wait`), which hung the process for good. It sets a flag
    and writes a byte to a pipe that :meth:`wait` selects on; the loop logs the signal.

    ``--idle-exit`` counts from when the worker has its place in the group (:meth:`joined`), never
    from process start: joining a group whose crashed member has not timed out yet can take
    longer than the idle limit.
    """

    def __init__(
        self, idle_exit_s: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.idle_exit_s = idle_exit_s
        self.clock = clock
        self.reason: str | None = None
        self._requested = False
        self._noticed = False
        self._idle_since: float | None = None  # None until joined: not idle before that
        # When the loop last asked whether to stop: once per turn (riverflow/health.py).
        self.turned_at = clock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        weakref.finalize(self, _close, self._wake_r, self._wake_w)

    def install(self) -> Stopper:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                signal.signal(sig, self._on_signal)
            while _held:
                self._on_signal(_held.pop(0), None)
        return self

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stop(signal.Signals(signum).name)

    def stop(self, reason: str) -> None:
        """Ask the loop to stop (from any thread, or a signal handler)."""
        if self.reason is None:
            self.reason = reason
        if not self._requested:
            self._requested = True
            with contextlib.suppress(BlockingIOError):  # the pipe already holds a byte
                os.write(self._wake_w, b"\0")

    def joined(self) -> None:
        """The worker has its place in its group (partitions, or none as a standby): the idle
        clock starts now unless it already runs."""
        if self._idle_since is None:
            self._idle_since = self.clock()

    def saw_input(self, count: int) -> None:
        if count:
            self._idle_since = self.clock()

    @property
    def has_joined(self) -> bool:
        """Whether the worker has had its place in its group (see :meth:`joined`)."""
        return self._idle_since is not None

    @property
    def stopping(self) -> bool:
        """Checked by the worker loop once per turn (which :attr:`turned_at` records)."""
        self.turned_at = self.clock()
        if (
            not self._requested
            and self.idle_exit_s is not None
            and self._idle_since is not None
            and self.clock() - self._idle_since > self.idle_exit_s
        ):
            log.info("no input for %.1fs (--idle-exit): stopping", self.idle_exit_s)
            self.stop("idle")
        return self._notice()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` (``math.inf``: until a stop) unless asked to stop; True if
        stopping. A stop already requested returns at once: its byte stays in the pipe."""
        if not self._requested:
            timeout = None if seconds == math.inf else max(0.0, seconds)
            select.select([self._wake_r], [], [], timeout)
        return self._notice()

    def _notice(self) -> bool:
        if self._requested and not self._noticed:
            self._noticed = True
            if self.reason in ("SIGTERM", "SIGINT"):
                log.info("received %s: finishing the batch, then stopping", self.reason)
        return self._requested


def _close(*fds: int) -> None:
    for fd in fds:
        os.close(fd)
