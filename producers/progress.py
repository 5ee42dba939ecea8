"""The producers' progress line on stderr: refreshed in place on a terminal, plain lines in logs."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

# Twice a second reads as live on a terminal; a log file gets one line every 10 seconds.
TTY_INTERVAL_S = 0.5
LOG_INTERVAL_S = 10.0


class Progress:
    """Shows readings and labels sent, the current and average rate, and labels still owed."""

    def __init__(
        self,
        name: str,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.tty = self.stream.isatty()
        self.interval = TTY_INTERVAL_S if self.tty else LOG_INTERVAL_S
        self.start = clock()
        self._last_at = self.start
        self._last_readings = 0
        self._width = 0

    def update(self, readings: int, labels: int, pending: int) -> None:
        """Cheap when called per event: renders at most once per interval."""
        now = self.clock()
        if now - self._last_at < self.interval:
            return
        current = (readings - self._last_readings) / (now - self._last_at)
        self._last_at, self._last_readings = now, readings
        line = (
            f"{self.name}: {readings:,} readings ({current:,.0f}/s now, "
            f"{readings / (now - self.start):,.0f}/s avg), {labels:,} labels sent, "
            f"{pending:,} pending, {now - self.start:,.1f}s"
        )
        self._write(line)

    def finish(self, summary: str) -> None:
        """Replace the live line with the final summary line."""
        self._write(summary)
        if self.tty:
            self.stream.write("\n")
        self.stream.flush()

    def _write(self, line: str) -> None:
        if self.tty:
            # Pad over the remains of a longer previous line.
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
