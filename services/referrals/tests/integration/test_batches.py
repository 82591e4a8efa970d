"""Referrals handles a batch as one unit of work: the messages of a batch see each other's
changes, and the batch reads its cases once and writes each table once (SQLite and PostgreSQL)."""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pimms_contracts import topics
from pimms_contracts.base import Event
from pimms_referrals.adapters.repository import ReferralsRepos
from pimms_referrals.app import build_runtime
from pimms_referrals.settings import ReferralsSettings
from pimms_servicekit.clock import ManualClock
from pimms_servicekit.messages import Incoming
from pimms_servicekit.outbox import Outgoing
from pimms_servicekit.runtime import ServiceRuntime
from pimms_servicekit.testing import event_message
from sqlalchemy import event

pytestmark = pytest.mark.integration

_TABLE = re.compile(r"^\s*(SELECT\b.*?\bFROM|INSERT INTO|UPDATE|DELETE FROM)\s+(\w+)", re.I | re.S)


@dataclass
class Published:
    """Collects what the outbox relay publishes (no broker needed)."""

    messages: list[Outgoing] = field(default_factory=list)

    async def send(self, messages: Sequence[Outgoing]) -> tuple[int, BaseException | None]:
        self.messages.extend(messages)
        return len(messages), None

    def lifecycle(self, case_id: Any) -> list[str]:
        return [
            dict(m.headers)["ce_type"].decode().removeprefix("fr.pimms.").removesuffix(".v1")
            for m in self.messages
            if m.topic == topics.CASES and m.key == str(case_id).encode()
        ]


@dataclass
class Referrals:
    runtime: ServiceRuntime[ReferralsRepos]
    published: Published
    statements: Counter[tuple[str, str]] = field(default_factory=Counter)
    _offsets: itertools.count[int] = field(default_factory=itertools.count)

    async def batch(self, *messages: tuple[str, Event]) -> None:
        """One poll's worth of records, processed as one batch, then relayed."""
        incomings = []
        for topic, payload in messages:
            _, key, value, headers = event_message(
                topic, payload, key=str(payload.case_id), correlation_id="corr-b"
            )
            incomings.append(
                Incoming(
                    topic=topic,
                    partition=0,
                    offset=next(self._offsets),
                    key=key,
                    value=value,
                    headers=tuple(headers),
                    timestamp_ms=0,
                )
            )
        self.statements.clear()
        await self.runtime.pipeline.process_incoming(incomings)
        await self.runtime.relay.drain()

    def referral_ids(self, case_id: Any) -> list[str]:
        return [
            json.loads(m.value or b"")["referral_id"]
            for m in self.published.messages
            if m.topic == topics.CASES
            and m.key == str(case_id).encode()
            and dict(m.headers)["ce_type"] == b"fr.pimms.referral.requested.v1"
        ]

    def on_referrals_tables(self) -> Counter[tuple[str, str]]:
        return Counter(
            {
                k: n
                for k, n in self.statements.items()
                if k[1] in {"cases", "referrals", "referral_events", "timers"}
            }
        )


@pytest.fixture
async def referrals(database_url: str, tmp_path: Path) -> AsyncIterator[Referrals]:
    settings = ReferralsSettings(data_dir=tmp_path, database_url=database_url)
    runtime = build_runtime(settings, clock=ManualClock())
    published = Published()
    runtime.use_sender(published)
    await runtime.prepare_database()
    seen = Referrals(runtime, published)

    @event.listens_for(runtime.database.engine.sync_engine, "before_cursor_execute")
    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        found = _TABLE.match(statement)
        if found:
            verb = found.group(1).split()[0].upper()
            seen.statements[(verb, found.group(2).lower())] += 1

    yield seen
    await runtime.database.dispose()


