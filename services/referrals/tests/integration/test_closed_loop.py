"""The closed loop on a real database (SQLite and PostgreSQL) with an injected clock: silent
partners are reminded, escalated and expired by durable timers that survive restarts and fire
once; incomplete naturalisation files are held until their documents arrive."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pimms_contracts import topics
from pimms_contracts.base import Event
from pimms_contracts.v1.internal import (
    IntakeCaseOpened,
    IntakeDocumentsAdded,
    PartnerDeliveryFailed,
)
from pimms_referrals.adapters.repository import ReferralsRepos
from pimms_referrals.app import build_runtime
from pimms_referrals.scheduler import fire_due_timers
from pimms_referrals.settings import ReferralsSettings
from pimms_servicekit.clock import ManualClock
from pimms_servicekit.messages import Incoming
from pimms_servicekit.outbox import Outgoing
from pimms_servicekit.runtime import ServiceRuntime
from pimms_servicekit.testing import event_message, executed_statements

pytestmark = pytest.mark.integration

EDF_ACK, EDF_RESOLVE = timedelta(hours=48), timedelta(days=15)
CHECKLIST = ["id_card", "birth_certificate", "proof_of_address", "tax_notices", "language_diploma"]


@dataclass
class Published:
    """What the outbox relays publish, in order (no broker needed)."""

    messages: list[Outgoing] = field(default_factory=list)

    async def send(self, messages: Sequence[Outgoing]) -> tuple[int, BaseException | None]:
        self.messages.extend(messages)
        return len(messages), None

    def lifecycle(self, case_id: Any) -> list[tuple[str, dict[str, Any]]]:
        """(ce_type without prefix and version, data) on pimms.cases.v1 for one case."""
        return [
            (
                dict(m.headers)["ce_type"].decode().removeprefix("fr.pimms.").removesuffix(".v1"),
                json.loads(m.value or b""),
            )
            for m in self.messages
            if m.topic == topics.CASES and m.key == str(case_id).encode()
        ]

    def kinds(self, case_id: Any) -> list[str]:
        return [kind for kind, _ in self.lifecycle(case_id)]


@dataclass
class Referrals:
    """The referrals service on one database; `restart` is a new process on the same database."""

    database_url: str
    data_dir: Path
    clock: ManualClock = field(default_factory=ManualClock)
    published: Published = field(default_factory=Published)
    runtime: ServiceRuntime[ReferralsRepos] | None = None
    _offsets: itertools.count[int] = field(default_factory=itertools.count)

    async def start(self) -> Referrals:
        settings = ReferralsSettings(data_dir=self.data_dir, database_url=self.database_url)
        self.runtime = build_runtime(settings, clock=self.clock)
        self.runtime.use_sender(self.published)
        await self.runtime.prepare_database()
        return self

    async def stop(self) -> None:
        if self.runtime is not None:
            await self.runtime.database.dispose()
            self.runtime = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    @property
    def running(self) -> ServiceRuntime[ReferralsRepos]:
        assert self.runtime is not None
        return self.runtime

    async def send(self, topic: str, payload: Event, *, ce_id: str | None = None) -> str:
        """Handle one message as the consumer would; return its ce_id."""
        _, key, value, headers = event_message(
            topic, payload, key=str(payload.case_id), correlation_id="corr-loop"
        )
        ce_id = ce_id or str(uuid.uuid4())
        headers = [(k, ce_id.encode() if k == "ce_id" else v) for k, v in headers]
        incoming = Incoming(
            topic=topic,
            partition=0,
            offset=next(self._offsets),
            key=key,
            value=value,
            headers=tuple(headers),
            timestamp_ms=0,
        )
        await self.running.pipeline.process_incoming([incoming])
        await self.running.relay.drain()
        return ce_id

    async def intake(self, payload: Event) -> str:
        return await self.send(topics.INTAKE_CASES, payload)

    async def gateway(self, payload: Event) -> str:
        return await self.send(topics.PARTNER_REPORTS, payload)

    async def tick(self, *, limit: int = 200) -> int:
        """One scheduler pass at the clock's time, then what it caused is published."""
        fired = await fire_due_timers(self.running, limit=limit)
        await self.running.relay.drain()
        return fired

    async def later(self, delta: timedelta) -> int:
        self.clock.advance(delta)
        return await self.tick()

    def referral_id(self, case_id: Any, *, kind: str = "referral.requested") -> str:
        [first, *_] = [data for k, data in self.published.lifecycle(case_id) if k == kind]
        return str(first["referral_id"])

    async def timers(self, referral_id: str) -> list[tuple[str, datetime]]:
        async with self.running.database.sessions() as session:
            repo = self.running.pipeline.repositories(session)
            return [(t.kind, t.due_at) for t in await repo.pending_timers(referral_id)]

    async def timeline(self, referral_id: str) -> list[dict[str, Any]]:
        async with self.running.database.sessions() as session:
            return await self.running.pipeline.repositories(session).timeline(referral_id)


