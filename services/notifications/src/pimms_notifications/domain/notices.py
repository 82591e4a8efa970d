"""Who is told what (specs/front-office.md, "Notifications"), as plain data."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

from pimms_contracts.v1.internal import PartnerReportRefused
from pimms_contracts.v1.lifecycle import (
    CaseClosed,
    LifecycleEvent,
    ReferralAccepted,
    ReferralCompleted,
    ReferralDeliveryFailed,
    ReferralDocumentsForwarded,
    ReferralEscalated,
    ReferralExpired,
    ReferralOnHold,
    ReferralRejected,
    ReferralReminded,
    ReferralUnroutable,
)

Audience = Literal["visitor", "mediator"]

# Templates the visitor may receive (SMS and e-mail, in every supported language).
CASE_OPENED = "case_opened"
REFERRAL_ACCEPTED = "referral_accepted"
REFERRAL_ON_HOLD = "referral_on_hold"
REFERRAL_ON_HOLD_DOCUMENTS = "referral_on_hold_documents"
REFERRAL_COMPLETED = "referral_completed"
REFERRAL_REJECTED = "referral_rejected"
REFERRAL_EXPIRED = "referral_expired"
CASE_CLOSED = "case_closed"
# Templates only the mediator receives.
REFERRAL_UNROUTABLE = "referral_unroutable"
REFERRAL_DELIVERY_FAILED = "referral_delivery_failed"
PARTNER_REPORT_REFUSED = "partner_report_refused"
VISITOR_UNREACHABLE = "visitor_unreachable"
VISITOR_UNDELIVERED = "visitor_undelivered"
"""A visitor message failed on every channel they allow: the mediator tells them by hand."""
DOCUMENTS_FORWARDED = "documents_forwarded"
"""The documents the partner asked for were forwarded to it, none is missing any more."""
# Moments that are not one lifecycle event.
DOCUMENT_REMINDER = "document_reminder"
"""The visitor is reminded of the documents a held referral still waits for."""
PARTNER_REMINDED = "partner_reminded"
"""The mediator learns the partner did not acknowledge in time and was reminded."""
REFERRAL_ESCALATED = "referral_escalated"
"""The mediator learns the partner still did not acknowledge at twice the delay."""
COMBINED = "combined"
"""Several notices of one moment, said in one message (see domain.moments)."""

VISITOR_TEMPLATES: frozenset[str] = frozenset(
    {
        CASE_OPENED,
        REFERRAL_ACCEPTED,
        REFERRAL_ON_HOLD,
        REFERRAL_ON_HOLD_DOCUMENTS,
        REFERRAL_COMPLETED,
        REFERRAL_REJECTED,
        REFERRAL_EXPIRED,
        CASE_CLOSED,
    }
)
MEDIATOR_TEMPLATES: frozenset[str] = frozenset(
    {
        REFERRAL_UNROUTABLE,
        REFERRAL_ON_HOLD,
        REFERRAL_ON_HOLD_DOCUMENTS,
        REFERRAL_COMPLETED,
        REFERRAL_REJECTED,
        REFERRAL_EXPIRED,
        REFERRAL_DELIVERY_FAILED,
        CASE_CLOSED,
        PARTNER_REPORT_REFUSED,
        VISITOR_UNREACHABLE,
    }
)

ALL_VISITOR_TEMPLATES: frozenset[str] = VISITOR_TEMPLATES | {DOCUMENT_REMINDER}
"""Every template a visitor notice may name (COMBINED aside)."""
ALL_MEDIATOR_TEMPLATES: frozenset[str] = MEDIATOR_TEMPLATES | {
    PARTNER_REMINDED,
    REFERRAL_ESCALATED,
    VISITOR_UNDELIVERED,
    DOCUMENTS_FORWARDED,
}
"""Every template a mediator notice may name (COMBINED aside)."""

# Fixed: notification ids are uuid5(this, "<consumed message id>:<audience>:<template>").
_NOTIFICATION_NAMESPACE = UUID("5f0c3b8e-2a4d-4c1e-9b7a-6d2f1e8c0a93")


@dataclass(frozen=True)
class Facts:
    """Codes a message may mention; the wording turns them into words."""

    partner_id: str | None = None
    outcome: str | None = None
    case_outcome: str | None = None
    rejection_reason: str | None = None
    withdrawal_reason: str | None = None
    delivery_reason: str | None = None
    documents: tuple[str, ...] = ()
    category: str | None = None
    departement: str | None = None
    reported_status: str | None = None
    current_status: str | None = None
    failed_template: str | None = None
    reminder: int | None = None
    """Which reminder this is (1, 2, ...), for reminders and escalations."""


@dataclass(frozen=True)
class Notice:
    """One person to tell, with which template and what the text may mention."""

    audience: Audience
    template: str
    referral_id: UUID | None = None
    facts: Facts = field(default_factory=Facts)


Told = LifecycleEvent | PartnerReportRefused

TOLD_EVENTS: tuple[type[Told], ...] = (
    ReferralUnroutable,
    ReferralAccepted,
    ReferralOnHold,
    ReferralCompleted,
    ReferralRejected,
    ReferralExpired,
    ReferralDeliveryFailed,
    CaseClosed,
    PartnerReportRefused,
    ReferralReminded,
    ReferralEscalated,
    ReferralDocumentsForwarded,
)
"""The events someone is told of; the others (requested, transmitted, ...) are not ours."""


def case_opened_notice() -> Notice:
    """The visitor learns their case reference when the case opens."""
    return Notice(audience="visitor", template=CASE_OPENED)


def visitor_unreachable_notice(*, failed_template: str, referral_id: UUID | None) -> Notice:
    """The mediator learns, once per case, that the platform cannot reach the visitor."""
    return Notice(
        audience="mediator",
        template=VISITOR_UNREACHABLE,
        referral_id=referral_id,
        facts=Facts(failed_template=failed_template),
    )


def visitor_undelivered_notice(
    *, failed_template: str, referral_id: UUID | None, reason: str
) -> Notice:
    """The mediator learns a visitor message failed on every channel the visitor allows."""
    return Notice(
        audience="mediator",
        template=VISITOR_UNDELIVERED,
        referral_id=referral_id,
        facts=Facts(failed_template=failed_template, delivery_reason=reason),
    )


def document_reminder_notice(
    *, referral_id: UUID, partner_id: str, documents: tuple[str, ...], reminder: int
) -> Notice:
    """The visitor is reminded which documents the held referral still waits for."""
    facts = Facts(partner_id=partner_id, documents=documents, reminder=reminder)
    return Notice(
        audience="visitor", template=DOCUMENT_REMINDER, referral_id=referral_id, facts=facts
    )


def partner_reminded_notice(*, referral_id: UUID, partner_id: str, reminder: int) -> Notice:
    """The mediator learns the partner was reminded (no acknowledgement in time)."""
    facts = Facts(partner_id=partner_id, reminder=reminder)
    return Notice(
        audience="mediator", template=PARTNER_REMINDED, referral_id=referral_id, facts=facts
    )


def referral_escalated_notice(*, referral_id: UUID, partner_id: str) -> Notice:
    """The mediator is asked to step in: still no acknowledgement at twice the delay."""
    facts = Facts(partner_id=partner_id)
    return Notice(
        audience="mediator", template=REFERRAL_ESCALATED, referral_id=referral_id, facts=facts
    )


def who_is_told(event: Told) -> tuple[Notice, ...]:
    """The notices an event causes, visitor first; empty when nobody is told."""
    match event:
        case ReferralUnroutable():
            facts = Facts(category=event.category, departement=event.departement)
            return (Notice("mediator", REFERRAL_UNROUTABLE, None, facts),)
        case ReferralAccepted():
            return (Notice("visitor", REFERRAL_ACCEPTED, event.referral_id, _partner(event)),)
        case ReferralOnHold():
            facts = Facts(partner_id=event.partner_id, documents=tuple(event.missing_documents))
            template = REFERRAL_ON_HOLD_DOCUMENTS if facts.documents else REFERRAL_ON_HOLD
            return _both(template, event.referral_id, facts)
        case ReferralCompleted():
            facts = Facts(partner_id=event.partner_id, outcome=event.outcome)
            return _both(REFERRAL_COMPLETED, event.referral_id, facts)
        case ReferralRejected():
            facts = Facts(partner_id=event.partner_id, rejection_reason=event.reason)
            return _both(REFERRAL_REJECTED, event.referral_id, facts)
        case ReferralExpired():
            return _both(REFERRAL_EXPIRED, event.referral_id, _partner(event))
        case ReferralDeliveryFailed():
            facts = Facts(partner_id=event.partner_id, delivery_reason=event.reason)
            return (Notice("mediator", REFERRAL_DELIVERY_FAILED, event.referral_id, facts),)
        case CaseClosed():
            facts = Facts(case_outcome=event.outcome, withdrawal_reason=event.reason)
            return _both(CASE_CLOSED, None, facts)
        case ReferralReminded():
            return (
                partner_reminded_notice(
                    referral_id=event.referral_id,
                    partner_id=event.partner_id,
                    reminder=event.reminder,
                ),
            )
        case ReferralEscalated():
            return (
                referral_escalated_notice(
                    referral_id=event.referral_id, partner_id=event.partner_id
                ),
            )
        case ReferralDocumentsForwarded():
            if event.missing_documents:
                # Some of what the partner asked for is still missing: both hear what is left.
                facts = Facts(partner_id=event.partner_id, documents=tuple(event.missing_documents))
                return _both(REFERRAL_ON_HOLD_DOCUMENTS, event.referral_id, facts)
            facts = Facts(partner_id=event.partner_id, documents=tuple(event.documents))
            return (Notice("mediator", DOCUMENTS_FORWARDED, event.referral_id, facts),)
        case PartnerReportRefused():
            facts = Facts(
                partner_id=event.partner_id,
                reported_status=event.reported_status,
                current_status=event.current_status,
            )
            return (Notice("mediator", PARTNER_REPORT_REFUSED, event.referral_id, facts),)
        case _:
            # case.opened (the visitor hears of it from intake), requested, transmitted,
            # received, in_progress, cancelled: nobody is told.
            return ()


def notification_id(*, message_id: str, audience: Audience, template: str) -> UUID:
    """The same consumed message always gives the same id: a redelivery rewrites, never adds."""
    return uuid.uuid5(_NOTIFICATION_NAMESPACE, f"{message_id}:{audience}:{template}")


def facts_to_json(facts: Facts) -> str:
    """The facts of a notice as stored while it waits for its moment."""
    # Flat fields (asdict's deep copy was a tenth of the service's time): the tuple is a list.
    data = {name: getattr(facts, name) for name in _FACT_FIELDS}
    data["documents"] = list(facts.documents)
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


_FACT_FIELDS = tuple(Facts.__dataclass_fields__)


def facts_from_json(text: str) -> Facts:
    """Facts stored by `facts_to_json` (unknown keys of a later version are ignored)."""
    data: dict[str, Any] = json.loads(text)
    known = {name: value for name, value in data.items() if name in Facts.__dataclass_fields__}
    if "documents" in known:
        known["documents"] = tuple(known["documents"])
    return Facts(**known)


def _partner(event: ReferralAccepted | ReferralExpired) -> Facts:
    return Facts(partner_id=event.partner_id)


def _both(template: str, referral_id: UUID | None, facts: Facts) -> tuple[Notice, ...]:
    return (
        Notice("visitor", template, referral_id, facts),
        Notice("mediator", template, referral_id, facts),
    )