async def test_the_messages_of_one_batch_see_each_others_changes(
    referrals: Referrals, build: Any
) -> None:
    lyon = build.case_opened(category="energy_bill", postal_code="69008")
    paris_water = build.case_opened(category="water_bill", postal_code="75001")
    await referrals.batch(
        (topics.INTAKE_CASES, lyon),
        (topics.INTAKE_CASES, paris_water),
        (topics.INTAKE_CASES, build.documents_added(paris_water, ("last_bill",))),
        (topics.INTAKE_CASES, build.withdrawn(paris_water, "resolved_at_desk")),
        (topics.INTAKE_CASES, build.withdrawn(paris_water, "duplicate")),  # already closed
    )
    assert referrals.published.lifecycle(lyon.case_id) == ["case.opened", "referral.requested"]
    assert referrals.published.lifecycle(paris_water.case_id) == [
        "case.opened",
        "referral.unroutable",
        "case.closed",
    ]
    [edf] = referrals.referral_ids(lyon.case_id)
    case_id = str(lyon.case_id)
    await referrals.batch(
        (topics.PARTNER_REPORTS, build.delivered(case_id, edf)),
        (topics.PARTNER_REPORTS, build.reported(case_id, edf, "accepted")),
        (topics.PARTNER_REPORTS, build.reported(case_id, edf, "received")),  # refused
        (topics.PARTNER_REPORTS, build.reported(case_id, edf, "completed", outcome="resolved")),
        (topics.INTAKE_CASES, build.withdrawn(lyon)),  # too late: closed by then
    )
    assert referrals.published.lifecycle(lyon.case_id) == [
        "case.opened",
        "referral.requested",
        "referral.transmitted",
        "referral.accepted",
        "referral.completed",
        "case.closed",
    ]
    [alert] = [m for m in referrals.published.messages if m.topic == topics.REFERRAL_ALERTS]
    assert json.loads(alert.value or b"")["current_status"] == "accepted"
    async with referrals.runtime.database.sessions() as session:
        repo = referrals.runtime.pipeline.repositories(session)
        stored = await repo.stored_referral(edf)
        history = await repo.history(edf)
        lyon_case = await repo.case(case_id)
        water_case = await repo.case(str(paris_water.case_id))
    assert stored is not None
    assert (stored.status, stored.outcome) == ("completed", "resolved")
    assert stored.acknowledged_at is not None
    assert [(status, source) for status, _, source, _ in history] == [
        ("requested", "routing"),
        ("transmitted", "gateway"),
        ("accepted", "partner"),
        ("completed", "partner"),
    ]
    assert lyon_case is not None
    assert water_case is not None
    assert (lyon_case.outcome, lyon_case.close_reason) == ("resolved", None)
    assert (water_case.outcome, water_case.close_reason) == ("withdrawn", "resolved_at_desk")
    assert water_case.documents == ("id_card", "last_bill")


async def test_a_batch_reads_its_cases_once_and_writes_each_table_once(
    referrals: Referrals, build: Any
) -> None:
    opened = [build.case_opened(category="energy_bill", postal_code="69008") for _ in range(20)]
    await referrals.batch(*((topics.INTAKE_CASES, case) for case in opened))
    assert referrals.on_referrals_tables() == {
        ("SELECT", "cases"): 1,  # the batch's cases, none found: no referral to read
        ("INSERT", "cases"): 1,
        ("INSERT", "referrals"): 1,
        ("INSERT", "referral_events"): 1,
    }
    reports: list[tuple[str, Event]] = []
    for case in opened:
        case_id = str(case.case_id)
        [edf] = referrals.referral_ids(case.case_id)
        reports.append((topics.PARTNER_REPORTS, build.delivered(case_id, edf)))
        reports.append(
            (topics.PARTNER_REPORTS, build.reported(case_id, edf, "completed", outcome="resolved"))
        )
    await referrals.batch(*reports)
    assert referrals.on_referrals_tables() == {
        ("SELECT", "cases"): 1,
        ("SELECT", "referrals"): 1,
        ("UPDATE", "cases"): 1,  # the 20 closings
        ("UPDATE", "referrals"): 1,  # each referral's last state
        ("INSERT", "referral_events"): 1,  # the 40 history lines
    }
    for case in opened:
        assert referrals.published.lifecycle(case.case_id)[-2:] == [
            "referral.completed",
            "case.closed",
        ]


async def test_a_batch_writes_the_sla_timers_of_its_referrals_in_one_statement(
    referrals: Referrals, build: Any
) -> None:
    opened = [build.case_opened(category="energy_bill", postal_code="69008") for _ in range(20)]
    await referrals.batch(*((topics.INTAKE_CASES, case) for case in opened))
    sent = [(str(c.case_id), referrals.referral_ids(c.case_id)[0]) for c in opened]
    await referrals.batch(*((topics.PARTNER_REPORTS, build.delivered(c, r)) for c, r in sent))
    assert referrals.on_referrals_tables() == {
        ("SELECT", "cases"): 1,
        ("SELECT", "referrals"): 1,
        ("UPDATE", "referrals"): 1,
        ("INSERT", "referral_events"): 1,
        ("INSERT", "timers"): 1,  # reminder, escalation and expiry of the 20
    }
    await referrals.batch(
        *((topics.PARTNER_REPORTS, build.reported(c, r, "received")) for c, r in sent)
    )
    assert referrals.on_referrals_tables() == {
        ("SELECT", "cases"): 1,
        ("SELECT", "referrals"): 1,
        ("UPDATE", "referrals"): 1,
        ("INSERT", "referral_events"): 1,
        ("DELETE", "timers"): 1,  # acknowledged: no reminder, no escalation any more
    }
    async with referrals.runtime.database.sessions() as session:
        repo = referrals.runtime.pipeline.repositories(session)
        for _, referral_id in sent:
            assert [t.kind for t in await repo.pending_timers(referral_id)] == ["expiry"]
