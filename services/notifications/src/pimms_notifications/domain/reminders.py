"""Visitor reminders: a referral held for missing documents reminds its visitor, at most twice.

The first reminder goes `delay` after the visitor was told the referral is on hold, the second
`delay` after the first. Reminders stop as soon as the visitor acts (brings documents), the
referral moves on (any other status), or the case closes. A hold waiting for the visitor
without a document list is not reminded: the visitor has nothing named to bring.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from uuid import UUID

from pimms_contracts.v1.internal import IntakeCaseWithdrawn, IntakeDocumentsAdded
from pimms_contracts.v1.lifecycle import (
    CaseClosed,
    LifecycleEvent,
    ReferralDocumentsForwarded,
    ReferralEscalated,
    ReferralEvent,
    ReferralOnHold,
    ReferralReminded,
)

from pimms_notifications.domain.notices import (
    DOCUMENT_REMINDER,
    Notice,
    document_reminder_notice,
    notification_id,
)

MAX_VISITOR_REMINDERS = 2
DEFAULT_REMINDER_DELAY = timedelta(days=3)

HoldEvent = LifecycleEvent | IntakeDocumentsAdded | IntakeCaseWithdrawn


@dataclass(frozen=True)
class VisitorHold:
    """A referral waiting for documents from its visitor, and the reminders sent so far."""

    case_id: UUID
    referral_id: UUID
    partner_id: str
    documents: tuple[str, ...]
    since: datetime
    reminders_sent: int = 0
    last_reminded_at: datetime | None = None
    ended: bool = False


def hold_started(event: ReferralOnHold) -> VisitorHold | None:
    """A hold to remind the visitor of, when the referral waits for named documents."""
    if event.reason != "missing_documents" or not event.missing_documents:
        return None
    return VisitorHold(
        case_id=event.case_id,
        referral_id=event.referral_id,
        partner_id=event.partner_id,
        documents=tuple(event.missing_documents),
        since=event.occurred_at,
    )


def hold_from_forwarded(event: ReferralDocumentsForwarded) -> VisitorHold | None:
    """Documents were forwarded but some are still missing: a new hold for what is left."""
    if not event.missing_documents:
        return None
    return VisitorHold(
        case_id=event.case_id,
        referral_id=event.referral_id,
        partner_id=event.partner_id,
        documents=tuple(event.missing_documents),
        since=event.occurred_at,
    )


def hold_after(hold: VisitorHold, event: HoldEvent) -> VisitorHold:
    """The hold once `event` is known: ended when the visitor acted, it moved on, or it closed."""
    if hold.ended or event.case_id != hold.case_id:
        return hold
    match event:
        case IntakeDocumentsAdded() | IntakeCaseWithdrawn() | CaseClosed():
            return replace(hold, ended=True)
        case ReferralReminded() | ReferralEscalated():
            return hold  # the partner is chased: the visitor still has documents to bring
        case ReferralDocumentsForwarded() if event.referral_id == hold.referral_id:
            # The visitor acted: what is still missing is a new hold, its reminders start over.
            return hold_from_forwarded(event) or replace(hold, ended=True)
        case ReferralOnHold() if event.referral_id == hold.referral_id:
            # The partner asks again (perhaps for other documents): the count starts over.
            return hold_started(event) or replace(hold, ended=True)
        case ReferralEvent() if event.referral_id == hold.referral_id:
            return replace(hold, ended=True)
        case _:
            return hold


def next_reminder_at(
    hold: VisitorHold,
    *,
    delay: timedelta = DEFAULT_REMINDER_DELAY,
    limit: int = MAX_VISITOR_REMINDERS,
) -> datetime | None:
    """When the next reminder is due, or None when no reminder is left to send."""
    if hold.ended or hold.reminders_sent >= limit:
        return None
    return (hold.last_reminded_at or hold.since) + delay


def reminder_due(
    hold: VisitorHold,
    *,
    now: datetime,
    delay: timedelta = DEFAULT_REMINDER_DELAY,
    limit: int = MAX_VISITOR_REMINDERS,
) -> Notice | None:
    """The reminder to send at `now`, or None when none is due."""
    due = next_reminder_at(hold, delay=delay, limit=limit)
    if due is None or now < due:
        return None
    return document_reminder_notice(
        referral_id=hold.referral_id,
        partner_id=hold.partner_id,
        documents=hold.documents,
        reminder=hold.reminders_sent + 1,
    )


def reminded(hold: VisitorHold, *, at: datetime) -> VisitorHold:
    """The hold once a reminder went at `at`."""
    return replace(hold, reminders_sent=hold.reminders_sent + 1, last_reminded_at=at)


def reminder_notification_id(hold: VisitorHold, *, reminder: int) -> UUID:
    """The id of the hold's n-th reminder: the same hold and number always give the same id."""
    key = f"{hold.referral_id}:{hold.since.isoformat()}:reminder:{reminder}"
    return notification_id(message_id=key, audience="visitor", template=DOCUMENT_REMINDER)
