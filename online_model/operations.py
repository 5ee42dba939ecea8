"""Snapshots an operator makes (``riverflow models``): derived versions, pins, compatibility.

Pure logic on snapshot bytes, no Kafka and no unpickling (the caller verifies and loads).

- A *derived* snapshot (import, rollback, train) is the next version of a model's lineage: the
  estimator comes from the source, everything else from the lineage's latest snapshot (the
  learner's checkpoint: positions, waiting offsets, watermark; its learned count and its
  evaluation state), so a learner that resumes from it or adopts it changes only its estimator.
  Its header says what made it: ``extra["operation"]``.
- A *pin* record (models topic, key ``NAME@pin``) is the pinned version's snapshot re-signed
  with ``extra["pin"]``; an *unpin* record is a header with ``extra["unpin"]`` and no payload.
  Both are signed like snapshots, so only the key holder pins or unpins, and both carry the time
  they were made so a worker never goes back to an older pin decision it has passed.

>>> from riverflow.online_model.snapshot import dumps, read_header
>>> src = dumps(SnapshotHeader("m", 3, "regression"), {"w": 1.0}, key=b"k", evaluation=[1])
>>> base = dumps(SnapshotHeader("m", 9, "regression", learned_count=90,
...              positions={"t/0": 5}, extra={"watermark": 7}), {"w": 2.0}, key=b"k",
...              evaluation=[2])
>>> new = derive(src, base, 10, {"kind": "rollback", "from_version": 3}, b"k", now_ms=1)
>>> h = read_header(new)[0]
>>> h.version, h.learned_count, h.positions, h.extra["watermark"], h.extra["operation"]["kind"]
(10, 90, {'t/0': 5}, 7, 'rollback')
>>> kind_of(read_header(pin_record(src, b"k", now_ms=2))[0])
'pin'
"""

from __future__ import annotations

import pickletools
import platform
from dataclasses import replace
from typing import Any, Literal

from riverflow.errors import SnapshotError
from riverflow.online_model.snapshot import RIVER_VERSION, SnapshotHeader, assemble, read_header
from riverflow.online_model.tasks import Task

Kind = Literal["snapshot", "operation", "pin", "unpin"]
# Header extras that belong to one record, never carried into the next version.
OWN_EXTRAS = ("operation", "pin", "unpin")


def kind_of(header: SnapshotHeader) -> Kind:
    """What a record on the models topic is: a learner's snapshot, an operator's version of the
    lineage, a pin or an unpin."""
    for kind in ("pin", "unpin", "operation"):
        if kind in header.extra:
            return kind
    return "snapshot"


def control_time(header: SnapshotHeader) -> int:
    """When a pin or unpin record was made (epoch ms), 0 if it says nothing usable."""
    mark = header.extra.get("pin") or header.extra.get("unpin")
    at = mark.get("at") if isinstance(mark, dict) else None
    return at if type(at) is int else 0


def split_payload(payload: bytes) -> tuple[bytes, bytes]:
    """The estimator's pickle and what follows it (the learner's evaluation state, or nothing),
    found by reading pickle opcodes up to the first STOP: nothing is unpickled."""
    try:
        for opcode, _, pos in pickletools.genops(payload):
            if opcode.name == "STOP":
                assert pos is not None
                return payload[: pos + 1], payload[pos + 1 :]
    except (ValueError, EOFError) as exc:
        raise SnapshotError("unreadable", f"snapshot payload is not a pickle: {exc}") from None
    raise SnapshotError("unreadable", "snapshot payload has no complete pickle")


def derive(
    source: bytes,
    base: bytes | None,
    version: int,
    operation: dict[str, Any],
    key: bytes | None,
    now_ms: int,
    name: str | None = None,
) -> bytes:
    """``source``'s estimator as ``version`` of the lineage whose latest snapshot is ``base``
    (None: a new lineage, which then keeps ``source``'s evaluation state and learned count but
    no positions, which belong to another lineage's topics). Both are verified already."""
    src, _, _, src_payload = read_header(source)
    model_pickle, src_evaluation = split_payload(src_payload)
    if base is None:
        learned, positions, extra, evaluation = src.learned_count, {}, {}, src_evaluation
    else:
        b, _, _, base_payload = read_header(base)
        learned, positions = b.learned_count, dict(b.positions)
        extra = {k: v for k, v in b.extra.items() if k not in OWN_EXTRAS}
        evaluation = split_payload(base_payload)[1] or src_evaluation
    extra["operation"] = {**operation, "at": now_ms}
    header = SnapshotHeader(
        model=name or src.model,
        version=version,
        task=src.task,
        created_ts=now_ms,
        learned_count=learned,
        positions=positions,
        river_version=src.river_version,
        python_version=src.python_version,
        extra=extra,
    )
    return assemble(header, model_pickle + evaluation, key)


def pin_record(source: bytes, key: bytes | None, now_ms: int) -> bytes:
    """The pin of ``source``'s version: its snapshot, re-signed with the pin's time."""
    header, _, _, payload = read_header(source)
    extra = {k: v for k, v in header.extra.items() if k not in OWN_EXTRAS}
    extra["pin"] = {"at": now_ms}
    return assemble(replace(header, extra=extra), payload, key)


def unpin_record(name: str, task: Task, key: bytes | None, now_ms: int) -> bytes:
    header = SnapshotHeader(name, 0, task, created_ts=now_ms, extra={"unpin": {"at": now_ms}})
    return assemble(header, b"", key)


def compatibility(header: SnapshotHeader) -> tuple[str | None, list[str]]:
    """Whether this process can load a snapshot built elsewhere: a refusal (another River
    major.minor: its classes' pickled state may not match this River's) and warnings (another
    River patch or Python minor version: usually loads, check its predictions)."""
    warnings = []
    theirs, ours = header.river_version, RIVER_VERSION
    if theirs != ours:
        if theirs.split(".")[:2] != ours.split(".")[:2]:
            return (
                f"snapshot v{header.version} was built with River {theirs}, this is River "
                f"{ours}: retrain it here (`riverflow models train`) or run River {theirs}",
                [],
            )
        warnings.append(f"snapshot v{header.version} was built with River {theirs}, not {ours}")
    py, our_py = header.python_version, platform.python_version()
    if py.split(".")[:2] != our_py.split(".")[:2]:
        warnings.append(f"snapshot v{header.version} was built with Python {py}, not {our_py}")
    return None, warnings
