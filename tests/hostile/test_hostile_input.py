"""Hostile input on every inbound topic, services as real processes, on SQLite and PostgreSQL.

One message of each hostile kind goes to the front-office needs topic and to EDF's and La Poste's
responses topics, then valid needs behind them. Every hostile message gets its `need.rejected`
or its dead letter with the right reason (a valid need behind hostile headers is accepted once),
the valid needs reach their partners and close, nothing stalls, every service stays alive.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from harness import (
    all_alive,
    audit,
    drive,
    need_message,
    platform_running,
    referral_rows,
    valid_needs,
)
from hostile_inputs import hostile_messages, unanswered
from pimms_cli.config import SERVICES
from pimms_servicekit.tansu import TansuBroker
from pimms_servicekit.testing import KafkaEndpoint, fresh_postgres_database, produce

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

VALID_BEHIND = 24


@pytest.fixture
def kafka() -> Iterator[KafkaEndpoint]:
    """A broker of this test's own: the partners' answers of one backend's run must not reach
    the other's gateway (they would be dead-lettered there as unknown references)."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield KafkaEndpoint(os.environ["KAFKA_BOOTSTRAP_SERVERS"], "env", False)
        return
    with TansuBroker() as broker:
        yield KafkaEndpoint(broker.bootstrap_servers, "tansu", False)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_hostile_input_is_answered_and_nothing_stalls(
    backend: str, kafka: KafkaEndpoint, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    hostiles = hostile_messages(run)
    needs = valid_needs(VALID_BEHIND)
    async with AsyncExitStack() as stack:
        urls: dict[str, str] = {}
        if backend == "postgresql":
            for spec in SERVICES:
                urls[spec.name] = await stack.enter_async_context(fresh_postgres_database())
        platform, watcher = await stack.enter_async_context(
            platform_running(tmp_path, bootstrap=kafka.bootstrap_servers, database_urls=urls)
        )
        started = time.monotonic()
        await produce(kafka.bootstrap_servers, [h.message() for h in hostiles])
        await produce(kafka.bootstrap_servers, [need_message(n) for n in needs])
        await drive(
            platform,
            watcher,
            needs,
            timeout=float(os.environ.get("PIMMS_HOSTILE_TIMEOUT_S", "240")),
            pending=lambda: unanswered(hostiles, watcher.records),
        )
        took = time.monotonic() - started
        found = audit(watcher, needs, db_referrals=await referral_rows(platform))
        print(
            f"\n[hostile] {backend}: {len(hostiles)} hostile messages answered, "
            f"{found.line('valid behind', stall=None)} in {took:.0f}s"
        )
        assert unanswered(hostiles, watcher.records) == []
        assert found.problems == []
        assert found.lost == 0
        assert found.duplicated == 0
        assert all_alive(platform) == []
