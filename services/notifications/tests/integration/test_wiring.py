"""Notifications on faststream's in-memory TestKafkaBroker: what visitors and mediators get."""

from __future__ import annotations

import email
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    ReferralInProgress,
    ReferralOnHold,
    ReferralUnroutable,
)
from pimms_contracts.v1.notifications import NotificationChannel
from pimms_notifications.adapters.repository import NotificationsRepository
from pimms_notifications.app import build_runtime, file_channels
from pimms_notifications.channels import Channel, OutgoingMessage
from pimms_notifications.settings import NotificationsSettings
from pimms_servicekit.clock import ManualClock
from pimms_servicekit.messages import encode, new_id
from pimms_servicekit.runtime import ServiceRuntime
from sqlalchemy.exc import OperationalError

AT = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
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


@dataclass
class Platform:
    """The other services, as seen through the in-memory broker, and the files written."""

    broker: Any
    runtime: ServiceRuntime
    data_dir: Path
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def publish(self, topic: str, event: Event, *, ce_id: str | None = None) -> str:
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
        await self.runtime.relay.drain()
        return envelope.id

    async def intake(self, event: Event, *, ce_id: str | None = None) -> str:
        return await self.publish(topics.INTAKE_CASES, event, ce_id=ce_id)

    async def lifecycle(self, event: Event, *, ce_id: str | None = None) -> str:
        return await self.publish(topics.CASES, event, ce_id=ce_id)

    def files(self, channel: str) -> list[Path]:
        folder = self.data_dir / "notifications" / channel
        return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []

    def sent(self) -> list[dict[str, Any]]:
        return [e for t, e in self.events if t == "fr.pimms.notification.sent.v1"]

    def failed(self) -> list[dict[str, Any]]:
        return [e for t, e in self.events if t == "fr.pimms.notification.failed.v1"]

    def told(self) -> list[tuple[str, str | None, str]]:
        return [(e["audience"], e["channel"], e["template"]) for _, e in self.events]

    async def records(self, case_id: uuid.UUID) -> list[Any]:
        async with self.runtime.database.sessions() as session:
            return await NotificationsRepository(session).of_case(str(case_id))


@asynccontextmanager
async def running(
    tmp_path: Path, channels: dict[NotificationChannel, Channel] | None = None
) -> AsyncIterator[Platform]:
    """Notifications on the in-memory broker, with a listener on pimms.notifications.v1."""
    settings = NotificationsSettings(
        data_dir=tmp_path,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'notifications.db'}",
    )
    runtime = build_runtime(settings, clock=ManualClock(), channels=channels)
    runtime.subscribe()
    runtime.use_test_broker()
    broker = runtime.broker
    events: list[tuple[str, dict[str, Any]]] = []

    @broker.subscriber(topics.NOTIFICATIONS)
    async def notifications(msg: KafkaMessage) -> None:
        events.append((msg.headers["ce_type"], json.loads(msg.body)))

    await runtime.prepare_database()
    async with TestKafkaBroker(broker) as test_broker:
        yield Platform(test_broker, runtime, tmp_path, events)
    await runtime.database.dispose()


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    async with running(tmp_path) as started:
        yield started


@pytest.fixture
async def platform_without_sms(tmp_path: Path) -> AsyncIterator[Platform]:
    channels = {**file_channels(NotificationsSettings(data_dir=tmp_path)), "sms": FailingSms()}
    async with running(tmp_path, channels) as started:
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
    assert platform.told() == [
        ("visitor", "sms", "case_opened"),
        ("visitor", "sms", "referral_accepted"),
    ]
    accepted = platform.sent()[1]
    assert accepted["referral_id"] == str(about(case)["referral_id"])
    texts = [p.read_text(encoding="utf-8") for p in platform.files("sms")]
    assert any("prise en charge par EDF" in t for t in texts)


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
    assert platform.told() == [
        ("visitor", None, "case_opened"),
        ("mediator", "mediator_inbox", "visitor_unreachable"),
        ("mediator", "mediator_inbox", "referral_unroutable"),
    ]
    inbox = "\n".join(p.read_text(encoding="utf-8") for p in platform.files("mediator_inbox"))
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


async def test_a_crash_before_commit_rewrites_the_same_file(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = platform.runtime.pipeline
    real_flush = pipeline._flush
    failures: list[int] = []

    async def flush_failing_once(state: Any) -> None:
        if not failures:
            failures.append(1)
            raise OperationalError("COMMIT", {}, Exception("database is locked"))
        await real_flush(state)

    monkeypatch.setattr(pipeline, "_flush", flush_failing_once)
    await platform.intake(case_opened())
    assert failures == [1]  # the files were written, then the transaction did not commit
    [sms] = platform.files("sms")
    [sent] = platform.sent()
    assert sms.name == f"{sent['notification_id']}.txt"


async def test_a_channel_failure_is_reported_and_does_not_block_the_mediator(
    platform_without_sms: Platform,
) -> None:
    platform = platform_without_sms
    case = case_opened()
    await platform.intake(case)
    await platform.lifecycle(ReferralCompleted(**about(case), outcome="not_resolved"))
    assert [(e["template"], e["channel"], e["reason"]) for e in platform.failed()] == [
        ("case_opened", "sms", "channel_error"),
        ("referral_completed", "sms", "channel_error"),
    ]
    assert [(e["audience"], e["template"]) for e in platform.sent()] == [
        ("mediator", "referral_completed")
    ]
    [inbox] = platform.files("mediator_inbox")
    assert "sans solution" in inbox.read_text(encoding="utf-8")
