"""Signed model snapshots: a JSON header plus the pickled River estimator.

Layout (all lengths big-endian u32)::

    b"RFSNAP1\\n" | len(header) | header JSON | len(signature) | signature | pickle

The signature is HMAC-SHA256 over magic, header and pickle, with ``RIVERFLOW_MODEL_SIGNING_KEY``;
its length is 0 for an unsigned snapshot. Pickle runs code when loaded, so :func:`loads` checks
the signature *before* unpickling (:func:`verify`), refuses what it cannot verify unless the
operator opted in to unsigned snapshots (:class:`Trust`), and then unpickles with
:func:`riverflow.online_model.unpickler.restricted_load`, which resolves only River's classes and a
few safe others.

The header carries the learner's input positions: a snapshot is also the learner's checkpoint.

>>> blob = dumps(SnapshotHeader("m", 3, "regression"), {"w": 1.0}, key=b"k")
>>> snap = loads(blob, Trust(b"k"))
>>> snap.header.version, snap.model
(3, {'w': 1.0})
>>> loads(blob, Trust(None)).model
Traceback (most recent call last):
riverflow.errors.SnapshotError: snapshot v3 cannot be verified: no signing key is set
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.metadata
import io
import json
import logging
import pickle
import platform
import struct
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from riverflow.errors import SnapshotError
from riverflow.online_model.tasks import TASKS, Task
from riverflow.online_model.unpickler import Allowlist, restricted_load

log = logging.getLogger(__name__)

MAGIC = b"RFSNAP1\n"
_U32 = struct.Struct(">I")

# Where the classes of the learner's evaluation state are defined (see consumers/learner/state.py).
EVALUATION_MODULES = ("riverflow.online_model.evaluation", "riverflow.online_model.drift")

# snapshot_rejected_total{reason} values.
REJECT_REASONS = (
    "unsigned",
    "bad_signature",
    "unreadable",
    "wrong_task",
    "wrong_model",
    "forbidden_class",
)


RIVER_VERSION = importlib.metadata.version("river")  # river exports no __version__ to typing

@dataclass
class SnapshotHeader:
    model: str
    version: int
    task: Task
    created_ts: int = field(default_factory=lambda: time.time_ns() // 1_000_000)
    learned_count: int = 0
    # "topic/partition" -> next offset to read: where a restarted learner resumes.
    positions: dict[str, int] = field(default_factory=dict)
    river_version: str = RIVER_VERSION
    python_version: str = platform.python_version()
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Snapshot:
    header: SnapshotHeader
    model: Any
    size: int = 0
    # The learner's evaluation state (quality metrics, drift detector), when asked for and
    # present: a second pickle after the model's, so inference never needs to load it.
    evaluation: Any = None


def _sign(key: bytes, header: bytes, payload: bytes) -> bytes:
    mac = hmac.new(key, MAGIC, hashlib.sha256)
    mac.update(header)
    mac.update(payload)
    return mac.digest()


def dumps(
    header: SnapshotHeader, model: Any, key: bytes | None = None, evaluation: Any = None
) -> bytes:
    payload = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    if evaluation is not None:
        payload += pickle.dumps(evaluation, protocol=pickle.HIGHEST_PROTOCOL)
    return assemble(header, payload, key)


def assemble(header: SnapshotHeader, payload: bytes, key: bytes | None) -> bytes:
    """A snapshot of ``header`` and an already pickled ``payload``, signed with ``key``."""
    head = json.dumps(asdict(header), separators=(",", ":"), sort_keys=True).encode()
    sig = _sign(key, head, payload) if key else b""
    return b"".join((MAGIC, _U32.pack(len(head)), head, _U32.pack(len(sig)), sig, payload))


def read_header(data: bytes) -> tuple[SnapshotHeader, bytes, bytes, bytes]:
    """Parse without unpickling: header, raw header bytes, signature and payload."""
    try:
        if not data.startswith(MAGIC):
            raise ValueError("not a riverflow snapshot (bad magic)")
        pos = len(MAGIC)
        (n,) = _U32.unpack_from(data, pos)
        head = data[pos + 4 : pos + 4 + n]
        pos += 4 + n
        (m,) = _U32.unpack_from(data, pos)
        sig = data[pos + 4 : pos + 4 + m]
        payload = data[pos + 4 + m :]
        header = SnapshotHeader(**json.loads(head))
        _check_types(header)
    except (ValueError, TypeError, RecursionError, struct.error) as exc:
        raise SnapshotError("unreadable", f"unreadable snapshot: {exc}") from None
    return header, head, sig, payload


_INT_FIELDS = ("version", "created_ts", "learned_count")
_MAX_INT = 2**63 - 1  # Kafka's and Prometheus's integers; more would overflow a float later


def _check_types(header: SnapshotHeader) -> None:
    """Header values of the types the code compares and computes with, before anyone does."""
    for name in _INT_FIELDS:
        value = getattr(header, name)
        if type(value) is not int or not 0 <= value <= _MAX_INT:
            raise ValueError(f"header {name} is not an integer from 0 to 2**63-1: {value!r:.40}")
    if header.task not in TASKS:
        raise ValueError(f"header task is not one of {', '.join(TASKS)}: {header.task!r:.40}")
    for name, kind in (("model", str), ("positions", dict), ("extra", dict)):
        if not isinstance(getattr(header, name), kind):
            raise ValueError(f"header {name} is not a {kind.__name__}")
    if not all(type(v) is int and isinstance(k, str) for k, v in header.positions.items()):
        raise ValueError("header positions are not topic/partition -> offset")


@dataclass(frozen=True)
class Trust:
    """What a process loads: snapshots signed with ``key``; without a key, none, unless the
    operator opted in to unverified ones (``allow_unsigned``); and in every case only the
    classes ``allowed`` resolves. A set key always wins over the opt-in."""

    key: bytes | None
    allow_unsigned: bool = False
    allowed: Allowlist = field(default_factory=Allowlist)


def verify(
    data: bytes, trust: Trust, task: Task | None = None, model: str | None = None
) -> tuple[SnapshotHeader, bytes]:
    """Every check short of unpickling: header, model, task and signature. Returns the header
    and the pickle; raises :class:`SnapshotError` with a bounded reason."""
    header, head, sig, payload = read_header(data)
    if model is not None and header.model != model:
        raise SnapshotError("wrong_model", f"snapshot is for model {header.model!r}, not {model!r}")
    if task is not None and header.task != task:
        raise SnapshotError(
            "wrong_task", f"snapshot v{header.version} is a {header.task} model, not {task}"
        )
    if trust.key:
        if not sig:
            raise SnapshotError(
                "unsigned", f"snapshot v{header.version} is unsigned and a signing key is set"
            )
        if not hmac.compare_digest(sig, _sign(trust.key, head, payload)):
            raise SnapshotError(
                "bad_signature", f"snapshot v{header.version} has a wrong signature"
            )
    elif not trust.allow_unsigned:
        raise SnapshotError(
            "unsigned", f"snapshot v{header.version} cannot be verified: no signing key is set"
        )
    return header, payload


def loads(
    data: bytes,
    trust: Trust,
    task: Task | None = None,
    model: str | None = None,
    evaluation: bool = False,
) -> Snapshot:
    """Verify, then unpickle with the allow-list; raise :class:`SnapshotError` with a bounded
    reason (``forbidden_class`` for a name outside the list).

    ``evaluation``: also load the learner's evaluation state, when the snapshot has one (its
    classes come from riverflow's own evaluation and drift modules, allowed for it alone)."""
    header, payload = verify(data, trust, task, model)
    if not trust.key:
        log.warning(
            "loading %s v%d unverified: no signing key is set and unsigned snapshots are "
            "allowed (set RIVERFLOW_MODEL_SIGNING_KEY to verify them)",
            header.model,
            header.version,
        )
    stream = io.BytesIO(payload)
    state = None
    try:
        estimator = restricted_load(stream, trust.allowed)
        if evaluation and stream.tell() < len(payload):
            allowed = Allowlist([*trust.allowed.modules, *EVALUATION_MODULES])
            state = restricted_load(stream, allowed)
    except SnapshotError:
        raise
    except Exception as exc:
        raise SnapshotError(
            "unreadable", f"cannot unpickle snapshot v{header.version}: {exc}"
        ) from None
    return Snapshot(header, estimator, len(data), state)
