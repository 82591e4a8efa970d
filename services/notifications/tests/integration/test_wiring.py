"""Notifications on faststream's in-memory TestKafkaBroker and a real database (SQLite and
PostgreSQL): what visitors and mediators get, and that messages leave only after the commit."""

from __future__ import annotations

import asyncio
import email
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pimms_contracts import topics
from pimms_contracts.base import Event
from pimms_contracts.envelope import Envelope
from pimms_contracts.v1.frontoffice import ContactConsent
from pimms_contracts.v1.internal import (
    IntakeCaseOpened,
    IntakeDocumentsAdded,
    PartnerReportRefused,
    SharedNeed,
    SharedVisitor,
)
from pimms_contracts.v1.lifecycle import (
    CaseClosed,
    ReferralAccepted,
    ReferralCompleted,
    ReferralDeliveryFailed,
    ReferralDocumentsForwarded,
    ReferralEscalated,
    ReferralExpired,
    ReferralInProgress,
    ReferralOnHold,
    ReferralReminded,
    ReferralUnroutable,
)
from pimms_notifications.adapters.destinations import CHANNEL_POLICY, ChannelDestination
from pimms_notifications.adapters.repository import NotificationRecord, notifications_of_case
from pimms_notifications.app import (
    build_runtime,
    file_destinations,
    read_bounces,
    send_moments,
    send_reminders,
    sms_report,
)
from pimms_notifications.channels import OutgoingMessage
from pimms_notifications.channels.brevo import SmsDeliveryReport
from pimms_notifications.channels.files import is_message_file
from pimms_notifications.settings import NotificationsSettings
from pimms_servicekit.clock import ManualClock
from pimms_servicekit.effects import Destination
from pimms_servicekit.messages import encode, new_id
from pimms_servicekit.runtime import ServiceRuntime
from pimms_servicekit.tables import effects
from pimms_servicekit.unit_of_work import UnitOfWork
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

AT = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
MOMENT = timedelta(seconds=2)  # the default window of one message per moment
PHONE = "+33612345678"
EMAIL = "marie.dupont@example.org"
EVENT_FIELDS = {
    "notification_id",
    "case_id",
    "referral_id",
    "audience",
    "channel",
    "template",
    "language",
}


def case_opened(
    *,
    sms: bool = True,
    email: bool = False,
    phone: str | None = PHONE,
    address: str | None = EMAIL,
    language: str = "fr",
    reference: str = "LYON8-2026-000123",
) -> IntakeCaseOpened:
    return IntakeCaseOpened(
        case_id=uuid.uuid4(),
        case_reference=reference,
        submission_id=uuid.uuid4(),
        site_id="lyon-8",
        mediator_id="m-042",
        channel="front_desk",
        submitted_at=AT,
        opened_at=AT,
        visitor=SharedVisitor(
            first_name="Marie",
            last_name="Dupont",
            phone=phone if sms else None,
            email=address if email else None,
            postal_code="69008",
            language=language,
            contact_consent=ContactConsent(sms=sms, email=email),
        ),
        need=SharedNeed(
            category="energy_bill",
            summary="Facture impayée",
            urgency="high",
            documents=("id_card",),
        ),
    )


def about(case: IntakeCaseOpened, *, partner: str = "edf") -> dict[str, Any]:
    return {
        "case_id": case.case_id,
        "case_reference": case.case_reference,
        "site_id": case.site_id,
        "occurred_at": AT,
        "referral_id": uuid.uuid5(case.case_id, partner),
        "partner_id": partner,
    }


def case_fields(case: IntakeCaseOpened) -> dict[str, Any]:
    fields = about(case)
    del fields["referral_id"], fields["partner_id"]
    return fields


class FailingSms:
    """An SMS provider that is down."""

    async def send(self, message: OutgoingMessage) -> None:
        raise ConnectionRefusedError(111, "SMS gateway unreachable")


class RecordingSms:
    """An SMS provider that counts what it receives (a file would hide a second send)."""

    def __init__(self) -> None:
        self.received: list[OutgoingMessage] = []

    async def send(self, message: OutgoingMessage) -> None:
        self.received.append(message)


class HangingSms:
    """An SMS channel whose send blocks its thread (a provider or a disk that never answers)."""

    def __init__(self) -> None:
        self.hanging = 0
        self.release = threading.Event()
        self.received: list[OutgoingMessage] = []
        self._lock = threading.Lock()

    async def send(self, message: OutgoingMessage) -> None:
        with self._lock:
            self.hanging += 1
        if not self.release.wait(timeout=20):  # bounded, so that a regression fails, not hangs
            raise TimeoutError("never released")
        self.received.append(message)


def with_sms(data_dir: Path, sms: Any, *, blocking: bool) -> list[Destination]:
    """The file channels, with this SMS channel instead of the file one."""
    files = file_destinations(NotificationsSettings(data_dir=data_dir))
    return [
        ChannelDestination(name="sms", channel=sms, blocking=blocking),
        *(d for d in files if d.name != "sms"),
    ]


