"""The seam between riverflow and Kafka: one contract (:mod:`riverflow.transport.base`), two
transports behind it, chosen by the ``kafka_client`` setting (``RIVERFLOW_KAFKA_CLIENT``).
Workers receive clients made by :func:`clients_for`; none imports a Kafka client library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from riverflow.errors import ConfigError
from riverflow.transport.base import (
    Admin,
    Batch,
    Clients,
    Consumer,
    Message,
    Producer,
    RebalanceListener,
    Record,
    TopicPartition,
    lag_samples,
    topic_partitions,
)

if TYPE_CHECKING:
    from riverflow.settings import Settings

__all__ = [
    "Admin",
    "Batch",
    "Clients",
    "Consumer",
    "Message",
    "Producer",
    "RebalanceListener",
    "Record",
    "TopicPartition",
    "clients_for",
    "lag_samples",
    "topic_partitions",
]

FAST_EXTRA = 'pip install "riverflow[fast]"'


def clients_for(settings: Settings) -> Clients:
    """The clients of the transport ``settings.kafka_client`` names: ``kafka-python`` (the
    default, pure Python) or ``confluent`` (librdkafka, from the ``fast`` extra)."""
    if settings.kafka_client == "confluent":
        try:
            from riverflow.transport.confluent import ConfluentClients
        except ImportError as exc:
            if exc.name != "confluent_kafka":
                raise
            raise ConfigError(
                f"the confluent Kafka client needs confluent-kafka: {FAST_EXTRA}, or use "
                "--kafka-client kafka-python"
            ) from None
        return ConfluentClients(settings)
    from riverflow.transport.kafka_python import KafkaPythonClients

    return KafkaPythonClients(settings)
