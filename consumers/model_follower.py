"""Which model an inference worker serves: version 0 from the preset, then newer snapshots.

Pure decision logic, no Kafka: the worker feeds it the raw values of the models topic (see
:mod:`consumers.snapshot_feed`) and serves :attr:`ModelFollower.current` for the next batch.

>>> from river.linear_model import LinearRegression
>>> from online_model.snapshot import SnapshotHeader, dumps
>>> def snap(version, key=b"k"):
...     return dumps(SnapshotHeader("m", version, "regression"), LinearRegression(), key=key)
>>> f = ModelFollower("m", "regression", key=b"k", initial=ServedModel(LinearRegression(), 0, 0))
>>> f.offer(snap(2)).action
'swap'
>>> f.offer(snap(2)).action
'ignore'
>>> v = f.offer(snap(3, key=b"wrong"))
>>> v.action, v.reason, f.current.version
('reject', 'bad_signature', 2)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from online_model.presets import task_of
from online_model.snapshot import loads, read_header
from riverflow.errors import ConfigError, SnapshotError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    """The estimator a worker serves and where it came from (version 0: built from the preset)."""

    model: Any
    version: int
    created_ts: int  # epoch ms: the snapshot header's created_ts, or process start for version 0
    learned_count: int = 0


@dataclass(frozen=True)
class Verdict:
    """What became of one offered snapshot.

    ``swap``: it is now :attr:`ModelFollower.current`. ``ignore``: harmless and not counted
    (not newer than the current version, or a tombstone). ``reject``: refused, ``reason`` is a
    ``snapshot_rejected_total`` label from :data:`online_model.snapshot.REJECT_REASONS`.
    """

    action: Literal["swap", "ignore", "reject"]
    reason: str
    message: str


class ModelFollower:
    """Accepts a snapshot only if it is for this model and task, newer, and trustworthy.

    Checks run cheapest first so a stale or foreign snapshot is never unpickled: header
    (``unreadable``), model name (``wrong_model``), version (not newer: ignored), signature
    (``unsigned``, ``bad_signature`` when ``key`` is set), task of the header and of the
    unpickled estimator itself (``wrong_task``). A refused snapshot never replaces the model.
    """

    def __init__(self, name: str, task: str, key: bytes | None, initial: ServedModel) -> None:
        self.name = name
        self.task = task
        self.key = key
        self.current = initial

    def offer(self, data: bytes | None) -> Verdict:
        if data is None:
            # A tombstone on the compacted topic deletes the key; serving on is the safe choice.
            return Verdict("ignore", "tombstone", "tombstone on the models topic: model kept")
        try:
            header = read_header(data)[0]
            if header.model != self.name:
                raise SnapshotError(
                    "wrong_model", f"snapshot is for model {header.model!r}, not {self.name!r}"
                )
            if header.version <= self.current.version:
                return Verdict(
                    "ignore",
                    "not_newer",
                    f"snapshot v{header.version} is not newer than v{self.current.version}",
                )
            snap = loads(data, key=self.key, task=self.task, model=self.name)
            self._check_estimator(snap.model, header.version)
        except SnapshotError as exc:
            return Verdict("reject", exc.reason, str(exc))
        self.current = ServedModel(
            snap.model, header.version, header.created_ts, header.learned_count
        )
        return Verdict("swap", "", f"now serving {self.name} v{header.version}")

    def _check_estimator(self, model: Any, version: int) -> None:
        """The header's task is the learner's word; the estimator must agree, or every reading
        would fail at predict time."""
        try:
            actual = task_of(model)
        except ConfigError as exc:
            raise SnapshotError("wrong_task", f"snapshot v{version}: {exc}") from None
        if actual != self.task:
            raise SnapshotError(
                "wrong_task", f"snapshot v{version} holds a {actual} estimator, not {self.task}"
            )