@pytest.fixture
async def referrals(database_url: str, tmp_path: Path) -> AsyncIterator[Referrals]:
    service = await Referrals(database_url, tmp_path).start()
    yield service
    await service.stop()


def documents_added(
    case: IntakeCaseOpened, *, added: Sequence[str], held: Sequence[str]
) -> IntakeDocumentsAdded:
    return IntakeDocumentsAdded(
        case_id=case.case_id,
        case_reference=case.case_reference,
        added=tuple(added),
        documents=tuple(held),
        added_at=datetime(2026, 11, 27, 9, 0, tzinfo=UTC),
    )


def delivery_failed(case_id: str, referral_id: str, *, partner_id: str, reason: str) -> Event:
    return PartnerDeliveryFailed.model_validate(
        {
            "case_id": case_id,
            "referral_id": referral_id,
            "partner_id": partner_id,
            "reason": reason,
            "failed_at": "2026-11-27T09:31:00+01:00",
        },
        strict=False,
    )


async def test_a_silent_partner_is_reminded_escalated_and_expired_and_restarts_change_nothing(
    referrals: Referrals, build: Any
) -> None:
    case = build.case_opened(category="energy_bill", postal_code="69008")
    await referrals.intake(case)
    case_id, referral_id = str(case.case_id), referrals.referral_id(case.case_id)
    assert await referrals.timers(referral_id) == []  # nothing sent yet: no clock runs
    await referrals.gateway(build.delivered(case_id, referral_id))
    sent = referrals.clock.now()
    assert await referrals.timers(referral_id) == [
        ("reminder", sent + EDF_ACK),
        ("escalation", sent + 2 * EDF_ACK),
        ("expiry", sent + EDF_RESOLVE),
    ]
    steps = ["case.opened", "referral.requested", "referral.transmitted"]

    assert await referrals.later(EDF_ACK - timedelta(minutes=1)) == 0
    await referrals.restart()
    assert await referrals.later(timedelta(minutes=1)) == 1  # at its ack deadline
    assert referrals.published.kinds(case_id) == [*steps, "referral.reminded"]
    reminded = referrals.published.lifecycle(case_id)[-1][1]
    assert reminded == {
        "case_id": case_id,
        "case_reference": case.case_reference,
        "site_id": "lyon-8",
        "occurred_at": reminded["occurred_at"],
        "referral_id": referral_id,
        "partner_id": "edf",
        "status": "transmitted",
        "reason": "no_acknowledgement",
        "reminder": 1,
        "due_at": reminded["due_at"],
    }
    assert datetime.fromisoformat(reminded["due_at"]) == sent + EDF_ACK
    reminder_message = referrals.published.messages[-1]
    assert dict(reminder_message.headers)["ce_correlationid"] == b"corr-loop"
    # the gateway's note that the reminder went out changes nothing
    await referrals.gateway(build.delivered(case_id, referral_id, kind="reminder"))
    await referrals.restart()
    assert await referrals.tick() == 0
    assert referrals.published.kinds(case_id) == [*steps, "referral.reminded"]

    assert await referrals.later(EDF_ACK) == 1  # twice the ack delay: the mediator steps in
    assert referrals.published.kinds(case_id) == [*steps, "referral.reminded", "referral.escalated"]
    escalated = referrals.published.lifecycle(case_id)[-1][1]
    assert datetime.fromisoformat(escalated["due_at"]) == sent + 2 * EDF_ACK
    await referrals.restart()
    assert await referrals.later(timedelta(days=5)) == 0

    referrals.clock.advance(sent + EDF_RESOLVE - referrals.clock.now())
    await referrals.restart()
    assert await referrals.tick() == 1
    assert referrals.published.kinds(case_id) == [
        *steps,
        "referral.reminded",
        "referral.escalated",
        "referral.expired",
        "case.closed",
    ]
    expired, closed = (data for _, data in referrals.published.lifecycle(case_id)[-2:])
    assert expired["reason"] == "no_final_answer"
    assert closed["outcome"] == "not_resolved"
    await referrals.restart()
    assert await referrals.later(timedelta(days=30)) == 0
    assert referrals.published.kinds(case_id)[-1] == "case.closed"
    assert await referrals.timers(referral_id) == []
    timeline = await referrals.timeline(referral_id)
    assert [(t["from_stage"], t["to_stage"], t["actor"]) for t in timeline] == [
        ("new", "requested", "routing"),
        ("requested", "transmitted", "gateway"),
        ("transmitted", "expired", "platform_timer"),
    ]
    assert timeline[-1]["source_event"] == f"expiry:{referral_id}"
    assert timeline[-1]["at"] == sent + EDF_RESOLVE


