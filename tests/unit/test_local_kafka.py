from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from riverflow.kafka_jars import kafka_version
from riverflow.local_kafka import LocalKafka, _kafka_uuid, default_data_dir


def test_pinned_kafka_is_4x() -> None:
    assert kafka_version().startswith("4.")


def test_cluster_id_is_16_bytes_base64url() -> None:
    cid = _kafka_uuid()
    assert len(base64.urlsafe_b64decode(cid + "==")) == 16 and "=" not in cid


def test_config_is_single_node_kraft_on_loopback(tmp_path: Path) -> None:
    broker = LocalKafka(port=29092, data_dir=tmp_path)
    text = broker._write_config().read_text()
    assert "process.roles=broker,controller" in text
    assert "listeners=PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093" in text
    assert "transaction.state.log.replication.factor=1" in text
    assert "group.initial.rebalance.delay.ms=0" in text
    assert broker.bootstrap == "127.0.0.1:29092"


def test_default_data_dir_depends_on_port() -> None:
    assert default_data_dir(1) != default_data_dir(2)


def test_stop_without_a_broker_is_harmless(tmp_path: Path) -> None:
    assert LocalKafka(port=29092, data_dir=tmp_path).stop() is False


def test_a_pid_file_naming_another_process_is_not_a_broker(tmp_path: Path) -> None:
    broker = LocalKafka(port=29092, data_dir=tmp_path)
    broker.pid_file.write_text(str(os.getpid()))  # alive, but pytest, not kafka.Kafka
    assert broker.pid() is None
    assert broker.stop() is False and not broker.pid_file.exists()


def test_wipe_deletes_the_broker_state_and_nothing_else(tmp_path: Path) -> None:
    broker = LocalKafka(port=29092, data_dir=tmp_path)
    broker._write_config()
    (tmp_path / "log" / "sensor-readings-0").mkdir(parents=True)
    broker.log_file.write_text("started")
    (tmp_path / "notes.txt").write_text("mine")
    assert {p.name for p in broker.wipe()} == {"log", "broker.log", "server.properties"}
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    assert broker.wipe() == []


def test_on_port_finds_the_recorded_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert LocalKafka.on_port(29092).home == default_data_dir(29092)
    registry = tmp_path / "state" / "riverflow" / "brokers" / "kafka-29092"
    registry.parent.mkdir(parents=True)
    registry.write_text(str(tmp_path / "elsewhere"))
    assert LocalKafka.on_port(29092).home == tmp_path / "elsewhere"
    assert LocalKafka.on_port(29094).home == default_data_dir(29094)
