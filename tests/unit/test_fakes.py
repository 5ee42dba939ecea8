"""The in-memory fake of the transport passes the contract checks the real transports pass."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.fakes import FakeKafka
from tests.transport_contract import CHECK_IDS, CHECKS, Env


@pytest.mark.parametrize("check", CHECKS, ids=CHECK_IDS)
def test_fake_keeps_the_contract(check: Callable[[Env], None]) -> None:
    clients = FakeKafka().clients()
    check(Env(clients, clients.admin(), timeout_s=2.0))
