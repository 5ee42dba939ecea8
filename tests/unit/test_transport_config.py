"""Settings to client configuration, for each transport, and the transport's selection."""

from __future__ import annotations

import sys

import pytest
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor

from riverflow import dead_letters
from riverflow.errors import ConfigError
from riverflow.settings import Settings, load_settings
from riverflow.transport import clients_for, confluent, kafka_python

SECURE = dict(
    bootstrap_servers="a:1,b:2",
    security_protocol="SASL_SSL",
    sasl_mechanism="SCRAM-SHA-512",
    sasl_username="bob",
    sasl_password="s3cret",
    ssl_cafile="/ca.pem",
    ssl_certfile="/cert.pem",
    ssl_keyfile="/key.pem",
    ssl_password="k3y",
)


def test_confluent_security_settings_map_to_librdkafka_names() -> None:
    assert confluent.client_config(load_settings(**SECURE)) == {
        "bootstrap.servers": "a:1,b:2",
        "security.protocol": "SASL_SSL",
        "topic.metadata.refresh.interval.ms": 30000,
        "reconnect.backoff.max.ms": 1000,
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "bob",
        "sasl.password": "s3cret",
        "ssl.ca.location": "/ca.pem",
        "ssl.certificate.location": "/cert.pem",
        "ssl.key.location": "/key.pem",
        "ssl.key.password": "k3y",
    }


def test_kafka_python_security_settings_map_to_its_keyword_arguments() -> None:
    kw = kafka_python.client_config(load_settings(**SECURE))
    assert kw["sasl_plain_username"] == "bob" and kw["sasl_plain_password"] == "s3cret"
    assert kw["ssl_certfile"] == "/cert.pem" and kw["ssl_password"] == "k3y"


def test_consumers_read_committed_and_never_commit_by_themselves() -> None:
    s = Settings(max_poll_records=50, auto_offset_reset="latest")
    k = kafka_python.consumer_config(s, "g")
    c = confluent.consumer_config(s, "g")
    assert (k["enable_auto_commit"], c["enable.auto.commit"]) == (False, False)
    assert (k["isolation_level"], c["isolation.level"]) == ("read_committed", "read_committed")
    assert (k["auto_offset_reset"], c["auto.offset.reset"]) == ("latest", "latest")
    assert (k["group_id"], c["group.id"]) == ("g", "g")
    assert k["max_poll_records"] == 50
    assert c["partition.assignment.strategy"] == "range,roundrobin"
    assert [a.name for a in k["partition_assignment_strategy"]] == ["range", "roundrobin"]


def test_consumer_options_map_to_each_clients_names() -> None:
    options = dict(
        cooperative=True,
        session_timeout_ms=10_000,
        heartbeat_interval_ms=3_000,
        max_record_bytes=16 << 20,
        committed_only=False,
    )
    k = kafka_python.consumer_config(Settings(), "learners", **options)
    c = confluent.consumer_config(Settings(), "learners", **options)
    assert k["partition_assignment_strategy"] == (CooperativeStickyAssignor,)
    assert c["partition.assignment.strategy"] == "cooperative-sticky"
    assert (k["session_timeout_ms"], c["session.timeout.ms"]) == (10_000, 10_000)
    assert (k["heartbeat_interval_ms"], c["heartbeat.interval.ms"]) == (3_000, 3_000)
    assert k["max_partition_fetch_bytes"] == k["fetch_max_bytes"] == 16 << 20
    assert c["max.partition.fetch.bytes"] == c["fetch.max.bytes"] == 16 << 20
    assert (k["isolation_level"], c["isolation.level"]) == ("read_uncommitted",) * 2


def test_static_membership_and_session_timeouts_map_to_each_clients_names() -> None:
    s = load_settings(instance_id="infer-{hostname}", session_timeout_s=12)
    k = kafka_python.consumer_config(s, "g")
    c = confluent.consumer_config(s, "g")
    assert k["group_instance_id"] == c["group.instance.id"] == s.instance_id
    assert s.instance_id is not None and "{hostname}" not in s.instance_id
    assert (k["session_timeout_ms"], c["session.timeout.ms"]) == (12_000, 12_000)
    assert (k["heartbeat_interval_ms"], c["heartbeat.interval.ms"]) == (3_000, 3_000)
    dynamic = Settings()
    assert kafka_python.consumer_config(dynamic, "g")["group_instance_id"] is None
    assert "group.instance.id" not in confluent.consumer_config(dynamic, "g")
    # An assign-only reader is no group member: no instance id, whatever the settings say.
    assert "group_instance_id" not in kafka_python.consumer_config(s, None)
    assert "group.instance.id" not in confluent.consumer_config(s, None)


def test_an_assign_only_confluent_reader_gets_a_group_it_never_joins() -> None:
    assert confluent.consumer_config(Settings(client_id="rf"), None)["group.id"] == "rf-unjoined"
    assert kafka_python.consumer_config(Settings(), None)["group_id"] is None


def test_producers_are_idempotent_with_murmur2_keys_and_room_for_dead_letters() -> None:
    s = Settings(max_message_bytes=64)
    k = kafka_python.producer_config(s)
    c = confluent.producer_config(s)
    assert (k["acks"], c["acks"], c["enable.idempotence"]) == ("all", "all", True)
    assert (k["linger_ms"], c["linger.ms"]) == (5, 5)
    assert k["max_request_size"] == c["message.max.bytes"] == dead_letters.MAX_RECORD_BYTES
    assert c["partitioner"] == "murmur2_random"
    assert "transactional.id" not in c and "transactional_id" not in k
    # Records wait out an outage in the producer: a week.
    assert k["delivery_timeout_ms"] == c["message.timeout.ms"] == 7 * 24 * 3600 * 1000


def test_producer_options_map_to_each_clients_names() -> None:
    options = dict(
        transactional_id="t", transaction_timeout_ms=15_000, max_request_bytes=16 << 20, linger_ms=0
    )
    k = kafka_python.producer_config(Settings(), **options)
    c = confluent.producer_config(Settings(), **options)
    assert (k["transactional_id"], c["transactional.id"]) == ("t", "t")
    assert (k["transaction_timeout_ms"], c["transaction.timeout.ms"]) == (15_000, 15_000)
    assert (k["max_request_size"], c["message.max.bytes"]) == (16 << 20, 16 << 20)
    assert (k["linger_ms"], c["linger.ms"]) == (0, 0)
    assert "message.timeout.ms" not in c  # librdkafka: at most the transaction's timeout


def test_the_client_is_chosen_by_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert clients_for(Settings()).name == "kafka-python"
    monkeypatch.setenv("RIVERFLOW_KAFKA_CLIENT", "confluent")
    assert clients_for(load_settings()).name == "confluent"
    with pytest.raises(ConfigError, match="kafka_client"):
        load_settings(kafka_client="librdkafka")


def test_confluent_without_its_package_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)  # import fails as if absent
    monkeypatch.delitem(sys.modules, "riverflow.transport.confluent")
    with pytest.raises(ConfigError, match=r'pip install "riverflow\[fast\]"'):
        clients_for(Settings(kafka_client="confluent"))