async def test_a_partner_that_answers_after_the_first_reminder_is_not_chased_again(
    referrals: Referrals, build: Any
) -> None:
    case = build.case_opened(category="energy_bill", postal_code="69008")
    await referrals.intake(case)
    case_id, referral_id = str(case.case_id), referrals.referral_id(case.case_id)
    await referrals.gateway(build.delivered(case_id, referral_id))
    sent = referrals.clock.now()
    assert await referrals.later(EDF_ACK) == 1
    report_id = await referrals.gateway(build.reported(case_id, referral_id, "received"))
    assert await referrals.timers(referral_id) == [("expiry", sent + EDF_RESOLVE)]
    await referrals.restart()
    for _ in range(6):  # past twice the ack delay, and more
        assert await referrals.later(EDF_ACK) == 0
    kinds = referrals.published.kinds(case_id)
    assert kinds.count("referral.reminded") == 1
    assert "referral.escalated" not in kinds
    assert kinds[-1] == "referral.received"
    await referrals.gateway(build.reported(case_id, referral_id, "completed", outcome="resolved"))
    assert referrals.published.kinds(case_id)[-2:] == ["referral.completed", "case.closed"]
    assert await referrals.timers(referral_id) == []
    assert await referrals.later(EDF_RESOLVE) == 0
    received = (await referrals.timeline(referral_id))[2]
    assert (received["to_stage"], received["actor"], received["source_event"]) == (
        "received",
        "partner",
        report_id,
    )


async def test_a_partner_that_acknowledges_but_never_finishes_still_expires(
    referrals: Referrals, build: Any
) -> None:
    case = build.case_opened(category="energy_bill", postal_code="69008")
    await referrals.intake(case)
    case_id, referral_id = str(case.case_id), referrals.referral_id(case.case_id)
    await referrals.gateway(build.delivered(case_id, referral_id))
    await referrals.gateway(build.reported(case_id, referral_id, "in_progress"))
    assert await referrals.later(EDF_RESOLVE - timedelta(seconds=1)) == 0
    assert await referrals.later(timedelta(seconds=1)) == 1
    assert referrals.published.kinds(case_id)[-3:] == [
        "referral.in_progress",
        "referral.expired",
        "case.closed",
    ]
    # a late answer after expiry is refused, as any move out of a final status
    await referrals.gateway(build.reported(case_id, referral_id, "completed", outcome="resolved"))
    assert referrals.published.kinds(case_id)[-1] == "case.closed"


async def test_an_incomplete_naturalisation_file_is_held_until_its_documents_complete_it(
    referrals: Referrals, build: Any
) -> None:
    case = build.case_opened(
        category="naturalisation", postal_code="69003", documents=("id_card", "birth_certificate")
    )
    opened_by = await referrals.intake(case)
    case_id = str(case.case_id)
    assert referrals.published.kinds(case_id) == ["case.opened", "referral.on_hold"]
    held = referrals.published.lifecycle(case_id)[1][1]
    assert (held["partner_id"], held["status"], held["reason"]) == (
        "prefecture-69",
        "on_hold",
        "missing_documents",
    )
    assert held["missing_documents"] == ["proof_of_address", "tax_notices", "language_diploma"]
    referral_id = str(held["referral_id"])
    assert await referrals.timers(referral_id) == []  # never sent: no SLA clock

    first = await referrals.intake(
        documents_added(
            case,
            added=["proof_of_address"],
            held=["id_card", "birth_certificate", "proof_of_address"],
        )
    )
    # something the checklist does not ask for changes nothing
    await referrals.intake(
        documents_added(
            case,
            added=["last_bill"],
            held=["id_card", "birth_certificate", "proof_of_address", "last_bill"],
        )
    )
    assert referrals.published.kinds(case_id) == [
        "case.opened",
        "referral.on_hold",
        "referral.on_hold",
    ]
    updated = referrals.published.lifecycle(case_id)[-1][1]
    assert updated["missing_documents"] == ["tax_notices", "language_diploma"]
    assert updated["referral_id"] == referral_id
    assert "referral.requested" not in referrals.published.kinds(
        case_id
    )  # the gateway sent nothing

    completing = await referrals.intake(
        documents_added(
            case,
            added=["tax_notices", "language_diploma"],
            held=[*CHECKLIST, "last_bill"],
        )
    )
    assert referrals.published.kinds(case_id)[-1] == "referral.requested"
    released = referrals.published.lifecycle(case_id)[-1][1]
    assert (released["referral_id"], released["partner_id"]) == (referral_id, "prefecture-69")
    timeline = await referrals.timeline(referral_id)
    assert [
        (t["from_stage"], t["to_stage"], t["status"], t["actor"], t["source_event"])
        for t in timeline
    ] == [
        ("new", "held", "on_hold", "routing", opened_by),
        ("held", "held", "on_hold", "mediator", first),
        ("held", "requested", "requested", "mediator", completing),
    ]
    await referrals.gateway(build.delivered(case_id, referral_id, partner_id="prefecture-69"))
    sent = referrals.clock.now()
    assert await referrals.timers(referral_id) == [
        ("reminder", sent + timedelta(days=10)),
        ("escalation", sent + timedelta(days=20)),
        ("expiry", sent + timedelta(days=180)),
    ]