@dataclass
class Platform:
    """The other services, as seen through the in-memory broker, and the files written."""

    broker: Any
    runtime: ServiceRuntime[Any]
    clock: ManualClock
    data_dir: Path
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def publish(
        self, topic: str, event: Event, *, ce_id: str | None = None, settle: bool = True
    ) -> str:
        """Publish `event` as another service would; by default, deliver what it caused."""
        envelope = Envelope(
            id=ce_id or new_id(),
            source="urn:pimms:referrals",
            type=event.ce_type,
            time=AT,
            correlation_id="corr-1",
        )
        value, headers = encode(event, envelope=envelope)
        await self.broker.publish(
            value,
            topic,
            key=str(getattr(event, "case_id", "")).encode(),
            headers={k: v.decode() for k, v in headers},
        )
        if settle:
            await self.settle()
        return envelope.id

    async def settle(self) -> None:
        """Let the moment end, deliver the due messages (their hooks announce them, fallbacks
        follow), then publish the events."""
        self.clock.advance(MOMENT)
        await send_moments(self.runtime)
        while await self.runtime.drain_effects():
            pass
        await self.runtime.relay.drain()

    async def intake(self, event: Event, *, ce_id: str | None = None, settle: bool = True) -> str:
        return await self.publish(topics.INTAKE_CASES, event, ce_id=ce_id, settle=settle)

    async def lifecycle(
        self, event: Event, *, ce_id: str | None = None, settle: bool = True
    ) -> str:
        return await self.publish(topics.CASES, event, ce_id=ce_id, settle=settle)

    def files(self, channel: str) -> list[Path]:
        folder = self.data_dir / "notifications" / channel
        return sorted(p for p in folder.rglob("*") if is_message_file(p)) if folder.exists() else []

    def sent(self) -> list[dict[str, Any]]:
        return [e for t, e in self.events if t == "fr.pimms.notification.sent.v1"]

    def failed(self) -> list[dict[str, Any]]:
        return [e for t, e in self.events if t == "fr.pimms.notification.failed.v1"]

    def told(self) -> list[tuple[str, str | None, str]]:
        return [(e["audience"], e["channel"], e["template"]) for _, e in self.events]

    async def records(self, case_id: uuid.UUID) -> list[NotificationRecord]:
        async with self.runtime.database.sessions() as session:
            return await notifications_of_case(session, case_id=str(case_id))

    async def effect_rows(self, notification_id: str) -> int:
        async with self.runtime.database.sessions() as session:
            statement = select(func.count()).where(effects.c.idempotency_key == notification_id)
            return int((await session.execute(statement)).scalar_one())

    async def outlast_every_retry(self) -> None:
        """Let the retry policy run its course: every attempt, hours apart."""
        for _ in range(CHANNEL_POLICY.max_attempts):
            self.clock.advance(CHANNEL_POLICY.max_delay * 2)
            await self.settle()


class FastClock(ManualClock):
    """Platform time steered 43,200 times faster than real time (`pimms demo`), moved by hand."""

    scale = 43_200.0


@asynccontextmanager
async def running(
    tmp_path: Path,
    database_url: str,
    destinations: Sequence[Destination] | None = None,
    *,
    clock: ManualClock | None = None,
) -> AsyncIterator[Platform]:
    """Notifications on the in-memory broker, with a listener on pimms.notifications.v1."""
    settings = NotificationsSettings(data_dir=tmp_path, database_url=database_url)
    clock = clock or ManualClock()
    runtime = build_runtime(settings, clock=clock, destinations=destinations)
    runtime.subscribe()
    runtime.use_test_broker()
    broker = runtime.broker
    events: list[tuple[str, dict[str, Any]]] = []

    @broker.subscriber(topics.NOTIFICATIONS)
    async def notifications(msg: KafkaMessage) -> None:
        events.append((msg.headers["ce_type"], json.loads(msg.body)))

    await runtime.prepare_database()
    try:
        async with TestKafkaBroker(broker) as test_broker:
            yield Platform(test_broker, runtime, clock, tmp_path, events)
    finally:
        for destination in runtime.dispatchers.values():
            if isinstance(destination.destination, ChannelDestination):
                destination.destination.close()
        await runtime.database.dispose()


@pytest.fixture
async def platform(tmp_path: Path, database_url: str) -> AsyncIterator[Platform]:
    async with running(tmp_path, database_url) as started:
        yield started


@pytest.fixture
async def platform_without_sms(tmp_path: Path, database_url: str) -> AsyncIterator[Platform]:
    async with running(
        tmp_path, database_url, with_sms(tmp_path, FailingSms(), blocking=False)
    ) as started:
        yield started


