"""Every command block of the README runs, in order, as a user would run it on a fresh clone.

The blocks run in a copy of the checkout with a fresh venv first on PATH (so the README's
``pip install -e .`` installs there, not into the test's environment), riverflow's state in a
temporary XDG_STATE_HOME, and RIVERFLOW_KAFKA_PORT set to free ports, so the README's commands run
unchanged and start their broker where no other broker is. Exported variables carry over from
block to block like in a terminal. How each block runs is said by its mark
(``tests/readme_blocks.py``); the metrics ports the README names (8000-8003) must be free.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.checkout import copy_checkout
from tests.integration.test_up import free_port_run
from tests.readme_blocks import Block, blocks

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
# A block that neither ends nor reaches its Ctrl-C point by then fails: the README's commands
# run for seconds to a minute; a loaded CI machine gets plenty of room.
BLOCK_TIMEOUT_S = 600
METRICS_PORTS = (8000, 8001, 8002, 8003)


class Terminal:
    """Runs blocks one after another with the environment each one leaves behind."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd, self.env = cwd, env
        self.groups: list[subprocess.Popen[str]] = []

    def run(self, block: Block) -> str:
        env_file = self.cwd / ".readme-test-env"
        script = f"{block.body}\nenv -0 > {env_file}\n"
        proc = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # its own process group: Ctrl-C and clean-up reach it all
        )
        self.groups.append(proc)
        out: list[str] = []
        stdout = proc.stdout
        assert stdout is not None
        reader = threading.Thread(target=lambda: out.extend(iter(stdout.readline, "")))
        reader.start()
        deadline = time.monotonic() + BLOCK_TIMEOUT_S
        interrupted = False
        while proc.poll() is None and time.monotonic() < deadline:
            if (
                block.interrupt is not None
                and not interrupted
                and block.interrupt.search("".join(out))
            ):
                os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the group
                interrupted = True
            time.sleep(0.2)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            reader.join()
            pytest.fail(
                f"{block} did not finish within {BLOCK_TIMEOUT_S}s:\n{''.join(out)[-4000:]}"
            )
        reader.join()
        text = "".join(out)
        ok = (0, 130) if interrupted else (0,)
        assert proc.returncode in ok, f"{block} exited with {proc.returncode}:\n{text[-4000:]}"
        if block.interrupt is not None:
            assert interrupted, f"{block} ended before {block.interrupt.pattern!r}:\n{text[-4000:]}"
        for pattern in block.expect:
            assert pattern.search(text), f"{block}: no {pattern.pattern!r} in\n{text[-4000:]}"
        if env_file.exists():  # a block stopped by Ctrl-C leaves the environment as it was
            pairs = env_file.read_text().split("\0")
            self.env = dict(p.split("=", 1) for p in pairs if "=" in p)
            env_file.unlink()
        return text

    def close(self) -> None:
        """Whatever a block left running (a background job) is stopped, then killed."""
        for sig, grace in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 0.0)):
            alive = [p.pid for p in self.groups if _signal(p.pid, sig)]
            deadline = time.monotonic() + grace
            while alive and time.monotonic() < deadline:
                alive = [pid for pid in alive if _signal(pid, 0)]
                time.sleep(0.2)


def _signal(group: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False when none of it is left."""
    try:
        os.killpg(group, sig)
    except ProcessLookupError:
        return False
    return True


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    busy = [p for p in METRICS_PORTS if listening(p)]
    assert busy == [], f"the README's commands use metrics ports {busy}, which are taken"
    clone = copy_checkout(tmp_path / "riverflow")
    venv = tmp_path / "venv"
    # The test's packages are there already; the README's pip installs riverflow itself.
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", venv], check=True, timeout=120
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIVERFLOW_")}
    env.pop("PYTHONPATH", None)
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}",
        XDG_STATE_HOME=str(tmp_path / "state"),
        RIVERFLOW_KAFKA_PORT=str(free_port_run(2)),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    term = Terminal(clone, env)
    try:
        yield term
    finally:
        term.close()
        subprocess.run(
            ["riverflow", "kafka", "stop"],
            cwd=clone,
            env=term.env,
            capture_output=True,
            timeout=120,
        )


@pytest.mark.timeout(3600)
def test_the_readme_commands_run_in_order(terminal: Terminal) -> None:
    ran = []
    for block in blocks(README):
        if not block.marked or block.skip is not None:
            continue
        if block.file is not None:
            (terminal.cwd / block.file).write_text(block.body)
            continue
        if block.broker:  # idempotent: "already runs" when an earlier block left it running
            terminal.run(Block(block.line, "sh", "riverflow kafka start\n"))
        terminal.run(block)
        ran.append(block.line)
        installed = Path(terminal.env["PATH"].split(os.pathsep)[0]) / "riverflow"
        # From the first block on, the commands are the clone's, installed by the README's pip.
        assert installed.exists(), f"{block} left no riverflow in the venv"
    assert len(ran) >= 5
    assert not [p for p in METRICS_PORTS if listening(p)], "a README command still runs"
