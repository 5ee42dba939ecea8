"""``riverflow models``: see, export, import, train, roll back, pin and delete models.

Every command reads the models and history topics whole (:mod:`riverflow.model_store`). What
publishes (import, train, rollback, pin, unpin, delete) needs the signing key, or the explicit
unsigned opt-in, exactly like the learner; what loads a snapshot (show, import, rollback, pin)
verifies it first and unpickles it with the workers' restricted unpickler, so a command refuses
what a worker would refuse. A new version is always the highest version the topics know plus
one (:func:`riverflow.online_model.operations.derive` says what it keeps).

Exit codes: 0 done, 1 refused or failed (nothing published), 2 usage or configuration.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import time
from pathlib import Path
from typing import Any

from riverflow.consumers.inference.model_follower import trust_from
from riverflow.errors import ConfigError, RiverflowError, SnapshotError
from riverflow.model_store import ModelStore, Stored, Write
from riverflow.online_model import operations
from riverflow.online_model.history import history_key, pin_key
from riverflow.online_model.presets import resolve
from riverflow.online_model.snapshot import (
    Snapshot,
    SnapshotHeader,
    Trust,
    dumps,
    loads,
    read_header,
    verify,
)
from riverflow.online_model.tasks import task_of
from riverflow.options import settings_from
from riverflow.settings import Settings

log = logging.getLogger(__name__)

ACTIONS: dict[str, str] = {
    "list": "every model: version, task, learned, size, age, signed, pinned",
    "show": "a version's header, the estimator's description and parameters",
    "export": "write a version's signed snapshot to a file, byte for byte",
    "import": "verify a snapshot file, then publish it as a model's next version",
    "train": "learn a model from a River dataset or a CSV file and publish it",
    "rollback": "serve an earlier version again, published as a new version",
    "pin": "make inference serve one version until unpinned",
    "unpin": "return inference to the latest version",
    "delete": "delete a model: its snapshot, pin and history (tombstones)",
}


class Refused(RiverflowError):
    """The command will not do it (exit 1): nothing was published."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    kafka = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: unset after the action, it leaves a value given before it alone.
    kafka.add_argument(
        "--bootstrap-servers",
        dest="bootstrap_servers",
        default=argparse.SUPPRESS,
        metavar="HOST:PORT[,...]",
        help="Kafka bootstrap servers (env RIVERFLOW_BOOTSTRAP_SERVERS)",
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[kafka], help=ACTIONS[name], description=ACTIONS[name])

    action("list")
    show = action("show")
    show.add_argument("name", metavar="NAME")
    show.add_argument("--version", type=int, metavar="V", help="default: the latest")
    export = action("export")
    export.add_argument("name", metavar="NAME")
    export.add_argument("--version", type=int, metavar="V", help="default: the latest")
    export.add_argument("-o", "--output", required=True, metavar="FILE")
    imp = action("import")
    imp.add_argument("file", metavar="FILE")
    imp.add_argument("--name", metavar="NAME", help="default: the name in the snapshot")
    train = action("train")
    train.add_argument(
        "--model",
        required=True,
        metavar="PRESET|module:factory",
        help="preset (logreg, hoeffding, arf, nb, linreg, htr, hst) or module:factory",
    )
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--from",
        dest="source",
        metavar="DATASET|CSV",
        help="a River dataset shipped with the package (e.g. phishing) or a CSV file",
    )
    source.add_argument(
        "--mapping",
        metavar="FILE",
        help="learn from the readings and feedback topics as this mapping reads them "
        "(riverflow/mapping.py), each read to its end",
    )
    train.add_argument("--target", help="CSV: the label column (required for CSV)")
    train.add_argument("--name", metavar="NAME", help="default: the preset or factory name")
    rollback = action("rollback")
    rollback.add_argument("name", metavar="NAME")
    rollback.add_argument("--to", dest="to", type=int, required=True, metavar="VERSION")
    pin = action("pin")
    pin.add_argument("name", metavar="NAME")
    pin.add_argument("version", type=int, metavar="VERSION")
    unpin = action("unpin")
    unpin.add_argument("name", metavar="NAME")
    delete = action("delete")
    delete.add_argument("name", metavar="NAME")
    delete.add_argument("--yes", action="store_true", help="delete without asking")