async def test_a_new_case_sends_the_visitor_its_reference_by_sms(platform: Platform) -> None:
    case = case_opened()
    await platform.intake(case)
    [sms] = platform.files("sms")
    text = sms.read_text(encoding="utf-8")
    assert text.startswith(f"To: {PHONE}\n\n")
    assert "Bonjour Marie" in text
    assert "LYON8-2026-000123" in text
    [sent] = platform.sent()
    assert set(sent) == EVENT_FIELDS | {"sent_at"}  # no body, no address
    assert sent["case_id"] == str(case.case_id)
    assert sent["referral_id"] is None
    assert (sent["audience"], sent["channel"], sent["template"], sent["language"]) == (
        "visitor",
        "sms",
        "case_opened",
        "fr",
    )
    assert sms.name == f"{sent['notification_id']}.txt"
    assert platform.files("email") == []
    assert platform.files("mediator_inbox") == []
    [record] = await platform.records(case.case_id)
    assert (record.status, record.channel, record.template) == ("sent", "sms", "case_opened")


async def test_no_personal_data_in_any_event(platform: Platform) -> None:
    case = case_opened(sms=True, email=True)
    await platform.intake(case)
    await platform.lifecycle(ReferralCompleted(**about(case), outcome="resolved"))
    raw = json.dumps(platform.events)
    for personal in (PHONE, EMAIL, "Marie", "Dupont", "Bonjour"):
        assert personal not in raw


async def test_a_lifecycle_event_before_the_profile_waits_for_it(platform: Platform) -> None:
    case = case_opened()
    await platform.lifecycle(ReferralAccepted(**about(case)))
    assert platform.events == []
    assert platform.files("sms") == []
    await platform.intake(case)
    # The acceptance waited for the profile: it arrives with the opening, one moment, one SMS.
    assert platform.told() == [("visitor", "sms", "combined")]
    [sms] = platform.files("sms")
    text = sms.read_text(encoding="utf-8")
    assert "dossier LYON8-2026-000123 : Votre demande est enregistrée" in text
    assert "EDF prend en charge votre demande." in text
    statuses = sorted((r.template, r.status) for r in await platform.records(case.case_id))
    assert statuses == [("combined", "sent"), ("referral_accepted", "merged")]


async def test_completed_tells_the_visitor_and_the_mediator(platform: Platform) -> None:
    case = case_opened()
    await platform.intake(case)
    await platform.lifecycle(ReferralCompleted(**about(case), outcome="resolved"))
    assert platform.told()[1:] == [
        ("visitor", "sms", "referral_completed"),
        ("mediator", "mediator_inbox", "referral_completed"),
    ]
    visitor = next(e for e in platform.sent() if e["template"] == "referral_completed")
    sms = platform.data_dir / "notifications" / "sms" / f"{visitor['notification_id']}.txt"
    assert "traitée par EDF : une solution a été trouvée" in sms.read_text(encoding="utf-8")
    [inbox] = platform.files("mediator_inbox")
    assert inbox.parent.parts[-2:] == ("lyon-8", "m-042")
    text = inbox.read_text(encoding="utf-8")
    assert "Subject: [LYON8-2026-000123] Demande traitée par EDF" in text
    assert "Résultat : solution trouvée." in text
    assert "edf" not in text


async def test_steps_nobody_is_told_of_send_nothing(platform: Platform) -> None:
    case = case_opened()
    await platform.intake(case)
    await platform.lifecycle(ReferralInProgress(**about(case)))
    await platform.intake(
        IntakeDocumentsAdded(
            case_id=case.case_id,
            case_reference=case.case_reference,
            added=("tax_notices",),
            documents=("id_card", "tax_notices"),
            added_at=AT,
        )
    )
    assert platform.told() == [("visitor", "sms", "case_opened")]


async def test_an_unreachable_visitor_is_reported_to_the_mediator_once_per_case(
    platform: Platform,
) -> None:
    case = case_opened(sms=False, email=False)
    await platform.intake(case)
    await platform.lifecycle(
        ReferralOnHold(
            **about(case, partner="prefecture-69"),
            reason="missing_documents",
            missing_documents=("tax_notices",),
        )
    )
    await platform.lifecycle(ReferralAccepted(**about(case)))
    await platform.lifecycle(CaseClosed(**case_fields(case), outcome="resolved"))
    [failed] = platform.failed()
    assert set(failed) == EVENT_FIELDS | {"failed_at", "reason"}
    assert (failed["audience"], failed["channel"], failed["reason"], failed["template"]) == (
        "visitor",
        None,
        "no_reachable_channel",
        "case_opened",
    )
    assert platform.told() == [
        ("visitor", None, "case_opened"),
        ("mediator", "mediator_inbox", "visitor_unreachable"),
        ("mediator", "mediator_inbox", "referral_on_hold_documents"),
        ("mediator", "mediator_inbox", "case_closed"),
    ]
    assert platform.files("sms") == platform.files("email") == []
    inbox = [p.read_text(encoding="utf-8") for p in platform.files("mediator_inbox")]
    assert sum("ne peut pas être prévenu" in t for t in inbox) == 1
    assert any("Préfecture du Rhône" in t and "avis d'imposition" in t for t in inbox)
    statuses = [(r.audience, r.template, r.status) for r in await platform.records(case.case_id)]
    assert ("visitor", "referral_accepted", "skipped") in statuses
    assert ("visitor", "case_closed", "skipped") in statuses


