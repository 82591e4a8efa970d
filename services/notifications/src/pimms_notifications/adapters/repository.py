"""Notifications' database access, inside the transaction of the batch being processed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

from pimms_contracts.v1.internal import IntakeCaseOpened
from sqlalchemy import Table, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from pimms_notifications.adapters.tables import contact_profiles, notifications
from pimms_notifications.domain.contacts import ContactProfile

NotificationStatus = Literal["sent", "failed", "skipped"]


@dataclass(frozen=True)
class NotificationRecord:
    """One row of the notifications table (no text, no address)."""

    notification_id: UUID
    case_id: str
    referral_id: UUID | None
    audience: str
    channel: str | None
    template: str
    language: str
    at: datetime
    status: NotificationStatus
    reason: str | None = None


class NotificationsRepository:
    """Contact profiles and the notifications sent."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def _insert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        """An INSERT that can skip rows already there, on either backend."""
        if self.session.get_bind().dialect.name == "sqlite":
            return sqlite.insert(table)
        return postgresql.insert(table)

    async def profile(self, case_id: str) -> ContactProfile | None:
        """The contact profile of a case, if intake's case_opened has arrived."""
        row = (
            await self.session.execute(
                select(contact_profiles).where(contact_profiles.c.case_id == case_id)
            )
        ).first()
        if row is None:
            return None
        return ContactProfile(
            case_id=row.case_id,
            case_reference=row.case_reference,
            site_id=row.site_id,
            mediator_id=row.mediator_id,
            first_name=row.first_name,
            phone=row.phone,
            email=row.email,
            consent_sms=row.consent_sms,
            consent_email=row.consent_email,
            language=row.language,
            unreachable_told=row.unreachable_told_at is not None,
        )

    async def add_profile(self, event: IntakeCaseOpened, *, at: datetime) -> ContactProfile | None:
        """Store the profile from intake's case_opened; None if it was already stored."""
        visitor = event.visitor
        # Intake shares a contact only where the visitor consented; keep it only then too.
        profile = ContactProfile(
            case_id=str(event.case_id),
            case_reference=event.case_reference,
            site_id=event.site_id,
            mediator_id=event.mediator_id,
            first_name=visitor.first_name,
            phone=visitor.phone if visitor.contact_consent.sms else None,
            email=visitor.email if visitor.contact_consent.email else None,
            consent_sms=visitor.contact_consent.sms,
            consent_email=visitor.contact_consent.email,
            language=visitor.language,
        )
        statement = (
            self._insert(contact_profiles)
            .values(
                case_id=profile.case_id,
                case_reference=profile.case_reference,
                site_id=profile.site_id,
                mediator_id=profile.mediator_id,
                first_name=profile.first_name,
                phone=profile.phone,
                email=profile.email,
                consent_sms=profile.consent_sms,
                consent_email=profile.consent_email,
                language=profile.language,
                opened_at=event.opened_at,
                stored_at=at,
            )
            .on_conflict_do_nothing(index_elements=["case_id"])
        )
        result = await self.session.execute(statement)
        return profile if result.rowcount else None  # type: ignore[attr-defined]

    async def mark_unreachable_told(self, case_id: str, *, at: datetime) -> None:
        """The mediator has been told that the platform cannot reach this visitor."""
        await self.session.execute(
            update(contact_profiles)
            .where(contact_profiles.c.case_id == case_id)
            .values(unreachable_told_at=at)
        )

    async def record(self, record: NotificationRecord) -> None:
        """Remember a notification (sent, failed or skipped); a replay of it changes nothing."""
        statement = (
            self._insert(notifications)
            .values(
                notification_id=str(record.notification_id),
                case_id=record.case_id,
                referral_id=str(record.referral_id) if record.referral_id else None,
                audience=record.audience,
                channel=record.channel,
                template=record.template,
                language=record.language,
                at=record.at,
                status=record.status,
                reason=record.reason,
            )
            .on_conflict_do_nothing(index_elements=["notification_id"])
        )
        await self.session.execute(statement)

    async def of_case(self, case_id: str) -> list[NotificationRecord]:
        """Every notification of a case, oldest first (support tools, tests)."""
        rows = (
            await self.session.execute(
                select(notifications)
                .where(notifications.c.case_id == case_id)
                .order_by(notifications.c.at, notifications.c.notification_id)
            )
        ).all()
        return [
            NotificationRecord(
                notification_id=UUID(r.notification_id),
                case_id=r.case_id,
                referral_id=UUID(r.referral_id) if r.referral_id else None,
                audience=r.audience,
                channel=r.channel,
                template=r.template,
                language=r.language,
                at=r.at,
                status=r.status,
                reason=r.reason,
            )
            for r in rows
        ]
