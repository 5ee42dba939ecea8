"""Which model an inference worker serves: version 0 from the preset, then newer snapshots.

Pure decision logic, no Kafka: the worker feeds it the raw values of the models topic (see
:mod:`riverflow.consumers.snapshot_feed`) and serves :attr:`ModelFollower.current` for the next
batch. :func:`trust_from` turns the settings into what every process trusts (inference and learner).

>>> from river.linear_model import LinearRegression
>>> from riverflow.online_model.snapshot import SnapshotHeader, dumps
>>> def snap(version, key=b"k"):
...     return dumps(SnapshotHeader("m", version, "regression"), LinearRegression(), key=key)
>>> initial = ServedModel(LinearRegression(), 0, 0)
>>> f = ModelFollower("m", "regression", Trust(b"k"), initial)
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

from riverflow.errors import ConfigError, SnapshotError
from riverflow.online_model.operations import control_time, kind_of
from riverflow.online_model.snapshot import SnapshotHeader, Trust, loads, read_header, verify
from riverflow.online_model.tasks import Task, task_of
from riverflow.online_model.unpickler import Allowlist
from riverflow.settings import Settings

log = logging.getLogger(__name__)

# HMAC-SHA256 keys are guessed offline from any snapshot on the topic: ask for 128 bits or more.
MIN_KEY_CHARS = 16
MAKE_A_KEY = (
    "export RIVERFLOW_MODEL_SIGNING_KEY=$(python -c 'import secrets; print(secrets.token_hex(32))')"
)


def trust_from(settings: Settings, publishes: bool) -> Trust:
    """What this process loads, from the settings; says so in the log when it is not secure.

    With no signing key and no opt-in, a process that ``publishes`` (the learner) refuses to
    start (:class:`ConfigError`, exit 2): nobody could verify its snapshots. Inference starts,
    serves version 0 and refuses every snapshot.
    """
    factory_module = [settings.model.split(":")[0]] if ":" in settings.model else []
    allowed = Allowlist([*factory_module, *settings.allowed_modules])
    secret = settings.model_signing_key
    key = secret.get_secret_value().encode() if secret else b""
    if key:
        if len(key) < MIN_KEY_CHARS:
            raise ConfigError(
                f"RIVERFLOW_MODEL_SIGNING_KEY has {len(key)} characters; use at least "
                f"{MIN_KEY_CHARS} random ones: {MAKE_A_KEY}"
            )
        if settings.allow_unsigned_snapshots:
            log.warning("allow_unsigned_snapshots is ignored: a signing key is set")
        return Trust(key, False, allowed)
    if settings.allow_unsigned_snapshots:
        log.warning(
            "INSECURE: no signing key and allow_unsigned_snapshots=true: snapshots on %s are %s "
            "and loaded unverified, so whoever can write to that topic chooses the model",
            settings.models_topic,
            "published unsigned" if publishes else "not verified",
        )
        return Trust(None, True, allowed)
    if publishes:
        raise ConfigError(
            "no signing key: the learner would publish snapshots nobody can verify. Set one "
            f"({MAKE_A_KEY}) for the learner and inference alike, or opt in to unsigned "
            "snapshots with RIVERFLOW_ALLOW_UNSIGNED_SNAPSHOTS=true"
        )
    log.warning(
        "no signing key: every snapshot on %s is refused (counted as unsigned) and this worker "
        "serves version 0. Set the learner's key: %s",
        settings.models_topic,
        MAKE_A_KEY,
    )
    return Trust(None, False, allowed)


@dataclass(frozen=True)
class ServedModel:
    """The estimator a worker serves and where it came from (version 0: built from the preset)."""

    model: Any
    version: int
    created_ts: int  # epoch ms: the snapshot header's created_ts, or process start for version 0
    learned_count: int = 0


def _served(model: Any, header: SnapshotHeader) -> ServedModel:
    return ServedModel(model, header.version, header.created_ts, header.learned_count)


@dataclass(frozen=True)
class Verdict:
    """What became of one offered snapshot.

    ``swap``: :attr:`ModelFollower.current` changed (a newer snapshot, a pin, an unpin).
    ``ignore``: harmless and not counted (not newer than the current version, a tombstone, a
    newer snapshot held while pinned, a stale pin). ``reject``: refused, ``reason`` is a
    ``snapshot_rejected_total`` label from :data:`riverflow.online_model.snapshot.REJECT_REASONS`;
    ``repeat`` when the same version was just refused for the same reason (log it once).
    """

    action: Literal["swap", "ignore", "reject"]
    reason: str
    message: str
    repeat: bool = False


class ModelFollower:
    """Accepts a snapshot only if it is for this model and task, newer, and trustworthy.

    Checks run cheapest first so a stale or foreign snapshot is never unpickled: header
    (``unreadable``), model name (``wrong_model``), version (not newer: ignored), signature
    (``unsigned``, ``bad_signature``; with no key every snapshot is ``unsigned`` unless
    ``trust`` allows unverified ones), task of the header, the restricted unpickling
    (``forbidden_class``), and the task of the unpickled estimator itself (``wrong_task``).
    A refused snapshot never replaces the model. A verified pin record replaces what is served
    until an unpin (or the model's deletion); the lineage's snapshots are followed meanwhile.
    """

    def __init__(self, name: str, task: Task, trust: Trust, initial: ServedModel) -> None:
        self.name = name
        self.task = task
        self.trust = trust
        self.latest = initial  # the newest of the lineage
        self.pinned: ServedModel | None = None  # served instead while pinned
        self._newer_than = initial.version  # what a snapshot's version must exceed
        self._refused: tuple[int, str] | None = None
        self._control_at = 0  # time of the last pin or unpin followed: older ones are stale

    @property
    def current(self) -> ServedModel:
        """What the worker serves: the pinned version while there is one, else the latest."""
        return self.pinned or self.latest

    def check(self, data: bytes) -> SnapshotError | None:
        """Everything but unpickling (header, model, task, signature): why ``data`` would be
        refused, or None. Cheap enough to run on every record of the topic."""
        try:
            verify(data, self.trust, self.task, self.name)
        except SnapshotError as exc:
            return exc
        return None

    def offer(self, data: bytes | None) -> Verdict:
        if data is None:
            # A tombstone deletes the model: serving on is the safe choice, and whatever the
            # learner publishes next (from version 1 if it starts over) replaces it.
            # Deleting a model (`riverflow models delete`) also removes its pin.
            self._newer_than = 0
            unpinned = self.pinned is not None
            self.pinned = None
            return Verdict(
                "swap" if unpinned else "ignore",
                "tombstone",
                f"model deleted: serving v{self.current.version} until the next snapshot",
            )
        version = -1
        try:
            header = read_header(data)[0]
            version = header.version
            if header.model != self.name:
                raise SnapshotError(
                    "wrong_model", f"snapshot is for model {header.model!r}, not {self.name!r}"
                )
            kind = kind_of(header)
            if kind in ("pin", "unpin"):
                return self._control(data, header, kind)
            if header.version <= self._newer_than:
                return Verdict(
                    "ignore",
                    "not_newer",
                    f"snapshot v{header.version} is not newer than v{self._newer_than}",
                )
            snap = loads(data, self.trust, task=self.task, model=self.name)
            self._check_estimator(snap.model, header.version)
        except SnapshotError as exc:
            refused, self._refused = self._refused, (version, exc.reason)
            return Verdict("reject", exc.reason, str(exc), repeat=refused == self._refused)
        self.latest = _served(snap.model, header)
        self._newer_than = header.version
        if self.pinned is not None:
            return Verdict(
                "ignore",
                "pinned",
                f"{self.name} v{header.version} held: pinned to v{self.pinned.version}",
            )
        return Verdict("swap", "", f"now serving {self.name} v{header.version}")

    def _control(self, data: bytes, header: SnapshotHeader, kind: str) -> Verdict:
        """A pin or unpin record (:mod:`riverflow.online_model.operations`), verified like a
        snapshot; one older than the last followed is ignored (a replayed record)."""
        at = control_time(header)
        if at <= self._control_at:
            return Verdict("ignore", "stale", f"{kind} record older than the last one followed")
        if kind == "unpin":
            verify(data, self.trust, self.task, self.name)
            self._control_at, self.pinned = at, None
            return Verdict("swap", "", f"unpinned: now serving {self.name} v{self.latest.version}")
        snap = loads(data, self.trust, task=self.task, model=self.name)
        self._check_estimator(snap.model, header.version)
        self._control_at = at
        self.pinned = _served(snap.model, header)
        return Verdict("swap", "", f"pinned: now serving {self.name} v{header.version}")

    def _check_estimator(self, model: Any, version: int) -> None:
        """The header's task is the learner's word; the estimator must agree, or every reading
        would fail at predict time."""
        try:
            actual = task_of(model)
        except Exception as exc:  # not an estimator, or one whose attributes are not a model's
            raise SnapshotError("wrong_task", f"snapshot v{version}: {exc}") from None
        if actual != self.task:
            raise SnapshotError(
                "wrong_task", f"snapshot v{version} holds a {actual} estimator, not {self.task}"
            )