def run(args: argparse.Namespace) -> int:
    # train's --model is the model setting: a factory's module is then allowed in snapshots.
    settings = settings_from(args)
    handler = globals()[f"_{args.action}"]
    return int(handler(settings, args) or 0)


# -- reading -------------------------------------------------------------------------------


def _trust(settings: Settings, publishes: bool) -> Trust:
    return trust_from(settings, publishes=publishes)


def _version_blob(stored: Stored, name: str, version: int | None) -> bytes:
    """The snapshot of ``name`` at ``version`` (None: the latest)."""
    latest = stored.latest(name)
    if version is None:
        if latest is None:
            raise Refused(f"no model {name!r} on the models topic{_known(stored)}")
        return latest
    blob = stored.versions(name).get(version)
    if blob is None and latest is not None and _header(latest).version == version:
        blob = latest
    if blob is None:
        kept = sorted(stored.versions(name))
        have = f"versions kept: {_ranges(kept)}" if kept else "no versions kept"
        raise Refused(f"{name} v{version} is not kept ({have})")
    return blob


def _known(stored: Stored) -> str:
    names = stored.names()
    return f" (models: {', '.join(names)})" if names else " (there is no model yet)"


def _header(blob: bytes) -> SnapshotHeader:
    return read_header(blob)[0]


def _load(blob: bytes, trust: Trust, name: str | None = None) -> Snapshot:
    """Verify, check the versions it was built with, unpickle restricted; as workers do."""
    header = verify(blob, trust, model=name)[0]
    refusal, warnings = operations.compatibility(header)
    if refusal:
        raise Refused(refusal)
    for warning in warnings:
        log.warning("%s", warning)
    snap = loads(blob, trust, model=name)
    try:
        task = task_of(snap.model)
    except ConfigError as exc:
        raise SnapshotError("wrong_task", f"snapshot v{header.version}: {exc}") from None
    if task != header.task:
        raise SnapshotError(
            "wrong_task", f"snapshot v{header.version} holds a {task} estimator, not {header.task}"
        )
    return snap


def _lineage(stored: Stored, name: str, trust: Trust, task: str) -> tuple[bytes | None, int]:
    """The latest snapshot of ``name`` (verified; None for a new model) and the next version.
    A latest snapshot that does not verify stops the command, as it stops the learner."""
    latest = stored.latest(name)
    top = max(stored.versions(name), default=0)
    if latest is not None:
        try:
            header = verify(latest, trust, model=name)[0]
        except SnapshotError as exc:
            raise Refused(f"the latest snapshot of {name} does not verify: {exc}") from None
        if header.task != task:
            raise Refused(f"{name} is a {header.task} model; this one is {task}")
        top = max(top, header.version)
    return latest, top + 1


# -- commands ------------------------------------------------------------------------------


def _list(settings: Settings, args: argparse.Namespace) -> int:
    stored = ModelStore(settings).read()
    key = _key(settings)
    rows = [("MODEL", "VERSION", "TASK", "LEARNED", "SIZE", "AGE", "SIGNED", "PINNED", "KEPT")]
    now = now_ms()
    for name in stored.names():
        latest, kept = stored.latest(name), sorted(stored.versions(name))
        pinned = "-"
        pin = stored.pin(name)
        if pin is not None and operations.kind_of(_header(pin)) == "pin":
            pinned = f"v{_header(pin).version}"
        if latest is None:
            rows.append((name, "-", "-", "-", "-", "-", "-", pinned, _ranges(kept)))
            continue
        h = _header(latest)
        rows.append(
            (
                name,
                str(h.version),
                h.task,
                f"{h.learned_count:,}",
                _size(len(latest)),
                _age((now - h.created_ts) / 1000),
                _signed(latest, key),
                pinned,
                _ranges(kept),
            )
        )
    if len(rows) == 1:
        print(f"no models on {settings.models_topic}")
        return 0
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _show(settings: Settings, args: argparse.Namespace) -> int:
    stored = ModelStore(settings).read()
    blob = _version_blob(stored, args.name, args.version)
    snap = _load(blob, _trust(settings, publishes=False), args.name)
    h = snap.header
    print(f"model      {h.model}")
    print(f"version    {h.version}")
    print(f"task       {h.task}")
    print(f"learned    {h.learned_count:,}")
    print(f"created    {_when(h.created_ts)}")
    print(f"size       {_size(snap.size)}")
    print(f"signed     {_signed(blob, _key(settings))}")
    print(f"built with River {h.river_version}, Python {h.python_version}")
    operation = h.extra.get("operation")
    if isinstance(operation, dict):
        print(f"made by    riverflow models {operation.get('kind')} {_describe_op(operation)}")
    if h.positions:
        where = ", ".join(f"{k}@{v}" for k, v in sorted(h.positions.items()))
        print(f"positions  {where}")
    print(f"estimator  {type(snap.model).__module__}.{type(snap.model).__qualname__}")
    for line in repr(snap.model).splitlines():
        print(f"  {line}")
    params = getattr(snap.model, "_get_params", None)
    if callable(params):
        print("parameters")
        for k, v in sorted(params().items()):
            print(f"  {k} = {v!r}")
    return 0


