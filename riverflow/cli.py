"""The ``riverflow`` command: one entry point, subcommands loaded on demand.

Every worker module exposes ``add_arguments(parser)`` and ``run(args) -> int``; the flags they
share, and the settings those flags override, live in :mod:`riverflow.options`.
Exit codes: 0 clean, 1 runtime failure, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from riverflow import __version__
from riverflow.config_file import CONFIG_ENV, config_path, read_config
from riverflow.errors import ConfigError, RiverflowError
from riverflow.lifecycle import hold_signals, release_signals
from riverflow.options import add_kafka_arguments, add_mapping_argument, settings_from
from riverflow.settings import unknown_config, unknown_env
from riverflow.transport.errors import TransportError

if TYPE_CHECKING:
    from riverflow.local_kafka import LocalKafka

log = logging.getLogger("riverflow")

# name -> (module, one-line help); modules are imported only for the command that runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": (
        "riverflow.producers.simulate",
        "synthetic sensor fleet with injectable drift and labels",
    ),
    "replay": (
        "riverflow.producers.replay",
        "replay a River dataset or a CSV file as readings + feedback",
    ),
    "infer": (
        "riverflow.consumers.inference.worker",
        "inference consumer: predict on every reading",
    ),
    "learn": (
        "riverflow.consumers.learner.worker",
        "learner: join feedback, learn, evaluate, publish models",
    ),
    "up": ("riverflow.up", "run the whole pipeline on this machine with a live summary"),
    "reset": ("riverflow.reset", "delete riverflow's topics and consumer groups on the broker"),
    "mapping": (
        "riverflow.mapping_check",
        "mapping check FILE: show what a payload mapping reads from its topics",
    ),
    "models": ("riverflow.models_cli", "list, show, export, import, train, roll back, pin models"),
}
# Commands whose loop installs a Stopper: a signal while they start is held for it.
GRACEFUL = {"simulate", "replay", "infer", "learn", "up"}


def _kafka(args: argparse.Namespace) -> int:
    from riverflow.local_kafka import LocalKafka

    port = settings_from(args).kafka_port
    given = LocalKafka(port, Path(args.data_dir)) if args.data_dir else None
    # Without --data-dir, stop and status act on the broker riverflow last started on the port.
    recorded = LocalKafka.on_port(port)
    if args.action == "start":
        return _kafka_start(given or LocalKafka(port), recorded, args.fresh)
    broker = given or recorded
    pid = broker.pid()
    if args.action == "stop":
        if broker.stop():
            print(f"Kafka on port {port} stopped (pid {pid}); its data stays in {broker.home}")
        elif broker.answers():
            print(_not_ours(broker), file=sys.stderr)
            return 1
        else:
            print(f"no Kafka runs on port {port}")
        return 0
    answers = broker.answers()
    if pid is not None:
        state = "running" if answers else "starting or stuck"
        print(f"Kafka on {broker.bootstrap}: {state} (pid {pid}, data in {broker.home})")
    elif answers:
        print(f"Kafka on {broker.bootstrap}: running. " + _not_ours(broker))
    else:
        print(f"Kafka on {broker.bootstrap}: stopped")
    return 0 if answers else 1


def _kafka_start(broker: LocalKafka, recorded: LocalKafka, fresh: bool) -> int:
    running = next((b for b in (broker, recorded) if b.pid() is not None), None)
    if running is not None or broker.answers():
        where = f" (pid {running.pid()}, data in {running.home})" if running else ""
        if fresh:
            raise ConfigError(
                f"Kafka already runs on port {broker.port}{where}: stop it first "
                f"(`riverflow kafka stop --port {broker.port}`), then start it --fresh"
            )
        print(f"Kafka already runs at {broker.bootstrap}{where}; left as it is")
    else:
        if fresh:
            removed = broker.wipe()
            gone = ", ".join(p.name for p in removed) or "nothing to delete"
            print(f"fresh start in {broker.home}: {gone}")
        broker.start()
        print(f"Kafka is up at {broker.bootstrap} (data in {broker.home}, log {broker.log_file})")
    print(f"export RIVERFLOW_BOOTSTRAP_SERVERS={broker.bootstrap}")
    return 0


def _not_ours(broker: LocalKafka) -> str:
    return (
        f"riverflow has no record of starting it (no running broker's pid in {broker.home}). "
        "If you started it with `riverflow kafka start --data-dir DIR`, pass "
        f"`--port {broker.port} --data-dir DIR`; otherwise stop it the way it was started."
    )


def _topics(args: argparse.Namespace) -> int:
    from riverflow.mapping import mapped_settings, mapping_of
    from riverflow.topics import create_topics

    settings = settings_from(args)
    for line in create_topics(mapped_settings(settings, mapping_of(settings)), args.partitions):
        print(line)
    return 0


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")


def log_level(text: str) -> str:
    """A log level name in any case (``debug``, ``Debug``), as logging spells it."""
    level = text.strip().upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a log level: one of {', '.join(LOG_LEVELS)} (any case)"
        )
    return level


def _add_global_options(parser: argparse.ArgumentParser, default: str | None) -> None:
    parser.add_argument(
        "--log-level",
        type=log_level,
        default=default,
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING or ERROR, any case (env RIVERFLOW_LOG_LEVEL, default INFO)",
    )
    parser.add_argument(
        "--config",
        default=default,
        metavar="FILE",
        help="settings file in TOML, keys named like the RIVERFLOW_* variables without the "
        f"prefix; the environment and flags override it (env {CONFIG_ENV})",
    )


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser for ``argv`` (the arguments after the program name): only the module of the
    command ``argv`` names is imported, so ``riverflow --help`` stays cheap."""
    parser = argparse.ArgumentParser(
        prog="riverflow",
        description="Real-time inference and online learning on Kafka with River models.",
    )
    parser.add_argument("--version", action="version", version=f"riverflow {__version__}")
    _add_global_options(parser, None)
    # --log-level and --config are also taken after the subcommand; unset there, they leave the
    # first ones alone.
    common = argparse.ArgumentParser(add_help=False)
    _add_global_options(common, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    kafka = sub.add_parser(
        "kafka", parents=[common], help="local single-node Apache Kafka (KRaft) for dev and tests"
    )
    kafka.add_argument("action", choices=["start", "stop", "status"])
    kafka.add_argument(
        "--port",
        dest="kafka_port",
        type=int,
        help="client port (env RIVERFLOW_KAFKA_PORT, default 9092; the controller uses PORT+1)",
    )
    kafka.add_argument(
        "--data-dir",
        help="broker storage, log and pid (default ~/.local/state/riverflow/kafka-PORT; stop and "
        "status find the broker started on the port without it)",
    )
    kafka.add_argument(
        "--fresh",
        action="store_true",
        help="start: delete the data dir's Kafka storage and log first (every topic, offset and "
        "model on it)",
    )
    kafka.set_defaults(func=_kafka)

    topics = sub.add_parser(
        "topics", parents=[common], help="create every riverflow topic (idempotent)"
    )
    topics.add_argument("action", choices=["create"])
    topics.add_argument("--partitions", type=int, help="partitions per data topic (default 6)")
    add_kafka_arguments(topics)
    add_mapping_argument(topics)
    topics.set_defaults(func=_topics)

    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        if name in argv:
            mod = importlib.import_module(module)
            add_kafka_arguments(p)
            mod.add_arguments(p)
            p.set_defaults(func=mod.run)
    return parser


class _BrokerTroubleFilter(logging.Filter):
    """Drops kafka-python's reports of broker trouble: while a broker is away it logs every
    failed connection attempt, retry and socket error, many lines a second, some with a
    traceback. riverflow reports the broker's state itself, one line per change
    (:mod:`riverflow.connectivity`), and every error that reaches it. kafka-python's reports of
    its own crashes (an exception that is neither a Kafka nor a network error) still show."""

    def __init__(self) -> None:
        super().__init__()
        from kafka.errors import KafkaError  # here: `riverflow --help` stays free of kafka

        self._trouble = (KafkaError, OSError)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "kafka" and not record.name.startswith("kafka."):
            return True
        exc = record.exc_info[1] if record.exc_info else None
        return exc is not None and not isinstance(exc, self._trouble)


def _logging_options(args: argparse.Namespace) -> tuple[str, str]:
    """The log level (flag, else RIVERFLOW_LOG_LEVEL, else the config file's log_level, else
    INFO) and format (RIVERFLOW_LOG_FORMAT, else the file's log_format: text or json); a bad
    value is a ConfigError like any other setting's."""
    path = config_path()
    file = read_config(path) if path else {}

    def given(name: str, default: str) -> tuple[str, str]:
        if os.environ.get(f"RIVERFLOW_{name.upper()}"):
            return os.environ[f"RIVERFLOW_{name.upper()}"], f"RIVERFLOW_{name.upper()}"
        if name in file:
            return str(file[name]), f"{name} in {path}"
        return default, name

    level = args.log_level
    if level is None:
        text, source = given("log_level", "INFO")
        try:
            level = log_level(text)
        except argparse.ArgumentTypeError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    text, source = given("log_format", "text")
    fmt = text.strip().lower()
    if fmt not in LOG_FORMATS:
        raise ConfigError(f"{source}: {fmt!r} is not a log format: text (default) or json")
    return level, fmt


def _configure_logging(level: str, fmt: str = "text") -> None:
    handler: logging.Handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        # One JSON object per line for log shippers; `extra=` fields become keys of their own.
        handler.setFormatter(
            JsonFormatter(
                "%(levelname)s %(name)s %(message)s",
                rename_fields={"levelname": "level", "name": "logger"},
                timestamp="time",
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    # kafka-python is chatty at INFO (every connection); its reports of broker trouble show
    # with --log-level DEBUG only.
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    if level != "DEBUG":
        for each in logging.getLogger().handlers:
            each.addFilter(_BrokerTroubleFilter())


def main(argv: Sequence[str] | None = None) -> int:
    hold_signals()
    try:
        return _run(sys.argv[1:] if argv is None else list(argv))
    finally:
        release_signals(deliver=False)


def _run(argv: list[str]) -> int:
    args = build_parser(argv).parse_args(argv)
    if args.command not in GRACEFUL:
        release_signals()
    if args.config:
        # Through the environment, so the processes `up` starts read the same file.
        os.environ[CONFIG_ENV] = str(Path(args.config).resolve())
    try:
        _configure_logging(*_logging_options(args))
        warnings = unknown_env(os.environ) + unknown_config()
    except ConfigError as exc:
        print(f"riverflow: error: {exc}", file=sys.stderr)
        return 2
    for warning in warnings:
        log.warning("%s", warning)
    func: Any = args.func
    try:
        return int(func(args) or 0)
    except ConfigError as exc:
        print(f"riverflow: error: {exc}", file=sys.stderr)
        return 2
    except TransportError as exc:
        # Workers ride out broker trouble; a command that ends on it says so in a line.
        print(f"riverflow: Kafka failed: {exc}", file=sys.stderr)
        return 1
    except RiverflowError as exc:
        print(f"riverflow: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        from kafka.errors import KafkaError

        if not isinstance(exc, KafkaError):
            raise
        # Workers ride out broker trouble; a command that ends on it says so in a line.
        print(f"riverflow: Kafka failed: {exc}", file=sys.stderr)  # str() names the type
        return 1
    except KeyboardInterrupt:
        return 130
