"""Command-line flags every command shares, and the settings they override.

Worker and producer modules import their shared flags from here, never from
:mod:`riverflow.cli`, which imports them: the CLI is the top of the import graph.
A flag whose ``dest`` is a :class:`~riverflow.settings.Settings` field overrides the environment.
"""

from __future__ import annotations

import argparse
from typing import Any

from riverflow.settings import Settings, load_settings


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed flags that name a settings field (unset ones are None and hide nothing)."""
    fields = Settings.model_fields
    return {k: v for k, v in vars(args).items() if k in fields}


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from the environment with every flag named after a settings field on top."""
    return load_settings(**flag_overrides(args))


def add_kafka_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap-servers",
        dest="bootstrap_servers",
        metavar="HOST:PORT[,...]",
        help="Kafka bootstrap servers (env RIVERFLOW_BOOTSTRAP_SERVERS, default 127.0.0.1:9092)",
    )
    parser.add_argument(
        "--kafka-client",
        dest="kafka_client",
        choices=["kafka-python", "confluent"],
        help="Kafka client library (env RIVERFLOW_KAFKA_CLIENT, default kafka-python; "
        'confluent: librdkafka, from pip install "riverflow[fast]")',
    )


def add_worker_arguments(parser: argparse.ArgumentParser, kind: str, metrics_port: int) -> None:
    """The flags every long-running consumer has: ``kind`` is infer or learn."""
    parser.add_argument(
        "--model",
        dest="model",
        metavar="NAME",
        help="preset (logreg, hoeffding, arf, nb, linreg, htr, hst) or module:factory "
        "(default logreg)",
    )
    parser.add_argument(
        "--metrics-port",
        dest="metrics_port",
        type=int,
        metavar="P",
        help=f"Prometheus metrics port (default {metrics_port}; 0: off)",
    )
    parser.add_argument(
        "--idle-exit",
        dest="idle_exit_s",
        type=float,
        metavar="S",
        help="stop cleanly (flush, commit, snapshot) after S seconds without input",
    )
    parser.add_argument(
        "--group-id",
        dest="group_id",
        help=f"consumer group (default riverflow-{kind}-<deployment>)",
    )
    parser.add_argument(
        "--instance-id",
        dest="instance_id",
        metavar="ID",
        help="static group member id, one per worker: a restart under the same id gets its "
        "partitions back at once ({hostname} is replaced; default: dynamic membership)",
    )
    parser.add_argument(
        "--deployment",
        dest="deployment",
        metavar="NAME",
        help="the deployment label of every metric, to tell deployments apart on one "
        "Prometheus (default: the model's name)",
    )
    add_mapping_argument(parser)


def add_mapping_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mapping",
        dest="mapping",
        metavar="FILE",
        help="TOML mapping: where readings and feedback are in records of another shape "
        "(env RIVERFLOW_MAPPING; default: riverflow's own messages)",
    )