async def test_a_held_file_withdrawn_is_cancelled_and_the_case_closes(
    referrals: Referrals, build: Any
) -> None:
    case = build.case_opened(category="naturalisation", postal_code="69003", documents=())
    await referrals.intake(case)
    referral_id = referrals.referral_id(case.case_id, kind="referral.on_hold")
    await referrals.intake(build.withdrawn(case, "visitor_request"))
    assert referrals.published.kinds(case.case_id) == [
        "case.opened",
        "referral.on_hold",
        "referral.cancelled",
        "case.closed",
    ]
    assert (await referrals.timeline(referral_id))[-1]["from_stage"] == "held"


async def test_documents_the_prefecture_asked_for_are_forwarded(
    referrals: Referrals, build: Any
) -> None:
    case = build.case_opened(
        category="naturalisation", postal_code="69003", documents=tuple(CHECKLIST)
    )
    await referrals.intake(case)
    case_id, referral_id = str(case.case_id), referrals.referral_id(case.case_id)
    await referrals.gateway(build.delivered(case_id, referral_id, partner_id="prefecture-69"))
    # COMPLEMENT_DEMANDE with piecesDemandees, as the gateway translates it
    await referrals.gateway(
        build.reported(
            case_id,
            referral_id,
            "on_hold",
            partner_id="prefecture-69",
            missing_documents=("tax_notices", "proof_of_address"),
        )
    )
    asked = referrals.published.lifecycle(case_id)[-1][1]
    assert (asked["status"], asked["reason"], asked["missing_documents"]) == (
        "on_hold",
        "missing_documents",
        ["tax_notices", "proof_of_address"],
    )
    await referrals.intake(documents_added(case, added=["tax_notices"], held=CHECKLIST))
    kind, forwarded = referrals.published.lifecycle(case_id)[-1]
    assert kind == "referral.documents_forwarded"
    assert (forwarded["referral_id"], forwarded["partner_id"], forwarded["status"]) == (
        referral_id,
        "prefecture-69",
        "on_hold",
    )
    assert forwarded["documents"] == ["tax_notices"]
    assert forwarded["missing_documents"] == ["proof_of_address"]  # told again: still missing
    await referrals.intake(documents_added(case, added=["proof_of_address"], held=CHECKLIST))
    kind, forwarded = referrals.published.lifecycle(case_id)[-1]
    assert kind == "referral.documents_forwarded"
    assert (forwarded["documents"], forwarded["missing_documents"]) == (["proof_of_address"], [])
    # nothing more asked for: later documents are not sent on
    await referrals.intake(
        documents_added(case, added=["last_bill"], held=[*CHECKLIST, "last_bill"])
    )
    assert referrals.published.kinds(case_id).count("referral.documents_forwarded") == 2
    await referrals.gateway(
        build.reported(case_id, referral_id, "in_progress", partner_id="prefecture-69")
    )
    assert referrals.published.kinds(case_id)[-1] == "referral.in_progress"
    timeline = await referrals.timeline(referral_id)
    assert [(t["to_stage"], t["actor"], t["detail"]) for t in timeline[-4:]] == [
        ("on_hold", "partner", "missing_documents"),
        ("on_hold", "mediator", "missing_documents"),
        ("on_hold", "mediator", "documents_forwarded"),
        ("in_progress", "partner", None),
    ]


