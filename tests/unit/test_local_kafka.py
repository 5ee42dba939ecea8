from __future__ import annotations

import base64
from pathlib import Path

import pytest

from riverflow.errors import BrokerError
from riverflow.local_kafka import LocalKafka, _kafka_uuid, default_data_dir, kafka_version


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


def test_missing_java_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BrokerError, match="install"):
        LocalKafka(port=29092, data_dir=tmp_path)._java()
