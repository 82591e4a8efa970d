"""Notifications' database access for one batch: prefetched for the whole batch, written at flush.

`NotificationsRepos` is built once per unit of work (a batch of messages, or a dispatcher's batch of
delivery outcomes). It also holds what messages are made of (templates, partner names), so that
handlers need nothing else.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from typing import Any, Literal
from uuid import UUID

from pimms_contracts.partners.directory import PartnerDirectory
from pimms_contracts.v1.internal import IntakeCaseOpened, IntakeCaseWithdrawn, IntakeDocumentsAdded
from pimms_servicekit.db import BulkInsert, BulkUpdate, chunks, padded
from pimms_servicekit.storage import storable_text
from pimms_servicekit.tables import parked
from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pimms_notifications.adapters.tables import (
    contact_profiles,
    moment_notices,
    notifications,
    visitor_holds,
)
from pimms_notifications.adapters.templates import TemplateLibrary
from pimms_notifications.domain.contacts import ContactProfile
from pimms_notifications.domain.moments import DEFAULT_WINDOW, PendingNotice
from pimms_notifications.domain.notices import TOLD_EVENTS, Notice, facts_from_json, facts_to_json
from pimms_notifications.domain.quiet_hours import QUIET_FROM, QUIET_UNTIL
from pimms_notifications.domain.reminders import DEFAULT_REMINDER_DELAY, VisitorHold

NotificationStatus = Literal["pending", "sent", "failed", "skipped", "merged"]
"""pending: queued for its channel; sent / failed: the channel's final answer; skipped: not sent;
merged: said inside another notification's message (one message per moment)."""

# One INSERT statement per table and batch on PostgreSQL (see BulkInsert); a row already
# there (a replay) is skipped.
_INSERT_PROFILES = BulkInsert(contact_profiles, skip_existing=["case_id"])
_INSERT_RECORDS = BulkInsert(notifications, skip_existing=["notification_id"])
_INSERT_NOTICES = BulkInsert(moment_notices, skip_existing=["notification_id"])
_INSERT_HOLDS = BulkInsert(visitor_holds)
_UPDATE_STATUSES = BulkUpdate(
    notifications,
    match={"b_id": "notification_id"},
    assign={"b_status": "status", "b_reason": "reason", "b_receipt": "receipt"},
    keep=["receipt"],  # a later status without a receipt keeps the one the channel gave
)
_UPDATE_SAID = BulkUpdate(
    moment_notices, match={"b_id": "notification_id"}, assign={"b_moment": "moment_id"}
)
_ROUND = 500  # holds and waiting cases taken by one timer round; the next round takes more


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
    moment_id: UUID | None = None
    tried: str | None = None
    """The channels that failed for good before this one, comma-separated ("sms")."""
    receipt: str | None = None


@dataclass(frozen=True)
class Rules:
    """The service's timing rules, from its settings."""

    moment_window: timedelta = DEFAULT_WINDOW
    reminder_delay: timedelta = DEFAULT_REMINDER_DELAY
    quiet_hours: tuple[time, time] | None = (QUIET_FROM, QUIET_UNTIL)
    """(from, until), Paris time, when SMS wait; None: they never wait."""


@dataclass(frozen=True)
class WaitingCase:
    """The notices of one case that wait for the end of their moment."""

    case_id: str
    correlation_id: str | None
    notices: tuple[PendingNotice, ...]
    causes: dict[UUID, str | None]
    """The message that caused each notice (what the messages saying them are caused by)."""


