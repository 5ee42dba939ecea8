"""Hostile snapshots on the models topic, against a signed inference worker and learner.

Every hostile pickle here runs a shell command that creates a marker file when unpickled by
plain ``pickle.loads``; none may exist at the end, and each refusal is counted by reason.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from riverflow.schemas import now_ms
from riverflow.transport.kafka_python import kafka_producer as producer
from tests.integration.inference_support import (
    group,
    infer_args,
    produce,
    reading,
    scrape,
    stop,
    value,
)
from tests.integration.kit import Stack, free_port, wait_until
from tests.integration.learner_support import Learners, feedback
from tests.integration.test_inference_models import publish

pytestmark = pytest.mark.integration


class Shell:
    """Unpickles into a shell command: ``os.system`` or ``subprocess.Popen``."""

    def __init__(self, marker: Path, via_popen: bool = False) -> None:
        self.marker, self.via_popen = marker, via_popen

    def __reduce__(self) -> Any:
        if self.via_popen:
            return subprocess.Popen, (["touch", str(self.marker)],)
        return os.system, (f"touch {self.marker}",)


def labelled(s: Stack, start: int, n: int) -> None:
    """``n`` readings and, for each, its label (the same rule as trained_logreg's)."""
    readings = [reading(i) for i in range(start, start + n)]
    produce(s.settings, readings)
    p = producer(s.settings)
    for r in readings:
        label = r["features"]["a"] >= 5
        p.send(
            s.settings.feedback_topic,
            key=r["sensor_id"].encode(),
            value=feedback(r["event_id"], now_ms(), label),
        )
    p.flush()
    p.close()


def test_hostile_snapshots_run_nothing_and_are_refused_by_reason(
    stack: Any, learners: Learners, tmp_path: Path
) -> None:
    s = stack(partitions=2)
    markers = {kind: tmp_path / f"pwned-{kind}" for kind in ("wrong-key", "unsigned", "signed")}
    port = free_port()
    log = tmp_path / "infer.log"
    infer = s.start(*infer_args(group(), "--metrics-port", str(port)), log_path=str(log))
    learn_args = ("--model", "logreg", "--snapshot-every", "50", "--snapshot-interval", "1")
    try:
        learner = learners.start(s, *learn_args)
        labelled(s, 0, 300)
        learner.wait_for(lambda pg: pg.sum("riverflow_learned_total") >= 300, timeout=90)
        assert learner.stop() == 0, learner.text()[-3000:]  # publishes its final snapshot
        version = int(re.findall(r"published logreg v(\d+)", learner.text())[-1])
        wait_until(
            lambda: value(scrape(port), "riverflow_model_version") == version,
            what=f"inference serving v{version}",
        )

        # Snapshots nobody can verify: a wrong key, none, and bytes that are no snapshot.
        publish(
            s.settings,
            "logreg",
            1000,
            key=b"not-the-key-of-16+",
            estimator=Shell(markers["wrong-key"]),
        )
        publish(
            s.settings,
            "logreg",
            1001,
            key=None,
            estimator=Shell(markers["unsigned"], via_popen=True),
        )
        p = producer(s.settings)
        p.send(s.settings.models_topic, key=b"logreg", value=b"RFSNAP1\n\xff\xff garbage")
        p.flush()
        p.close()
        wait_until(
            lambda: value(scrape(port), "riverflow_snapshot_rejected", reason="unreadable"),
            what="inference refusing the unverifiable snapshots",
        )

        # A restarted learner passes over them and resumes from its own last snapshot.
        learner = learners.start(s, *learn_args)
        page = learner.wait_for(
            lambda pg: pg.sum("riverflow_snapshot_rejected_total") >= 3, timeout=90
        )
        assert value(page, "riverflow_snapshot_rejected", reason="bad_signature") == 1
        assert value(page, "riverflow_snapshot_rejected", reason="unsigned") == 1
        assert value(page, "riverflow_snapshot_rejected", reason="unreadable") == 1
        assert f"resuming logreg from snapshot v{version} " in learner.text()
        assert "passed over 3 snapshots of logreg" in learner.text()
        labelled(s, 300, 100)
        newer = wait_until(
            lambda: (v := value(scrape(port), "riverflow_model_version")) and v > version and v,
            timeout=90,
            what="inference swapping in the learner's next version",
        )

        # Signed with the right key, but a class outside the allow-list: refused at unpickling.
        publish(s.settings, "logreg", 10**6, estimator=Shell(markers["signed"]))
        m = wait_until(
            lambda: (
                mm
                if value(
                    mm := scrape(port), "riverflow_snapshot_rejected", reason="forbidden_class"
                )
                else None
            ),
            what="inference refusing the forbidden class",
        )
        assert value(m, "riverflow_model_version") == newer
        assert value(m, "riverflow_snapshot_rejected", reason="bad_signature") == 1
        assert value(m, "riverflow_snapshot_rejected", reason="unsigned") == 1
        assert value(m, "riverflow_snapshot_rejected", reason="unreadable") == 1
        assert value(m, "riverflow_snapshot_rejected", reason="forbidden_class") == 1
        assert infer.poll() is None and learner.proc.poll() is None
        assert learner.stop() == 0, learner.text()[-3000:]
    finally:
        assert stop(infer) == 0
    assert [k for k, path in markers.items() if path.exists()] == []
    text = log.read_text()
    assert "refused a snapshot (forbidden_class)" in text
    assert "snapshot refers to posix.system, which may not be loaded" in text
