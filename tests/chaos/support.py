"""Helpers for the chaos suite: strict /metrics parsing, topic configs. The integration kit
(``tests/integration``) provides the rest, a broker that may be killed included
(``outage_support``)."""

from __future__ import annotations

import urllib.request

from kafka.admin import ConfigResource, ConfigResourceType
from prometheus_client.parser import text_string_to_metric_families

from riverflow.clients import admin
from riverflow.scrape import Page
from riverflow.settings import Settings
from tests.integration.kit import WorkerProcess, value


def strict_page(worker: WorkerProcess) -> Page:
    """The worker's /metrics page, which must answer and parse (a parse error fails the test)."""
    url = f"http://127.0.0.1:{worker.port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    families = list(text_string_to_metric_families(text))
    assert families, f"{worker.command}: empty /metrics page"
    return Page.parse(text)


def assert_alive(*workers: WorkerProcess) -> None:
    for w in workers:
        assert w.proc.poll() is None, f"{w.command} exited {w.proc.returncode}:\n{w.text()[-3000:]}"


def set_topic_config(settings: Settings, topic: str, **configs: str) -> None:
    """Alter a topic's configs (``max_message_bytes="..."`` sets ``max.message.bytes``)."""
    client = admin(settings)
    try:
        resource = ConfigResource(
            ConfigResourceType.TOPIC,
            topic,
            configs={k.replace("_", "."): v for k, v in configs.items()},
        )
        client.alter_configs([resource])
    finally:
        client.close()


def sample(page: Page, name: str, **labels: str) -> float:
    """A sample's value, which must be there (``name`` or ``name_total``)."""
    found = value(page, name, **labels)
    assert found is not None, f"no sample {name}{labels or ''} on the page"
    return found
