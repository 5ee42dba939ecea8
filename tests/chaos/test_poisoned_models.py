"""A poisoned models topic under a running inference worker and learner.

After the learner's good snapshots come random bytes, a truncated snapshot, one signed with
another key, a pickle that creates a marker file when unpickled (signed with the right key, and
unsigned) and a tombstone. Nothing runs (no marker file), each refusal is counted by reason,
inference keeps serving the last good version, a learner restarted among the poison resumes from
its own last snapshot, and the next good snapshot is swapped in: every label learned once.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from riverflow.online_model.snapshot import SnapshotHeader, dumps
from tests.chaos.support import assert_alive, sample, strict_page
from tests.integration.inference_support import group, infer_args, send_model
from tests.integration.kit import Workers
from tests.integration.learner_support import LearnerProcess, Learners
from tests.integration.test_inference_models import publish, trained_logreg
from tests.integration.test_snapshot_security import Shell, labelled

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

REJECT_REASONS = ("unsigned", "bad_signature", "unreadable", "forbidden_class", "wrong_task")


def test_a_poisoned_models_topic_runs_nothing_and_changes_nothing(
    stack: Any, workers: Workers, learners: Learners, tmp_path: Path
) -> None:
    s = stack(partitions=2)
    infer = workers.spawn(s, *infer_args(group()))
    learn_args = ("--model", "logreg", "--snapshot-every", "100", "--snapshot-interval", "1")
    learner = learners.start(s, *learn_args)
    labelled(s, 0, 300)
    learner.wait_for(lambda pg: published(learner, 300) is not None, timeout=90)
    version = published(learner, 300)
    assert version is not None
    infer.wait_for(lambda pg: sample(pg, "riverflow_model_version") == version)
    swaps = sample(infer.page(), "riverflow_model_swaps")

    # Poison the learner can pass over at a restart: nothing in it verifies.
    markers = [tmp_path / "marker-signed", tmp_path / "marker-unsigned"]
    signed = dumps(
        SnapshotHeader("logreg", version + 11, "classification"), trained_logreg(), s.key
    )
    send_model(s.settings, "logreg", random.Random(8).randbytes(4096))
    send_model(s.settings, "logreg", signed[: len(signed) // 2])
    publish(s.settings, "logreg", version + 12, key=b"another-key-of-32-characters-...")
    publish(s.settings, "logreg", version + 13, key=None, estimator=Shell(markers[1], True))
    refused = Counter({"unreadable": 1, "bad_signature": 2, "unsigned": 1})
    assert learner.stop() == 0
    learner = learners.start(s, *learn_args)
    page = learner.wait_for(
        lambda pg: sum(sample(pg, "riverflow_snapshot_rejected", reason=r) for r in refused) == 4
    )
    for reason in REJECT_REASONS:
        assert sample(page, "riverflow_snapshot_rejected", reason=reason) == refused[reason], reason
    assert f"resuming logreg from snapshot v{version} (300 learned" in learner.text()

    # Then what the key holder alone could write, and a deletion of the model.
    publish(s.settings, "logreg", version + 14, estimator=Shell(markers[0]))
    send_model(s.settings, "logreg", None)
    refused["forbidden_class"] += 1
    page = infer.wait_for(
        lambda pg: (
            sum(sample(pg, "riverflow_snapshot_rejected", reason=r) for r in refused) == 5
            and "tombstone" in infer.text()
        )
    )
    for reason in REJECT_REASONS:
        assert sample(page, "riverflow_snapshot_rejected", reason=reason) == refused[reason], reason
    assert sample(page, "riverflow_model_version") == version
    assert sample(page, "riverflow_model_swaps") == swaps
    assert "model logreg was deleted" in infer.text()

    # The next good snapshot is served; the labels before the restart are not learned again.
    labelled(s, 300, 100)
    learner.wait_for(lambda pg: published(learner, 400) is not None, timeout=90)
    newest = published(learner, 400)
    infer.wait_for(lambda pg: sample(pg, "riverflow_model_version") == newest)
    assert sample(learner.page(), "riverflow_learned") == 100
    assert_alive(infer, learner)
    strict_page(infer)
    strict_page(learner)
    assert learner.stop() == 0 and infer.stop() == 0
    assert [m.name for m in markers if m.exists()] == []
    print(f"\npoison: refused {dict(refused)}, kept v{version}, then served v{newest}; 400 learned")


def published(learner: LearnerProcess, learned: int) -> int | None:
    """The version of the learner's last snapshot of ``learned`` events, once it is published."""
    found = re.findall(rf"published logreg v(\d+): {learned} learned", learner.text())
    return int(found[-1]) if found else None