class NotificationsRepos:
    """Contact profiles and notifications of one batch, with the templates and partner names."""

    def __init__(
        self,
        session: AsyncSession,
        *,
        templates: TemplateLibrary,
        directory: PartnerDirectory,
        rules: Rules | None = None,
    ) -> None:
        self.session = session
        self.templates = templates
        self.directory = directory
        self.rules = rules or Rules()
        self._holds: dict[str, dict[str, VisitorHold]] = {}
        self._saved_holds: dict[str, VisitorHold] = {}
        self._new_notices: list[dict[str, Any]] = []
        self._said: list[dict[str, Any]] = []
        self._profiles: dict[str, ContactProfile | None] = {}
        self._waiting: set[str] = set()
        self._new_profiles: dict[str, dict[str, Any]] = {}
        self._told_unreachable: dict[str, datetime] = {}
        self._new_records: list[dict[str, Any]] = []
        self._statuses: list[dict[str, Any]] = []
        self._loaded: dict[str, NotificationRecord | None] = {}  # a hook round's, read once

    # -- reads ---------------------------------------------------------------------------------

    async def prefetch(self, payloads: Sequence[object]) -> None:
        """Load the profiles of every case the batch names, and which cases have messages
        waiting for their profile: two statements per batch."""
        named = {case_id for p in payloads if (case_id := _case_of(p)) is not None}
        case_ids = sorted(named - self._profiles.keys())
        for chunk in chunks(case_ids):
            self._profiles.update(dict.fromkeys(chunk))
            rows = await self.session.execute(
                select(contact_profiles).where(contact_profiles.c.case_id.in_(padded(chunk)))
            )
            self._profiles.update({row.case_id: _profile(row) for row in rows})
            keys = [storable_text(c, limit=200) or "" for c in chunk]
            waiting = await self.session.execute(
                select(parked.c.park_key).where(parked.c.park_key.in_(padded(keys))).distinct()
            )
            self._waiting.update(waiting.scalars())
            self._holds.update({case_id: {} for case_id in chunk})
            holds = await self.session.execute(
                select(visitor_holds).where(
                    visitor_holds.c.case_id.in_(padded(chunk)), visitor_holds.c.ended.is_(False)
                )
            )
            for row in holds:
                self._holds[row.case_id][row.referral_id] = _hold(row)

    async def load_profiles(self, case_ids: Sequence[str]) -> None:
        """Load the profiles of cases named outside a batch's payloads (due moments) at once."""
        await self.prefetch([_CaseRef(case_id) for case_id in case_ids])

    async def profile(self, case_id: str) -> ContactProfile | None:
        """The contact profile of a case, if intake's case_opened has arrived."""
        if case_id not in self._profiles:
            await self.prefetch([_CaseRef(case_id)])
        return self._profiles.get(case_id)

    def open_holds(self, case_id: str) -> list[VisitorHold]:
        """The referrals of a (prefetched) case that wait for documents from the visitor."""
        return [h for h in self._holds.get(case_id, {}).values() if not h.ended]

    async def holds_due(self, *, before: datetime) -> list[VisitorHold]:
        """Open holds whose last reminder (or start) is older than `before`, oldest first."""
        await self.flush()
        last = func.coalesce(visitor_holds.c.last_reminded_at, visitor_holds.c.since)
        rows = await self.session.execute(
            select(visitor_holds)
            .where(visitor_holds.c.ended.is_(False), last <= before)
            .order_by(last)
            .limit(_ROUND)
        )
        return [_hold(row) for row in rows]

    async def waiting_cases(self, *, now: datetime) -> list[WaitingCase]:
        """The cases with a notice whose moment is over at `now`, with all their waiting notices."""
        await self.flush()
        due = (
            select(moment_notices.c.case_id)
            .where(
                moment_notices.c.moment_id.is_(None),
                moment_notices.c.at <= now - self.rules.moment_window,
            )
            .distinct()
            .limit(_ROUND)
        )
        query = (
            select(moment_notices)
            .where(moment_notices.c.moment_id.is_(None), moment_notices.c.case_id.in_(due))
            .order_by(moment_notices.c.case_id, moment_notices.c.at)
        )
        if self.session.get_bind().dialect.name != "sqlite":
            query = query.with_for_update(skip_locked=True)  # another instance has them
        by_case: dict[str, list[Any]] = defaultdict(list)
        for row in await self.session.execute(query):
            by_case[row.case_id].append(row)
        return [
            WaitingCase(
                case_id=case_id,
                correlation_id=next((r.correlation_id for r in rows if r.correlation_id), None),
                notices=tuple(_pending(row) for row in rows),
                causes={UUID(row.notification_id): row.causation_id for row in rows},
            )
            for case_id, rows in by_case.items()
        ]

    async def moment_parts(self, moment_id: UUID) -> tuple[PendingNotice, ...]:
        """The notices a message said, in the order they arose."""
        await self.flush()
        rows = await self.session.execute(
            select(moment_notices)
            .where(moment_notices.c.moment_id == str(moment_id))
            .order_by(moment_notices.c.at)
        )
        return tuple(_pending(row) for row in rows)

    async def load_notifications(self, notification_ids: Sequence[UUID]) -> None:
        """Read the notifications a round of delivery hooks will ask for, in one statement."""
        await self.flush()
        wanted = sorted({str(n) for n in notification_ids})
        for chunk in chunks(wanted):
            self._loaded.update(dict.fromkeys(chunk))
            rows = await self.session.execute(
                select(notifications).where(notifications.c.notification_id.in_(padded(chunk)))
            )
            self._loaded.update({row.notification_id: _record(row) for row in rows})

    async def notification(self, notification_id: UUID) -> NotificationRecord | None:
        """One notification, as last written (or as `load_notifications` read it, once)."""
        if str(notification_id) in self._loaded:
            return self._loaded.pop(str(notification_id))
        await self.flush()
        row = (
            await self.session.execute(
                select(notifications).where(notifications.c.notification_id == str(notification_id))
            )
        ).first()
        return _record(row) if row is not None else None

    async def notification_by_receipt(self, receipt: str) -> NotificationRecord | None:
        """The SMS the provider knows as `receipt`."""
        await self.flush()
        row = (
            await self.session.execute(
                select(notifications).where(notifications.c.receipt == receipt).limit(1)
            )
        ).first()
        return _record(row) if row is not None else None

    def partner_name(self, partner_id: str | None) -> str | None:
        """The operator's name ("EDF", "La Poste"), never its id; None when unknown."""
        partner = self.directory.get(partner_id) if partner_id else None
        return partner.operator if partner else None

    # -- parking bookkeeping (so that only cases with waiting messages look at the parking) -----

    def note_parked(self, case_id: str) -> None:
        """A message of this case now waits for its profile."""
        self._waiting.add(storable_text(case_id, limit=200) or "")

    def take_waiting(self, case_id: str) -> bool:
        """True (once) when messages of this case may wait in the parking."""
        key = storable_text(case_id, limit=200) or ""
        if key in self._waiting:
            self._waiting.discard(key)
            return True
        return False

    # -- writes, buffered until flush ------------------------------------------------------------

    async def add_profile(self, event: IntakeCaseOpened, *, at: datetime) -> ContactProfile | None:
        """Store the profile from intake's case_opened; None if it was already stored."""
        case_id = str(event.case_id)
        if await self.profile(case_id) is not None:
            return None
        visitor = event.visitor
        # Intake shares a contact only where the visitor consented; keep it only then too.
        profile = ContactProfile(
            case_id=case_id,
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
        self._profiles[case_id] = profile
        self._new_profiles[case_id] = {
            "case_id": profile.case_id,
            "case_reference": profile.case_reference,
            "site_id": profile.site_id,
            "mediator_id": profile.mediator_id,
            "first_name": profile.first_name,
            "phone": profile.phone,
            "email": profile.email,
            "consent_sms": profile.consent_sms,
            "consent_email": profile.consent_email,
            "language": profile.language,
            "opened_at": event.opened_at,
            "stored_at": at,
            "unreachable_told_at": None,
        }
        return profile

    def mark_unreachable_told(self, case_id: str, *, at: datetime) -> None:
        """The mediator has been told that the platform cannot reach this visitor."""
        profile = self._profiles.get(case_id)
        if profile is not None:
            self._profiles[case_id] = replace(profile, unreachable_told=True)
        new = self._new_profiles.get(case_id)
        if new is not None:
            new["unreachable_told_at"] = at
        else:
            self._told_unreachable[case_id] = at

    def wait_for_moment(
        self,
        case_id: str,
        notices: Iterable[PendingNotice],
        *,
        correlation_id: str | None,
        causation_id: str | None = None,
    ) -> None:
        """Keep notices until their moment is over; a notice already kept is not kept twice."""
        self._new_notices += [
            {
                "notification_id": str(item.notification_id),
                "case_id": case_id,
                "audience": item.notice.audience,
                "template": item.notice.template,
                "referral_id": str(item.notice.referral_id) if item.notice.referral_id else None,
                "facts": facts_to_json(item.notice.facts),
                "at": item.at,
                "correlation_id": correlation_id,
                "causation_id": causation_id,
                "moment_id": None,
            }
            for item in notices
        ]

    def said(self, notification_ids: Iterable[UUID], *, moment_id: UUID) -> None:
        """These waiting notices are said by the message `moment_id`."""
        self._said += [
            {"b_id": str(notification_id), "b_moment": str(moment_id)}
            for notification_id in notification_ids
        ]

    def save_hold(self, hold: VisitorHold) -> None:
        """Write a hold (new, reminded or ended)."""
        key = str(hold.referral_id)
        self._holds.setdefault(str(hold.case_id), {})[key] = hold
        self._saved_holds[key] = hold

    def record(self, record: NotificationRecord) -> None:
        """Remember a notification (pending, failed or skipped); a replay of it changes nothing."""
        self._new_records.append(
            {
                "notification_id": str(record.notification_id),
                "case_id": record.case_id,
                "referral_id": str(record.referral_id) if record.referral_id else None,
                "audience": record.audience,
                "channel": record.channel,
                "template": record.template,
                "language": record.language,
                "at": record.at,
                "status": record.status,
                "reason": _reason(record.reason),
                "receipt": record.receipt,
                "moment_id": str(record.moment_id) if record.moment_id else None,
                "tried": record.tried,
            }
        )

    def set_status(
        self,
        notification_id: UUID,
        *,
        status: NotificationStatus,
        reason: str | None = None,
        receipt: str | None = None,
    ) -> None:
        """The channel's final answer for a pending notification (and the provider's id)."""
        self._statuses.append(
            {
                "b_id": str(notification_id),
                "b_status": status,
                "b_reason": _reason(reason),
                "b_receipt": receipt,
            }
        )

    async def flush(self) -> None:
        """Write what the batch recorded, one statement per kind (called before the commit)."""
        if self._new_profiles:
            await _INSERT_PROFILES(self.session, list(self._new_profiles.values()))
            self._new_profiles = {}
        if self._told_unreachable:
            await self.session.execute(
                update(contact_profiles)
                .where(contact_profiles.c.case_id == bindparam("b_case_id"))
                .values(unreachable_told_at=bindparam("b_at")),
                [{"b_case_id": c, "b_at": at} for c, at in self._told_unreachable.items()],
            )
            self._told_unreachable = {}
        if self._new_records:
            await _INSERT_RECORDS(self.session, self._new_records)
            self._new_records = []
        if self._statuses:
            await _UPDATE_STATUSES(self.session, self._statuses)
            self._statuses = []
        if self._new_notices:
            await _INSERT_NOTICES(self.session, self._new_notices)
            self._new_notices = []
        if self._said:
            await _UPDATE_SAID(self.session, self._said)
            self._said = []
        if self._saved_holds:
            keys = list(self._saved_holds)
            await self.session.execute(
                delete(visitor_holds).where(visitor_holds.c.referral_id.in_(padded(keys)))
            )
            await _INSERT_HOLDS(self.session, [_hold_row(h) for h in self._saved_holds.values()])
            self._saved_holds = {}


@dataclass(frozen=True)
class _CaseRef:
    """A case named outside a batch's payloads (a profile asked for before its prefetch)."""

    case_id: str


def _case_of(payload: object) -> str | None:
    if isinstance(
        payload, IntakeCaseOpened | IntakeDocumentsAdded | IntakeCaseWithdrawn | _CaseRef
    ):
        return str(payload.case_id)
    if isinstance(payload, TOLD_EVENTS):
        return str(payload.case_id)
    return None


def _profile(row: Any) -> ContactProfile:
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


def _reason(reason: str | None) -> str | None:
    return reason[:60] if reason else reason


def _pending(row: Any) -> PendingNotice:
    notice = Notice(
        audience=row.audience,
        template=row.template,
        referral_id=UUID(row.referral_id) if row.referral_id else None,
        facts=facts_from_json(row.facts),
    )
    return PendingNotice(notification_id=UUID(row.notification_id), notice=notice, at=row.at)


def _hold(row: Any) -> VisitorHold:
    return VisitorHold(
        case_id=UUID(row.case_id),
        referral_id=UUID(row.referral_id),
        partner_id=row.partner_id,
        documents=tuple(json.loads(row.documents)),
        since=row.since,
        reminders_sent=row.reminders_sent,
        last_reminded_at=row.last_reminded_at,
        ended=row.ended,
    )


def _hold_row(hold: VisitorHold) -> dict[str, Any]:
    return {
        "referral_id": str(hold.referral_id),
        "case_id": str(hold.case_id),
        "partner_id": hold.partner_id,
        "documents": json.dumps(list(hold.documents)),
        "since": hold.since,
        "reminders_sent": hold.reminders_sent,
        "last_reminded_at": hold.last_reminded_at,
        "ended": hold.ended,
    }


def _record(r: Any) -> NotificationRecord:
    return NotificationRecord(
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
        moment_id=UUID(r.moment_id) if r.moment_id else None,
        tried=r.tried,
        receipt=r.receipt,
    )


async def notifications_of_case(session: AsyncSession, *, case_id: str) -> list[NotificationRecord]:
    """Every notification of a case, oldest first (support tools, tests)."""
    rows = (
        await session.execute(
            select(notifications)
            .where(notifications.c.case_id == case_id)
            .order_by(notifications.c.at, notifications.c.notification_id)
        )
    ).all()
    return [_record(r) for r in rows]
