"""What an active learner takes from the models topic while it runs: an operator's new version.

``riverflow models import``, ``train`` and ``rollback`` publish a version of the lineage
(``extra["operation"]``, see :mod:`riverflow.online_model.operations`) while a learner may be
active. The learner adopts its estimator, and only that: its join state, input positions,
evaluation state and learned count stay as they are, and its next snapshot, published at once,
carries the adopted estimator with its own checkpoint as a version above the operator's. Its own
snapshots, pins and unpins are passed over without unpickling; a record that does not verify is
refused and counted like any other.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from riverflow.errors import SnapshotError
from riverflow.metrics import LearnerMetrics
from riverflow.online_model.operations import kind_of
from riverflow.online_model.snapshot import Snapshot, Trust, loads, read_header
from riverflow.online_model.tasks import Task

log = logging.getLogger(__name__)


def operator_versions(
    values: Iterable[bytes | None],
    trust: Trust,
    task: Task,
    name: str,
    metrics: LearnerMetrics,
) -> list[Snapshot]:
    """The operators' versions among ``values`` (records of the models topic), loaded."""
    found = []
    for value in values:
        if value is None:
            continue
        try:
            if kind_of(read_header(value)[0]) != "operation":
                continue
            found.append(loads(value, trust, task=task, model=name))
        except SnapshotError as exc:
            metrics.snapshot_rejected.labels(exc.reason).inc()
            log.error(
                "refused a snapshot of %s published meanwhile (%s): %s", name, exc.reason, exc
            )
    return found


def describe(snap: Snapshot) -> str:
    """``rollback to v3`` / ``import of file.rfsnap`` / ``train on phishing``, for the log."""
    op = snap.header.extra.get("operation")
    if not isinstance(op, dict):
        return "an operator's version"
    kind = op.get("kind")
    if kind == "rollback":
        return f"rollback to v{op.get('from_version')}"
    if kind == "import":
        return f"import of {op.get('file')}"
    if kind == "train":
        return f"train on {op.get('source')}"
    return str(kind)