async def test_the_unreachable_notice_names_the_first_message_that_could_not_go(
    platform: Platform,
) -> None:
    case = case_opened(sms=False, email=False)
    await platform.lifecycle(
        ReferralUnroutable(**case_fields(case), category="telecom", departement="69")
    )
    await platform.intake(case)
    # Both reach the mediator in the same moment: one message says the two.
    assert platform.told() == [
        ("visitor", None, "case_opened"),
        ("mediator", "mediator_inbox", "combined"),
    ]
    statuses = sorted(
        (r.template, r.status)
        for r in await platform.records(case.case_id)
        if r.audience != "visitor"
    )
    assert statuses == [("combined", "sent"), ("visitor_unreachable", "merged")]  # said after
    [file] = platform.files("mediator_inbox")
    inbox = file.read_text(encoding="utf-8")
    assert "l'ouverture du dossier et sa référence" in inbox
    assert "aucun partenaire ne traite « télécommunications » dans le département 69" in inbox


async def test_email_when_only_email_is_consented_in_the_visitors_language(
    platform: Platform,
) -> None:
    case = case_opened(sms=False, email=True, language="ar")
    await platform.intake(case)
    await platform.lifecycle(
        ReferralOnHold(
            **about(case), reason="missing_documents", missing_documents=("proof_of_address",)
        )
    )
    told = [(e["audience"], e["channel"], e["template"], e["language"]) for e in platform.sent()]
    assert told == [
        ("visitor", "email", "case_opened", "ar"),
        ("visitor", "email", "referral_on_hold_documents", "ar"),
        ("mediator", "mediator_inbox", "referral_on_hold_documents", "fr"),
    ]
    on_hold = platform.sent()[1]["notification_id"]
    path = platform.data_dir / "notifications" / "email" / f"{on_hold}.eml"
    parsed = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert parsed["To"] == EMAIL
    body = parsed.get_body()
    assert body is not None
    assert "إثبات السكن" in body.get_content()
    assert "EDF" in body.get_content()


async def test_an_unsupported_language_gets_french(platform: Platform) -> None:
    await platform.intake(case_opened(language="de"))
    [sent] = platform.sent()
    assert sent["language"] == "fr"
    [sms] = platform.files("sms")
    assert "votre demande est enregistrée" in sms.read_text(encoding="utf-8")


async def test_a_refused_partner_report_is_told_to_the_mediator(platform: Platform) -> None:
    case = case_opened()
    await platform.intake(case)
    await platform.publish(
        topics.REFERRAL_ALERTS,
        PartnerReportRefused(
            **about(case, partner="la-poste"),
            reported_status="in_progress",
            current_status="completed",
        ),
    )
    assert platform.told()[1:] == [("mediator", "mediator_inbox", "partner_report_refused")]
    [inbox] = platform.files("mediator_inbox")
    text = inbox.read_text(encoding="utf-8")
    assert "La Poste a envoyé une réponse qui ne peut pas s'appliquer" in text
    assert "« en cours » alors que la demande est « terminée »" in text


async def test_a_redelivered_message_sends_nothing_twice(platform: Platform) -> None:
    case = case_opened()
    opened_id = await platform.intake(case)
    completed_id = await platform.lifecycle(ReferralCompleted(**about(case), outcome="resolved"))
    await platform.intake(case, ce_id=opened_id)
    await platform.lifecycle(
        ReferralCompleted(**about(case), outcome="resolved"), ce_id=completed_id
    )
    assert len(platform.events) == 3
    assert len(platform.files("sms")) == 2
    assert len(platform.files("mediator_inbox")) == 1


async def test_a_message_leaves_only_after_the_commit(platform: Platform) -> None:
    case = case_opened()
    await platform.intake(case, settle=False)
    assert await platform.records(case.case_id) == []  # its moment is not over yet
    platform.clock.advance(MOMENT)
    await send_moments(platform.runtime)
    assert platform.files("sms") == []  # committed, not yet delivered: nothing sent, nothing said
    [pending] = await platform.records(case.case_id)
    assert (pending.status, pending.channel) == ("pending", "sms")
    await platform.settle()
    [sms] = platform.files("sms")
    assert sms.stem == str(pending.notification_id)
    assert [(e["notification_id"], e["sent_at"]) for e in platform.sent()] == [
        (str(pending.notification_id), platform.clock.now().isoformat().replace("+00:00", "Z"))
    ]
    [sent] = await platform.records(case.case_id)
    assert sent.status == "sent"


class InjectedFailure(RuntimeError):
    """A handler or the database failing after the message was handed to its channel."""


