"""The Stopper: signals that never hang the process, and --idle-exit counted from joining."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

from riverflow.lifecycle import Stopper


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_idle_exit_counts_from_joining_the_group_not_from_start() -> None:
    clock = Clock()
    stopper = Stopper(idle_exit_s=20, clock=clock)
    clock.now += 600  # still waiting for the group (a dead member's session, say)
    assert not stopper.stopping
    stopper.joined()
    clock.now += 19
    assert not stopper.stopping
    clock.now += 2
    assert stopper.stopping and stopper.reason == "idle"


def test_input_restarts_the_idle_clock_and_joining_again_does_not() -> None:
    clock = Clock()
    stopper = Stopper(idle_exit_s=20, clock=clock)
    stopper.joined()
    clock.now += 15
    stopper.saw_input(0)  # an empty poll is no input
    stopper.joined()  # a later rebalance: the clock keeps running
    clock.now += 6
    assert stopper.stopping and stopper.reason == "idle"

    stopper = Stopper(idle_exit_s=20, clock=clock)
    stopper.joined()
    clock.now += 15
    stopper.saw_input(3)
    clock.now += 15
    assert not stopper.stopping


def test_without_idle_exit_only_a_stop_ends_the_loop() -> None:
    clock = Clock()
    stopper = Stopper(clock=clock)
    stopper.joined()
    clock.now += 10**6
    assert not stopper.stopping
    stopper.stop("SIGTERM")
    stopper.stop("idle")  # the first reason is kept
    assert stopper.stopping and stopper.reason == "SIGTERM"


def test_wait_sleeps_until_its_timeout_or_a_stop_from_another_thread() -> None:
    stopper = Stopper()
    assert stopper.wait(0.01) is False
    threading.Timer(0.05, stopper.stop, ("done",)).start()
    started = time.monotonic()
    assert stopper.wait(float("inf")) is True
    assert time.monotonic() - started < 10
    assert stopper.wait(60) is True  # a stop is for good: later waits return at once


# Waits without pause, so the signal nearly always lands while the waiting code holds its
# locks: a handler that took one of them (threading.Event.set did) hung about half of these.
BUSY_WAITER = """
import sys
from riverflow.lifecycle import Stopper
stopper = Stopper().install()
print("ready", flush=True)
while not stopper.stopping:
    stopper.wait(0)
print("stopped by", stopper.reason, flush=True)
"""


def test_sigterm_during_wait_always_stops_the_loop() -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", BUSY_WAITER], stdout=subprocess.PIPE, text=True)
        for _ in range(12)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            out, _ = proc.communicate(timeout=30)
            assert (proc.returncode, out) == (0, "stopped by SIGTERM\n")
    finally:
        for proc in procs:
            proc.kill()


# Holds signals as `riverflow` does while a command starts, takes a SIGTERM while "importing"
# (blocked on stdin until the test has sent it), then hands over as the argument says.
STARTING = """
import sys
from riverflow.lifecycle import Stopper, hold_signals, release_signals
hold_signals()
print("starting", flush=True)
sys.stdin.readline()
if sys.argv[1] == "worker":
    stopper = Stopper().install()
    print("stopping" if stopper.stopping else "running", stopper.reason, flush=True)
else:
    release_signals()
    print("survived", flush=True)
"""


def run_starting(kind: str) -> tuple[int, str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", STARTING, kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "starting\n"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate("go\n", timeout=30)
        return proc.returncode, out
    finally:
        proc.kill()


def test_a_sigterm_while_a_worker_starts_stops_it_cleanly_once_its_stopper_is_installed() -> None:
    assert run_starting("worker") == (0, "stopping SIGTERM\n")


def test_a_command_without_a_stopper_gets_a_held_signal_when_it_releases_them() -> None:
    assert run_starting("other") == (-signal.SIGTERM, "")
