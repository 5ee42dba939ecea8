"""The broker SIGKILLed mid-stream and restarted on the same port and data: every process rides
it out, resumes by itself, and nothing is lost or learned twice.

The broker stays down ``RIVERFLOW_TEST_OUTAGE_S`` seconds (default 15), then takes a few more to
restart. The first test prints how long after the broker answered again the first new
predictions and the first new snapshot came: run it with ``RIVERFLOW_TEST_OUTAGE_S=60`` to
measure the recovery after a long outage.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from riverflow.consumers.inference.delivery import TRANSACTION_STEP_S
from riverflow.scrape import Page
from riverflow.topics import create_topics
from tests.integration.kit import WorkerProcess, make_stack, read_topic, wait_until
from tests.integration.learner_support import snapshots
from tests.integration.outage_support import OwnBroker, free_port_pair

pytestmark = pytest.mark.integration

OUTAGE_S = float(os.environ.get("RIVERFLOW_TEST_OUTAGE_S", "15"))
RATE = 100  # readings/s, each with its label one second later
CONNECTED = "riverflow_kafka_connected"


def ids(records: list[Any]) -> Counter[str]:
    return Counter(json.loads(r.value)["event_id"] for r in records)


def assert_clean_log(text: str, name: str) -> None:
    """No traceback, and the outage reported once per change of state, not per retry."""
    assert "Traceback" not in text, f"{name}:\n{text[-4000:]}"
    lost = text.count("Kafka unreachable")
    back = text.count("Kafka reachable again")
    assert 1 <= lost == back <= 2, f"{name}: {lost} lost, {back} back:\n{text[-4000:]}"
    assert " kafka." not in text, f"{name}: kafka-python's own retry noise:\n{text[-4000:]}"


def first_increase(
    counters: dict[str, tuple[WorkerProcess, str]], before: dict[str, float], timeout: float
) -> dict[str, float]:
    """When (monotonic) each counter first went above its value in ``before``."""
    seen: dict[str, float] = {}

    def all_moved() -> bool:
        for name, (proc, metric) in counters.items():
            if name not in seen and (proc.value(metric) or 0) > before[name]:
                seen[name] = time.monotonic()
        return len(seen) == len(counters)

    def missing() -> str:
        return f"progress after the broker came back: {sorted(set(counters) - set(seen))}"

    wait_until(all_moved, timeout, missing, interval=0.1)
    return seen


def test_workers_and_simulator_ride_out_a_broker_outage(
    own_broker: OwnBroker, tmp_path: Path
) -> None:
    s = make_stack(own_broker.bootstrap, partitions=3, snapshot_interval_s=1)
    exactly_topic = f"{s.settings.predictions_topic}-exactly-once"
    create_topics(s.settings.model_copy(update={"predictions_topic": exactly_topic}))
    count = int(RATE * (OUTAGE_S + 30))  # still sending well after the broker is back
    uid = uuid.uuid4().hex[:8]
    learner = WorkerProcess(s, tmp_path, "learn", "--group-id", f"learn-{uid}")
    infer = WorkerProcess(s, tmp_path, "infer", "--group-id", f"infer-{uid}")
    exactly = WorkerProcess(
        s,
        tmp_path,
        "infer",
        "--group-id",
        f"infer-eo-{uid}",
        "--exactly-once",
        env={"RIVERFLOW_PREDICTIONS_TOPIC": exactly_topic},
    )
    workers = [learner, infer, exactly]
    simulate = WorkerProcess(
        s,
        tmp_path,
        *("simulate", "--rate", str(RATE), "--count", str(count)),
        *("--label-delay", "1", "--seed", "11"),
        metrics=False,
    )
    counters = {
        "at-least-once predictions": (infer, "riverflow_predictions_total"),
        "exactly-once predictions": (exactly, "riverflow_predictions_total"),
        "snapshots": (learner, "riverflow_snapshots_published_total"),
    }
    codes: dict[str, int] = {}
    try:
        wait_until(
            lambda: (
                all((p.value(m) or 0) > 0 for p, m in counters.values())
                and all(w.value(CONNECTED) == 1 for w in workers)
            ),
            timeout=120,
            what="predictions and snapshots flowing",
        )
        own_broker.kill()
        killed = time.monotonic()
        wait_until(
            lambda: all(w.value(CONNECTED) == 0 for w in workers),
            timeout=30,
            what=lambda: (
                "every worker to report the broker gone: "
                + ", ".join(f"{w.log.name} {w.value(CONNECTED)}" for w in workers)
            ),
        )
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - killed)))  # the outage itself
        assert all(p.alive() for p in [*workers, simulate])
        before = {name: p.value(m) or 0 for name, (p, m) in counters.items()}
        restarted = time.monotonic()
        own_broker.start()
        back = time.monotonic()
        firsts = first_increase(counters, before, timeout=120)
        wait_until(
            lambda: all(w.value(CONNECTED) == 1 for w in workers),
            timeout=60,
            what="every worker to report the broker back",
        )
        assert simulate.proc.wait(timeout=OUTAGE_S + 120) == 0, simulate.text()[-3000:]
        assert f"sent {count:,} readings and {count:,} labels" in simulate.text()
        # Counted in the snapshots, not the process's counter: librdkafka ends a membership
        # whose heartbeats fail for a session timeout, so on confluent the learner stands by,
        # then resumes from its last snapshot and learns again (and counts again) what followed.
        wait_until(
            lambda: snapshots(s, "logreg")[-1].header.learned_count == count,
            timeout=120,
            what=f"a snapshot with all {count} labels learned",
        )
        wait_until(
            lambda: (exactly.value("riverflow_predictions_total") or 0) >= count,
            timeout=120,
            what="the exactly-once worker to predict every reading",
        )
        assert all(w.alive() for w in workers)
        print(
            f"\nbroker down {restarted - killed:.1f}s, restarted in {back - restarted:.1f}s; "
            "after it answered: "
            + ", ".join(f"first new {name} +{at - back:.1f}s" for name, at in firsts.items())
        )
    finally:
        codes = {w.log.name: w.stop() for w in workers}
        simulate.kill()

    assert codes == {w.log.name: 0 for w in workers}, codes
    readings = ids(read_topic(s.settings, s.settings.readings_topic, expect=count))
    assert len(readings) == count and set(readings.values()) == {1}
    labels = ids(read_topic(s.settings, s.settings.feedback_topic, expect=count))
    assert labels == readings
    predicted = ids(read_topic(s.settings, s.settings.predictions_topic))
    assert set(predicted) == set(readings)  # each at least once
    exactly_once = ids(read_topic(s.settings, exactly_topic))
    assert exactly_once == readings  # each exactly once, despite the aborted transactions
    final = snapshots(s, "logreg")[-1]
    assert final.header.learned_count == count  # every label learned once, none twice
    for proc in [*workers, simulate]:
        assert_clean_log(proc.text(), proc.log.name)


def test_up_rides_out_a_broker_outage(own_broker: OwnBroker, tmp_path: Path) -> None:
    metrics_base = free_port_pair()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIVERFLOW_")}
    env["RIVERFLOW_BOOTSTRAP_SERVERS"] = own_broker.bootstrap
    env["XDG_STATE_HOME"] = str(tmp_path)  # up's run logs stay in the test's dir
    out = tmp_path / "up.out"
    with open(out, "w") as stdout:
        up = subprocess.Popen(
            [sys.executable, "-m", "riverflow", "up", "--replicas", "1", "--drift-at", "0"]
            + ["--rate", str(RATE), "--metrics-port", str(metrics_base)],
            env=env,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            text=True,
        )
    urls = [f"http://127.0.0.1:{p}/metrics" for p in (metrics_base, metrics_base + 1)]

    def connected() -> list[float]:
        return [v for _, v in Page.fetch(urls).select(CONNECTED)]

    try:
        wait_until(
            lambda: (
                Page.fetch(urls).sum("riverflow_learned_total") > 0 and connected() == [1.0, 1.0]
            ),
            timeout=120,
            what="up's pipeline to learn",
        )
        own_broker.kill()
        wait_until(lambda: connected() == [0.0, 0.0], timeout=30, what="the outage reported")
        wait_until(lambda: "0/2 workers connected" in out.read_text(), timeout=30, what="summary")
        before = Page.fetch(urls).sum("riverflow_predictions_total")
        own_broker.start()
        wait_until(
            lambda: (
                connected() == [1.0, 1.0]
                and Page.fetch(urls).sum("riverflow_predictions_total") > before
            ),
            timeout=120,
            what="up's workers to resume",
        )
        assert up.poll() is None, out.read_text()[-3000:]
    finally:
        if up.poll() is None:
            up.terminate()
        code = up.wait(timeout=120)
    text = out.read_text()
    assert code == 0, text[-3000:]
    assert "2/2 workers connected" in text.split("final summary:")[1]
    logs = list((tmp_path / "riverflow" / "up").glob("*/*.log"))
    assert {p.name for p in logs} == {"learner.log", "inference-0.log", "simulator.log"}
    for log in logs:
        assert "Traceback" not in log.read_text(), f"{log.name}:\n{log.read_text()[-4000:]}"


def test_every_process_stops_on_sigterm_while_the_broker_is_away(
    own_broker: OwnBroker, tmp_path: Path
) -> None:
    # What waits for Kafka at a stop is given up (and done again by whoever reads next), so a
    # stop costs the shutdown timeout, not the rest of the outage; a transaction's step under
    # way (exactly-once) is not cut short.
    s = make_stack(own_broker.bootstrap, partitions=3, snapshot_interval_s=1)
    uid = uuid.uuid4().hex[:8]
    workers = [
        WorkerProcess(s, tmp_path, "learn", "--group-id", f"learn-{uid}"),
        WorkerProcess(s, tmp_path, "infer", "--group-id", f"infer-{uid}"),
        WorkerProcess(s, tmp_path, "infer", "--group-id", f"infer-eo-{uid}", "--exactly-once"),
    ]
    simulate = WorkerProcess(
        s, tmp_path, "simulate", "--rate", str(RATE), "--label-delay", "1", metrics=False
    )
    limit_s = 2 * s.settings.shutdown_timeout_s
    limits = dict.fromkeys([*workers, simulate], limit_s) | {
        workers[2]: limit_s + TRANSACTION_STEP_S
    }
    took: dict[str, float] = {}
    try:
        wait_until(
            lambda: (
                all(w.value(CONNECTED) == 1 for w in workers)
                and (workers[1].value("riverflow_predictions_total") or 0) > 0
                and (workers[2].value("riverflow_predictions_total") or 0) > 0
                and (workers[0].value("riverflow_learned_total") or 0) > 0
            ),
            timeout=120,
            what="predictions and learning under way",
        )
        own_broker.kill()
        wait_until(
            lambda: all(w.value(CONNECTED) == 0 for w in workers),
            timeout=30,
            what="every worker to report the broker gone",
        )
        stopped = time.monotonic()
        for p in [*workers, simulate]:
            p.proc.send_signal(signal.SIGTERM)
        for p in [*workers, simulate]:
            p.proc.wait(timeout=max(0.1, stopped + limits[p] - time.monotonic()))
            took[p.log.name] = time.monotonic() - stopped
    finally:
        for p in [*workers, simulate]:
            p.kill()
        own_broker.start()
    print(
        "\nstopped after SIGTERM, broker away: "
        + ", ".join(f"{n} {t:.1f}s" for n, t in took.items())
    )
    assert [w.proc.returncode for w in workers] == [0, 0, 0], [w.text()[-3000:] for w in workers]
    # The simulator's readings that never reached Kafka are counted and make its exit 1.
    assert simulate.proc.returncode == 1 and "messages were not delivered" in simulate.text()
    for p in [*workers, simulate]:
        assert "Traceback" not in p.text(), f"{p.log.name}:\n{p.text()[-4000:]}"