def _export(settings: Settings, args: argparse.Namespace) -> int:
    stored = ModelStore(settings).read()
    blob = _version_blob(stored, args.name, args.version)
    header = verify(blob, _trust(settings, publishes=False), model=args.name)[0]
    Path(args.output).write_bytes(blob)
    digest = hashlib.sha256(blob).hexdigest()
    print(f"wrote {args.output}: {header.model} v{header.version}, {len(blob):,} bytes")
    print(f"sha256 {digest}")
    return 0


def _import(settings: Settings, args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    trust = _trust(settings, publishes=True)
    snap = _load(blob, trust)
    name = args.name or snap.header.model
    store = ModelStore(settings)
    latest, version = _lineage(store.read(), name, trust, snap.header.task)
    operation = {"kind": "import", "file": path.name, "from_version": snap.header.version}
    new = operations.derive(blob, latest, version, operation, trust.key, now_ms(), name)
    store.write(store.version_writes(name, version, new))
    print(f"imported {path.name} ({snap.header.model} v{snap.header.version}) as {name} v{version}")
    return 0


def _rollback(settings: Settings, args: argparse.Namespace) -> int:
    trust = _trust(settings, publishes=True)
    store = ModelStore(settings)
    stored = store.read()
    source = _version_blob(stored, args.name, args.to)
    snap = _load(source, trust, args.name)
    latest, version = _lineage(stored, args.name, trust, snap.header.task)
    operation = {"kind": "rollback", "from_version": args.to}
    new = operations.derive(source, latest, version, operation, trust.key, now_ms(), args.name)
    store.write(store.version_writes(args.name, version, new))
    print(f"rolled {args.name} back to v{args.to}: published as v{version}")
    return 0


def _pin(settings: Settings, args: argparse.Namespace) -> int:
    trust = _trust(settings, publishes=True)
    store = ModelStore(settings)
    source = _version_blob(store.read(), args.name, args.version)
    _load(source, trust, args.name)
    record = operations.pin_record(source, trust.key, now_ms())
    store.write([(settings.models_topic, pin_key(args.name), record)])
    print(f"pinned {args.name} to v{args.version}: inference serves it until `unpin`")
    return 0


def _unpin(settings: Settings, args: argparse.Namespace) -> int:
    trust = _trust(settings, publishes=True)
    store = ModelStore(settings)
    stored = store.read()
    pin = stored.pin(args.name)
    if pin is None or operations.kind_of(_header(pin)) != "pin":
        print(f"{args.name} is not pinned")
        return 0
    task = _header(pin).task
    record = operations.unpin_record(args.name, task, trust.key, now_ms())
    store.write([(settings.models_topic, pin_key(args.name), record)])
    print(f"unpinned {args.name}: inference serves the latest version again")
    return 0


def _delete(settings: Settings, args: argparse.Namespace) -> int:
    _trust(settings, publishes=True)  # deleting is publishing: the same requirement
    store = ModelStore(settings)
    stored = store.read()
    name = args.name
    latest, pin, kept = stored.latest(name), stored.pin(name), sorted(stored.versions(name))
    if latest is None and pin is None and not kept:
        raise Refused(f"no model {name!r}{_known(stored)}")
    print(f"riverflow models delete {name} removes:")
    if latest is not None:
        print(f"  {settings.models_topic}: {name} (v{_header(latest).version}, the latest)")
    if pin is not None:
        print(f"  {settings.models_topic}: {name}@pin")
    if kept:
        print(f"  {settings.models_history_topic}: versions {_ranges(kept)}")
    if not args.yes and not _confirmed():
        print("nothing deleted")
        return 1
    writes: list[Write] = [(settings.models_topic, name.encode(), None)]
    if pin is not None:
        writes.append((settings.models_topic, pin_key(name), None))
    writes += [(settings.models_history_topic, history_key(name, v), None) for v in kept]
    store.write(writes)
    print(f"deleted {name}; a running learner publishes it again from version 1")
    return 0


def _train(settings: Settings, args: argparse.Namespace) -> int:
    from riverflow.mapping import load_mapping
    from riverflow.model_training import Bar, mapped_rows, train
    from riverflow.producers.tabular import dataset_size, open_source

    spec = resolve(args.model)
    trust = _trust(settings, publishes=True)
    name = args.name or spec.name
    store = ModelStore(settings)
    latest, version = _lineage(store.read(), name, trust, spec.task)
    window, detector = settings.rolling_window, settings.concept_drift_detector
    if args.mapping:
        if args.target:
            raise ConfigError("--target is for CSV files; a mapping names the label's path")
        mapping = load_mapping(args.mapping)
        rows, refused = mapped_rows(settings, mapping, store.clients)
        if refused:
            log.warning(
                "%d records of the mapped topics did not fit the mapping: left out", refused
            )
        source = f"{mapping.readings_topic(settings)} through {Path(args.mapping).name}"
        trained = train(spec, rows, window, detector, Bar(len(rows)), clean=False)
    else:
        source = args.source
        table = open_source(args.source, target=args.target)
        trained = train(spec, table.rows, window, detector, Bar(dataset_size(args.source)))
    if not trained.learned:
        raise Refused(f"nothing learned from {source}: no row had a label the model took")
    print(
        f"trained {spec.name} on {trained.learned:,} rows of {source} in "
        f"{trained.seconds:.1f}s ({trained.skipped:,} skipped)"
    )
    print("progressive validation (test-then-train):")
    for metric, span, value in trained.evaluation["learner"].values():
        if span == "cumulative":
            print(f"  {metric:<10} {value:.6f}")
    header = SnapshotHeader(name, version, spec.task, learned_count=trained.learned)
    blob = dumps(header, trained.model, trust.key, evaluation=trained.evaluation)
    operation = {"kind": "train", "source": Path(source).name, "rows": trained.learned}
    new = operations.derive(blob, latest, version, operation, trust.key, now_ms(), name)
    store.write(store.version_writes(name, version, new))
    print(f"published {name} v{version}")
    return 0


# -- formatting ----------------------------------------------------------------------------


def _key(settings: Settings) -> bytes | None:
    secret = settings.model_signing_key
    return secret.get_secret_value().encode() if secret else None


def _signed(blob: bytes, key: bytes | None) -> str:
    sig = read_header(blob)[2]
    if not sig:
        return "unsigned"
    if key is None:
        return "signed (no key to check)"
    try:
        verify(blob, Trust(key))
    except SnapshotError:
        return "BAD SIGNATURE"
    return "verified"


def _ranges(versions: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``v1-v3, v7``."""
    runs: list[list[int]] = []
    for v in versions:
        if runs and v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    return ", ".join(f"v{a}" if a == b else f"v{a}-v{b}" for a, b in runs) or "-"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    return f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MiB"


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{max(0, seconds):.0f}s"


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))


def _describe_op(operation: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in operation.items() if k != "kind")


def _confirmed() -> bool:
    if not sys.stdin.isatty():
        raise ConfigError("stdin is not a terminal: pass --yes to delete without asking")
    return input("delete all of this? [y/N] ").strip().lower() in ("y", "yes")
