"""The local broker's own steps, with the real Kafka tools."""

from __future__ import annotations

from pathlib import Path

import pytest

import riverflow.local_kafka as lk


def test_storage_is_formatted_even_when_the_cluster_id_starts_with_a_dash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lk, "_kafka_uuid", lambda: "-" + "A" * 21)
    broker = lk.LocalKafka(port=29092, data_dir=tmp_path)
    config = broker._write_config()
    broker._format(broker._java(), f"{lk.ensure_jars()}/*", config)
    assert (tmp_path / "log" / "meta.properties").exists()
