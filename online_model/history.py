"""Where a model's versions live besides the models topic, and how they are named there.

The models topic keeps only the latest snapshot per model (compaction by key). Every publisher
(the learner, ``riverflow models``) also writes each snapshot to the history topic under the key
``NAME@VERSION`` and, in the same transaction, a tombstone for ``NAME@(VERSION-K)``: compaction
then keeps the last K versions of each model (``model_history``, default 20) and drops older
ones, whatever their size. Versions of a lineage grow by one, so one tombstone per publish
retires exactly the version that falls out of the window.

Pins live on the models topic itself, under ``NAME@pin`` (see
:mod:`riverflow.online_model.operations`): every inference worker already reads that topic.

>>> history_key("logreg", 7)
b'logreg@7'
>>> parse_history_key(b"logreg@7"), parse_history_key(b"logreg@pin")
(('logreg', 7), None)
>>> [(k, v) for k, v in history_records("m", 25, b"blob", keep=20)]
[(b'm@25', b'blob'), (b'm@5', None)]
"""

from __future__ import annotations

PIN_SUFFIX = "@pin"


def history_key(name: str, version: int) -> bytes:
    return f"{name}@{version}".encode()


def parse_history_key(key: bytes | None) -> tuple[str, int] | None:
    """``(name, version)`` of a history key; None for anything else."""
    if not key:
        return None
    name, sep, version = key.decode(errors="replace").rpartition("@")
    if not sep or not name or not version.isdigit():
        return None
    return name, int(version)


def pin_key(name: str) -> bytes:
    return (name + PIN_SUFFIX).encode()


def history_records(
    name: str, version: int, blob: bytes, keep: int
) -> list[tuple[bytes, bytes | None]]:
    """The history topic's records for publishing ``blob`` as ``version``: the snapshot, and
    the tombstone of the version that leaves the window of the last ``keep``."""
    records: list[tuple[bytes, bytes | None]] = [(history_key(name, version), blob)]
    if version - keep >= 1:
        records.append((history_key(name, version - keep), None))
    return records