@pytest.mark.parametrize(
    "failure",
    [
        OperationalError("COMMIT", {}, Exception("database is locked")),
        InjectedFailure("failed after the dispatch"),
    ],
    ids=["transient-database-error-retries-the-batch", "error-isolates-the-message"],
)
async def test_a_rolled_back_and_retried_batch_delivers_once(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    sms = RecordingSms()
    real_flush = UnitOfWork.flush
    rolled_back: list[int] = []

    async def flush_then_fail_once(self: UnitOfWork[Any]) -> None:
        queued = len(self.effects.rows)
        await real_flush(self)  # the effect row is written in the transaction...
        if queued and not rolled_back:
            rolled_back.append(queued)
            raise failure  # ...which then rolls back

    monkeypatch.setattr(UnitOfWork, "flush", flush_then_fail_once)
    destinations = with_sms(tmp_path, sms, blocking=True)
    async with running(tmp_path, database_url, destinations) as platform:
        case = case_opened()
        opened_id = await platform.intake(case, settle=False)
        platform.clock.advance(MOMENT)
        with pytest.raises(type(failure)):
            await send_moments(platform.runtime)  # the moments job fails once...
        assert rolled_back == [1]
        await platform.settle()  # ...and sends the moment at its next round
        [message] = sms.received
        assert message.to == PHONE
        assert "LYON8-2026-000123" in message.body
        [sent] = platform.sent()
        assert sent["notification_id"] == str(message.notification_id)
        assert await platform.effect_rows(str(message.notification_id)) == 1
        # Kafka delivers the message again (the offset commit was lost): still one SMS.
        await platform.intake(case, ce_id=opened_id)
        await platform.outlast_every_retry()
        assert len(sms.received) == 1
        assert len(platform.sent()) == 1
        [record] = await platform.records(case.case_id)
        assert record.status == "sent"


async def test_a_hanging_channel_does_not_stall_the_others(
    tmp_path: Path, database_url: str
) -> None:
    sms = HangingSms()
    destinations = with_sms(tmp_path, sms, blocking=True)
    async with running(tmp_path, database_url, destinations) as platform:
        runtime = platform.runtime
        # As many SMS as the channel sends at once, due together: each holds one of its threads.
        stuck = [
            case_opened(reference=f"LYON8-2026-00070{i}") for i in range(CHANNEL_POLICY.concurrency)
        ]
        for case in stuck:
            await platform.intake(case, settle=False)
        platform.clock.advance(MOMENT)
        await send_moments(runtime)
        lag = LoopLag()
        tasks = [asyncio.create_task(d.run()) for d in runtime.dispatchers.values()]
        tasks.append(asyncio.create_task(lag.watch()))
        try:
            await until(
                platform,
                lambda: sms.hanging == len(stuck),
                "every SMS to hang, each on a thread of the SMS channel's own",
            )
            others = [
                case_opened(sms=False, email=True, reference=f"LYON8-2026-00071{i}")
                for i in range(3)
            ]
            for case in others:  # one batch each, while the SMS thread hangs
                await platform.intake(case, settle=False)
                platform.clock.advance(MOMENT)
                await send_moments(runtime)
                await platform.lifecycle(
                    ReferralCompleted(**about(case), outcome="resolved"), settle=False
                )
                platform.clock.advance(MOMENT)  # each its own moment
                await send_moments(runtime)
            await until(platform, lambda: len(platform.sent()) == 9, "e-mails and inbox")
            assert sorted((e["channel"], e["template"]) for e in platform.sent()) == sorted(
                [("email", "case_opened")] * 3
                + [("email", "referral_completed")] * 3
                + [("mediator_inbox", "referral_completed")] * 3
            )
            assert len(platform.files("email")) == 6
            assert len(platform.files("mediator_inbox")) == 3
            assert lag.worst < 1.0, f"the event loop stalled {lag.worst:.2f}s"
            assert sms.received == []
            pending = [r for case in stuck for r in await platform.records(case.case_id)]
            assert {r.status for r in pending} == {"pending"}

            sms.release.set()
            total = 9 + len(stuck)
            await until(platform, lambda: len(platform.sent()) == total, "the SMS")
            assert {e["case_id"] for e in platform.sent()[9:]} == {str(c.case_id) for c in stuck}
            assert sorted(m.notification_id for m in sms.received) == sorted(
                r.notification_id for r in pending
            )
            sent = [r for case in stuck for r in await platform.records(case.case_id)]
            assert {r.status for r in sent} == {"sent"}
        finally:
            sms.release.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


class LoopLag:
    """The longest the event loop went without running a 10 ms timer."""

    def __init__(self) -> None:
        self.worst = 0.0

    async def watch(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            self.worst = max(self.worst, now - last - 0.01)
            last = now


async def until(platform: Platform, condition: Callable[[], bool], what: str) -> None:
    """Publish the outbox until `condition` holds (the dispatchers run on their own)."""
    deadline = time.monotonic() + 15
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await platform.runtime.relay.drain()
        await asyncio.sleep(0.02)


async def test_a_channel_failure_is_reported_and_does_not_block_the_mediator(
    platform_without_sms: Platform,
) -> None:
    platform = platform_without_sms
    case = case_opened()
    await platform.intake(case)
    await platform.lifecycle(ReferralCompleted(**about(case), outcome="not_resolved"))
    # The mediator is told at once; the SMS waits for the provider, without saying it failed yet.
    assert [(e["audience"], e["template"]) for e in platform.sent()] == [
        ("mediator", "referral_completed")
    ]
    [inbox] = platform.files("mediator_inbox")
    assert "sans solution" in inbox.read_text(encoding="utf-8")
    assert platform.failed() == []
    await platform.outlast_every_retry()
    gave_up = "gave_up:ConnectionRefusedError:ECONNREFUSED"
    assert [(e["template"], e["channel"], e["reason"]) for e in platform.failed()] == [
        ("case_opened", "sms", gave_up),
        ("referral_completed", "sms", gave_up),
    ]
    # The visitor allows no other channel: the mediator is told neither message reached them,
    # in one message, since both gave up in the same moment.
    assert [(e["audience"], e["template"]) for e in platform.sent()] == [
        ("mediator", "referral_completed"),
        ("mediator", "combined"),
    ]
    statuses = [(r.audience, r.template, r.status) for r in await platform.records(case.case_id)]
    assert sorted(statuses) == [
        ("mediator", "combined", "sent"),
        ("mediator", "referral_completed", "sent"),
        ("mediator", "visitor_undelivered", "merged"),
        ("visitor", "case_opened", "failed"),
        ("visitor", "referral_completed", "failed"),
    ]
    inbox = "\n".join(p.read_text(encoding="utf-8") for p in platform.files("mediator_inbox"))
    assert "le message sur le résultat de la demande n'a pu être remis au visiteur" in inbox


async def test_a_channel_that_refuses_a_message_fails_it_at_once(
    tmp_path: Path, database_url: str
) -> None:
    class ReadOnlySms:
        async def send(self, message: OutgoingMessage) -> None:
            raise PermissionError(13, "Permission denied")

    destinations = with_sms(tmp_path, ReadOnlySms(), blocking=True)
    async with running(tmp_path, database_url, destinations) as platform:
        await platform.intake(case_opened())
        [failed] = platform.failed()
        assert (failed["channel"], failed["template"], failed["reason"]) == (
            "sms",
            "case_opened",
            "PermissionError:EACCES",
        )
        assert platform.sent() == []  # the mediator hears of it with its moment's other news
        await platform.settle()
        assert [e["template"] for e in platform.sent()] == ["visitor_undelivered"]


async def test_a_visitor_missing_documents_is_reminded_twice_then_no_more(
    platform: Platform,
) -> None:
    case = case_opened()
    await platform.intake(case)
    await platform.lifecycle(
        ReferralOnHold(
            **about(case, partner="prefecture-69"),
            reason="missing_documents",
            missing_documents=("tax_notices",),
        )
    )
    for _ in range(4):
        platform.clock.advance(timedelta(days=3))
        await send_reminders(platform.runtime)
        await platform.settle()
    reminders = [e for e in platform.sent() if e["template"] == "document_reminder"]
    assert [(e["audience"], e["channel"]) for e in reminders] == [("visitor", "sms")] * 2
    texts = [
        (platform.data_dir / "notifications" / "sms" / f"{e['notification_id']}.txt").read_text(
            encoding="utf-8"
        )
        for e in reminders
    ]
    assert all("rappel" in t and "avis d'imposition" in t for t in texts)


async def test_reminders_stop_when_the_visitor_brings_documents(platform: Platform) -> None:
    case = case_opened()
    await platform.intake(case)
    await platform.lifecycle(
        ReferralOnHold(
            **about(case, partner="prefecture-69"),
            reason="missing_documents",
            missing_documents=("tax_notices",),
        )
    )
    await platform.intake(
        IntakeDocumentsAdded(
            case_id=case.case_id,
            case_reference=case.case_reference,
            added=("tax_notices",),
            documents=("id_card", "tax_notices"),
            added_at=AT,
        )
    )
    platform.clock.advance(timedelta(days=7))
    await send_reminders(platform.runtime)
    await platform.settle()
    assert "document_reminder" not in [e["template"] for e in platform.sent()]


async def test_partner_reminders_and_escalations_reach_the_mediator(platform: Platform) -> None:
    case = case_opened()
    await platform.intake(case)
    due = AT + timedelta(days=2)
    await platform.lifecycle(
        ReferralReminded(**about(case), status="transmitted", reminder=1, due_at=due)
    )
    await platform.lifecycle(ReferralEscalated(**about(case), status="transmitted", due_at=due))
    await platform.lifecycle(ReferralExpired(**about(case)))
    assert platform.told()[1:] == [
        ("mediator", "mediator_inbox", "partner_reminded"),
        ("mediator", "mediator_inbox", "referral_escalated"),
        ("visitor", "sms", "referral_expired"),
        ("mediator", "mediator_inbox", "referral_expired"),
    ]
    inbox = "\n".join(p.read_text(encoding="utf-8") for p in platform.files("mediator_inbox"))
    assert "Relance 1 envoyée à EDF" in inbox
    assert "EDF ne répond pas : votre intervention est nécessaire" in inbox


async def test_forwarded_documents_tell_what_is_still_missing_in_words(
    platform: Platform,
) -> None:
    case = case_opened()
    await platform.intake(case)
    await platform.lifecycle(
        ReferralDocumentsForwarded(
            **about(case, partner="prefecture-69"),
            documents=("tax_notices",),
            missing_documents=("birth_certificate",),
        )
    )
    await platform.lifecycle(
        ReferralDocumentsForwarded(
            **about(case, partner="prefecture-69"), documents=("birth_certificate",)
        )
    )
    assert platform.told()[1:] == [
        ("visitor", "sms", "referral_on_hold_documents"),
        ("mediator", "mediator_inbox", "referral_on_hold_documents"),
        ("mediator", "mediator_inbox", "documents_forwarded"),
    ]
    texts = [p.read_text(encoding="utf-8") for p in platform.files("sms")]
    assert any("acte de naissance" in t for t in texts)
    inbox = "\n".join(p.read_text(encoding="utf-8") for p in platform.files("mediator_inbox"))
    assert "lui ont été transmises (acte de naissance)" in inbox


def dsn(*, message_id: str) -> bytes:
    return (
        "From: MAILER-DAEMON@mx.pimms.invalid\r\n"
        "To: notifications@pimms.invalid\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.pimms.invalid\r\n\r\n"
        "Final-Recipient: rfc822; marie@example.org\r\n"
        "Action: failed\r\nStatus: 5.1.1\r\n\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"To: marie@example.org\r\nMessage-ID: {message_id}\r\n\r\n"
        "--B--\r\n"
    ).encode()


async def test_a_bounced_email_fails_and_the_mediator_is_told_once(platform: Platform) -> None:
    case = case_opened(sms=False, email=True)
    await platform.intake(case)
    [sent] = platform.sent()
    folder = platform.data_dir / "bounces"
    folder.mkdir()
    (folder / "bounce-1.eml").write_bytes(
        dsn(message_id=f"<{sent['notification_id']}@pimms.invalid>")
    )
    for _ in range(2):  # a second scan finds the file set aside
        await read_bounces(platform.runtime, folder=folder, domain="pimms.invalid")
        await platform.settle()
    [failed] = platform.failed()
    assert (failed["notification_id"], failed["channel"], failed["reason"]) == (
        sent["notification_id"],
        "email",
        "email_bounced_5.1.1",
    )
    assert [e["template"] for e in platform.sent()] == ["case_opened", "visitor_undelivered"]
    assert (folder / "handled" / "bounce-1.eml").exists()


async def test_a_failed_sms_report_falls_back_to_email(platform: Platform) -> None:
    case = case_opened(sms=True, email=True)
    await platform.intake(case)
    [sent] = platform.sent()
    report = SmsDeliveryReport(
        message_id=None,
        tag=sent["notification_id"],
        outcome="failed",
        reason="sms_hard_bounce",
        status="hardBounce",
    )
    unknown = replace(report, tag=str(uuid.uuid4()))
    for each in (report, report, unknown):  # the same report twice, one for nothing of ours
        await sms_report(platform.runtime, each)
        await platform.settle()
    [failed] = platform.failed()
    assert (failed["channel"], failed["reason"]) == ("sms", "sms_hard_bounce")
    assert [(e["channel"], e["template"]) for e in platform.sent()] == [
        ("sms", "case_opened"),
        ("email", "case_opened"),
    ]
    [mail] = platform.files("email")
    assert "LYON8-2026-000123" in mail.read_text(encoding="utf-8")


# -- one message per moment, for the platform's own notices too ---------------------------------


async def test_an_unreachable_visitor_and_a_failed_delivery_are_one_mediator_message(
    platform: Platform,
) -> None:
    case = case_opened(sms=False, email=False)
    opened_id = await platform.intake(case, settle=False)
    failed_id = await platform.lifecycle(
        ReferralDeliveryFailed(**about(case), reason="partner_unreachable"), settle=False
    )
    await platform.settle()
    # The visitor cannot be reached, found out while the moment is said: the mediator hears it
    # with the failed delivery of the same moment, in one message.
    assert platform.told() == [
        ("visitor", None, "case_opened"),
        ("mediator", "mediator_inbox", "combined"),
    ]
    [inbox] = platform.files("mediator_inbox")
    text = inbox.read_text(encoding="utf-8")
    assert "ne peut pas être prévenu" in text
    assert "EDF" in text
    # Every event again, twice (Kafka redelivers): nothing is said twice.
    for _ in range(2):
        await platform.intake(case, ce_id=opened_id, settle=False)
        await platform.lifecycle(
            ReferralDeliveryFailed(**about(case), reason="partner_unreachable"),
            ce_id=failed_id,
            settle=False,
        )
        await platform.settle()
        await platform.settle()
    assert len(platform.events) == 2
    assert len(platform.files("mediator_inbox")) == 1


async def test_a_message_that_reached_nobody_joins_the_mediators_news_of_that_moment(
    tmp_path: Path, database_url: str
) -> None:
    class ReadOnlySms:
        async def send(self, message: OutgoingMessage) -> None:
            raise PermissionError(13, "Permission denied")

    destinations = with_sms(tmp_path, ReadOnlySms(), blocking=True)
    async with running(tmp_path, database_url, destinations) as platform:
        case = case_opened()
        await platform.intake(case)  # the SMS is refused: the mediator is to hear of it...
        due = AT + timedelta(days=2)
        escalated = ReferralEscalated(**about(case), status="transmitted", due_at=due)
        escalated_id = await platform.lifecycle(escalated, settle=False)  # ...with this
        await platform.settle()
        assert [(e["audience"], e["channel"], e["template"]) for e in platform.sent()] == [
            ("mediator", "mediator_inbox", "combined")
        ]
        [inbox] = platform.files("mediator_inbox")
        text = inbox.read_text(encoding="utf-8")
        assert "n'a pu être remis au visiteur" in text
        assert "EDF ne répond pas" in text
        # The escalation delivered again, the refusal's moment replayed: nothing more.
        await platform.lifecycle(escalated, ce_id=escalated_id)
        await platform.outlast_every_retry()
        assert len(platform.sent()) == 1
        assert len(platform.files("mediator_inbox")) == 1


async def test_a_failure_report_delivered_twice_tells_the_mediator_once(
    platform: Platform,
) -> None:
    case = case_opened(sms=True, email=False)
    await platform.intake(case)
    [sent] = platform.sent()
    report = SmsDeliveryReport(
        message_id=None,
        tag=sent["notification_id"],
        outcome="failed",
        reason="sms_hard_bounce",
        status="hardBounce",
    )
    for _ in range(3):
        await sms_report(platform.runtime, report)
        await platform.settle()
    assert [(e["audience"], e["template"]) for e in platform.sent()] == [
        ("visitor", "case_opened"),
        ("mediator", "visitor_undelivered"),
    ]
    assert len(platform.failed()) == 1


async def test_a_reminder_and_other_news_for_the_visitor_are_one_sms(platform: Platform) -> None:
    case = case_opened()
    await platform.intake(case)
    await platform.lifecycle(
        ReferralOnHold(
            **about(case, partner="prefecture-69"),
            reason="missing_documents",
            missing_documents=("tax_notices",),
        )
    )
    platform.clock.advance(AT + timedelta(days=3) - platform.clock.now())  # the hold's delay
    await send_reminders(platform.runtime)  # the reminder waits for its moment...
    await platform.lifecycle(ReferralAccepted(**about(case)))  # ...which this joins
    assert platform.told()[3:] == [("visitor", "sms", "combined")]
    sms = (
        platform.data_dir / "notifications" / "sms" / f"{platform.sent()[3]['notification_id']}.txt"
    )
    text = sms.read_text(encoding="utf-8")
    assert "Rappel : Préfecture du Rhône attend toujours : avis d'imposition." in text
    assert "EDF prend en charge votre demande." in text


async def test_on_a_fast_clock_the_moment_keeps_a_real_length(
    tmp_path: Path, database_url: str
) -> None:
    # 43,200 times faster (`pimms demo`): the closure comes 12 h of platform time (one real
    # second) after the outcome; a 2 s window of platform time would make that two SMS.
    async with running(tmp_path, database_url, clock=FastClock(AT)) as platform:
        case = case_opened()
        await platform.intake(case, settle=False)
        platform.clock.advance(timedelta(days=2))
        await platform.settle()
        platform.clock.advance(timedelta(days=1))
        await platform.lifecycle(ReferralCompleted(**about(case), outcome="resolved"), settle=False)
        platform.clock.advance(timedelta(hours=12))
        await platform.lifecycle(CaseClosed(**case_fields(case), outcome="resolved"), settle=False)
        platform.clock.advance(timedelta(hours=11))
        await platform.settle()  # 23 h after the outcome and 2 s: within the window, nothing
        assert platform.told() == [("visitor", "sms", "case_opened")]
        platform.clock.advance(timedelta(hours=1))
        await platform.settle()
        assert platform.told()[1:] == [
            ("visitor", "sms", "combined"),
            ("mediator", "mediator_inbox", "combined"),
        ]