async def test_the_gateways_failures_fail_a_referral_not_yet_delivered_and_only_that(
    referrals: Referrals, build: Any
) -> None:
    # a released naturalisation file the gateway cannot render (no adapter): it fails
    naturalisation = build.case_opened(
        category="naturalisation", postal_code="69003", documents=("id_card",)
    )
    await referrals.intake(naturalisation)
    await referrals.intake(documents_added(naturalisation, added=CHECKLIST[1:], held=CHECKLIST))
    case_id = str(naturalisation.case_id)
    referral_id = referrals.referral_id(case_id)
    await referrals.gateway(
        delivery_failed(case_id, referral_id, partner_id="prefecture-69", reason="no_adapter")
    )
    assert referrals.published.kinds(case_id)[-2:] == ["referral.delivery_failed", "case.closed"]
    assert referrals.published.lifecycle(case_id)[-2][1]["reason"] == "no_adapter"
    assert referrals.published.lifecycle(case_id)[-1][1]["outcome"] == "not_resolved"
    # an EDF referral the partner has: a later failure (a reminder's) does not undo that
    energy = build.case_opened(category="energy_bill", postal_code="69008")
    await referrals.intake(energy)
    energy_id, edf = str(energy.case_id), referrals.referral_id(energy.case_id)
    await referrals.gateway(build.delivered(energy_id, edf))
    await referrals.gateway(delivery_failed(energy_id, edf, partner_id="edf", reason="http_400"))
    assert referrals.published.kinds(energy_id)[-1] == "referral.transmitted"
    assert [kind for kind, _ in await referrals.timers(edf)] == ["reminder", "escalation", "expiry"]


async def test_one_pass_fires_a_backlog_of_due_timers_in_a_few_statements(
    referrals: Referrals, build: Any
) -> None:
    opened = [build.case_opened(category="energy_bill", postal_code="69008") for _ in range(12)]
    for case in opened:
        await referrals.intake(case)
        await referrals.gateway(
            build.delivered(str(case.case_id), referrals.referral_id(case.case_id))
        )
    with executed_statements(referrals.running.database.engine) as executed:
        assert await referrals.later(EDF_ACK) == 12
    statements = [" ".join(s.split()[:3]).upper() for s in executed]
    on_tables = [s for s in statements if "KIT_" not in s and not s.startswith(("BEGIN", "COMMIT"))]
    assert sorted(on_tables) == sorted(
        [
            "SELECT TIMERS.CASE_ID FROM",  # the due rows' cases
            "SELECT CASES.CASE_ID, CASES.CASE_REFERENCE,",  # locked
            "SELECT REFERRALS.REFERRAL_ID, REFERRALS.CASE_ID,",
            "SELECT TIMERS.KIND, TIMERS.REFERRAL_ID,",  # the due rows, locked
            "UPDATE REFERRALS SET",  # the 12 reminders counted
            "DELETE FROM TIMERS",  # the 12 rows fired
        ]
    )
    for case in opened:
        assert referrals.published.kinds(case.case_id)[-1] == "referral.reminded"


async def test_two_schedulers_on_one_postgresql_database_fire_each_timer_once(
    postgres_url: str, tmp_path: Path, build: Any
) -> None:
    first = await Referrals(postgres_url, tmp_path / "a").start()
    second = await Referrals(
        postgres_url, tmp_path / "b", clock=first.clock, published=first.published
    ).start()
    try:
        opened = [build.case_opened(category="energy_bill", postal_code="69008") for _ in range(24)]
        for case in opened:
            await first.intake(case)
            await first.gateway(build.delivered(str(case.case_id), first.referral_id(case.case_id)))

        async def drain(service: Referrals) -> int:
            total = 0
            while fired := await fire_due_timers(service.running, limit=3):
                total += fired
                await asyncio.sleep(0)
            return total

        for step in (EDF_ACK, EDF_ACK, EDF_RESOLVE - 2 * EDF_ACK):
            first.clock.advance(step)
            fired = await asyncio.gather(drain(first), drain(second), drain(first), drain(second))
            assert sum(fired) == len(opened)  # each row fired by exactly one of them
            await first.running.relay.drain()
        for case in opened:
            assert first.published.kinds(case.case_id)[3:] == [
                "referral.reminded",
                "referral.escalated",
                "referral.expired",
                "case.closed",
            ]
    finally:
        await second.stop()
        await first.stop()
