"""Signed model snapshots: a JSON header plus the pickled River estimator.

Layout (all lengths big-endian u32)::

    b"RFSNAP1\\n" | len(header) | header JSON | len(signature) | signature | pickle

The signature is HMAC-SHA256 over magic, header and pickle, with ``RIVERFLOW_MODEL_SIGNING_KEY``;
its length is 0 for an unsigned snapshot. Pickle runs code when loaded, so :func:`loads` checks
the signature *before* unpickling, and refuses unsigned snapshots whenever a key is configured.

The header carries the learner's input positions: a snapshot is also the learner's checkpoint.

>>> blob = dumps(SnapshotHeader("m", 3, "regression"), {"w": 1.0}, key=b"k")
>>> snap = loads(blob, key=b"k")
>>> snap.header.version, snap.model
(3, {'w': 1.0})
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import pickle
import platform
import struct
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import river

from riverflow.errors import SnapshotError

MAGIC = b"RFSNAP1\n"
_U32 = struct.Struct(">I")

# snapshot_rejected_total{reason} values.
REJECT_REASONS = ("unsigned", "bad_signature", "unreadable", "wrong_task", "wrong_model")


@dataclass
class SnapshotHeader:
    model: str
    version: int
    task: str
    created_ts: int = field(default_factory=lambda: time.time_ns() // 1_000_000)
    learned_count: int = 0
    # "topic/partition" -> next offset to read: where a restarted learner resumes.
    positions: dict[str, int] = field(default_factory=dict)
    river_version: str = river.__version__
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
    head = json.dumps(asdict(header), separators=(",", ":"), sort_keys=True).encode()
    payload = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    if evaluation is not None:
        payload += pickle.dumps(evaluation, protocol=pickle.HIGHEST_PROTOCOL)
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
    except (ValueError, TypeError, struct.error, UnicodeDecodeError) as exc:
        raise SnapshotError("unreadable", f"unreadable snapshot: {exc}") from None
    return header, head, sig, payload


def loads(
    data: bytes,
    key: bytes | None = None,
    task: str | None = None,
    model: str | None = None,
    evaluation: bool = False,
) -> Snapshot:
    """Verify and load a snapshot; raise :class:`SnapshotError` with a bounded reason.

    ``evaluation``: also load the learner's evaluation state, when the snapshot has one."""
    header, head, sig, payload = read_header(data)
    if model is not None and header.model != model:
        raise SnapshotError("wrong_model", f"snapshot is for model {header.model!r}, not {model!r}")
    if task is not None and header.task != task:
        raise SnapshotError(
            "wrong_task", f"snapshot v{header.version} is a {header.task} model, not {task}"
        )
    if key:
        if not sig:
            raise SnapshotError(
                "unsigned", f"snapshot v{header.version} is unsigned and a signing key is set"
            )
        if not hmac.compare_digest(sig, _sign(key, head, payload)):
            raise SnapshotError(
                "bad_signature", f"snapshot v{header.version} has a wrong signature"
            )
    stream = io.BytesIO(payload)
    state = None
    try:
        estimator = pickle.load(stream)  # noqa: S301 - verified above when a key is set
        if evaluation and stream.tell() < len(payload):
            state = pickle.load(stream)  # noqa: S301
    except Exception as exc:
        raise SnapshotError(
            "unreadable", f"cannot unpickle snapshot v{header.version}: {exc}"
        ) from None
    return Snapshot(header, estimator, len(data), state)
