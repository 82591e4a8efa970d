"""case and referral lifecycle on `pimms.cases.v1`, keyed by case id, no personal data."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal
from uuid import UUID

from pydantic import AwareDatetime, Field

from pimms_contracts.base import Event
from pimms_contracts.v1.common import (
    CaseReference,
    Channel,
    CompletionOutcome,
    DocumentList,
    NeedCategory,
    PartnerId,
    ReferralStatus,
    RejectionReason,
    SiteId,
    Urgency,
    WithdrawalReason,
)

CaseOutcome = Literal["resolved", "partially_resolved", "not_resolved", "withdrawn"]
OnHoldReason = Literal["waiting_for_visitor", "missing_documents"]


class LifecycleEvent(Event):
    """Fields every lifecycle event carries."""

    case_id: UUID
    case_reference: CaseReference
    site_id: SiteId
    occurred_at: AwareDatetime


class CaseOpened(LifecycleEvent):
    """A case was opened for a need."""

    ce_type: ClassVar[str] = "fr.pimms.case.opened.v1"

    status: Literal["opened"] = "opened"
    category: NeedCategory
    urgency: Urgency
    channel: Channel | None = None  # front desk, outreach, phone, online (the yearly review)


class CaseClosed(LifecycleEvent):
    """Every referral of the case is final, or the need was withdrawn."""

    ce_type: ClassVar[str] = "fr.pimms.case.closed.v1"

    status: Literal["closed"] = "closed"
    outcome: CaseOutcome
    reason: WithdrawalReason | None = None


class ReferralUnroutable(LifecycleEvent):
    """No partner serves this category in this département: the mediator handles it by hand."""

    ce_type: ClassVar[str] = "fr.pimms.referral.unroutable.v1"

    status: Literal["unroutable"] = "unroutable"
    category: NeedCategory
    departement: str
    reason: Literal["no_matching_partner"] = "no_matching_partner"


class ReferralEvent(LifecycleEvent):
    """Fields every event about one referral carries."""

    referral_id: UUID
    partner_id: PartnerId


class ReferralRequested(ReferralEvent):
    """The need is routed to a partner."""

    ce_type: ClassVar[str] = "fr.pimms.referral.requested.v1"
    status: Literal["requested"] = "requested"


class ReferralTransmitted(ReferralEvent):
    """The referral was delivered to the partner's transport."""

    ce_type: ClassVar[str] = "fr.pimms.referral.transmitted.v1"
    status: Literal["transmitted"] = "transmitted"


class ReferralReceived(ReferralEvent):
    """The partner says it received the referral."""

    ce_type: ClassVar[str] = "fr.pimms.referral.received.v1"
    status: Literal["received"] = "received"


class ReferralAccepted(ReferralEvent):
    """The partner took the referral in charge."""

    ce_type: ClassVar[str] = "fr.pimms.referral.accepted.v1"
    status: Literal["accepted"] = "accepted"


class ReferralInProgress(ReferralEvent):
    """The partner is working on it."""

    ce_type: ClassVar[str] = "fr.pimms.referral.in_progress.v1"
    status: Literal["in_progress"] = "in_progress"


class ReferralOnHold(ReferralEvent):
    """The referral waits for the visitor (with the missing document codes when that is why).

    The partner may have put it on hold (its `on_hold` word, a prefecture's COMPLEMENT_DEMANDE), or
    the platform held it before transmission because the file lacks documents of the partner's
    checklist (prefecture-69): then `reason` is `missing_documents` and nothing was sent yet.
    """

    ce_type: ClassVar[str] = "fr.pimms.referral.on_hold.v1"
    status: Literal["on_hold"] = "on_hold"
    reason: OnHoldReason = "waiting_for_visitor"
    missing_documents: DocumentList = ()


class ReferralCompleted(ReferralEvent):
    """The partner finished, with an outcome."""

    ce_type: ClassVar[str] = "fr.pimms.referral.completed.v1"
    status: Literal["completed"] = "completed"
    outcome: CompletionOutcome


class ReferralRejected(ReferralEvent):
    """The partner refused the referral."""

    ce_type: ClassVar[str] = "fr.pimms.referral.rejected.v1"
    status: Literal["rejected"] = "rejected"
    reason: RejectionReason


class ReferralExpired(ReferralEvent):
    """No final answer within the partner's SLA."""

    ce_type: ClassVar[str] = "fr.pimms.referral.expired.v1"
    status: Literal["expired"] = "expired"
    reason: Literal["no_final_answer"] = "no_final_answer"


class ReferralCancelled(ReferralEvent):
    """The need was withdrawn before the partner finished."""

    ce_type: ClassVar[str] = "fr.pimms.referral.cancelled.v1"
    status: Literal["cancelled"] = "cancelled"
    reason: WithdrawalReason


class ReferralDeliveryFailed(ReferralEvent):
    """The referral could not be delivered to the partner."""

    ce_type: ClassVar[str] = "fr.pimms.referral.delivery_failed.v1"
    status: Literal["delivery_failed"] = "delivery_failed"
    reason: str


class ReferralReminded(ReferralEvent):
    """The partner did not acknowledge in time: it is sent reminder number `reminder`.

    The status is the referral's, unchanged by the reminder. The partner-gateway sends the
    reminder in the partner's format (specs/partners.md, "Cancellations and reminders"); the
    mediator is told.
    """

    ce_type: ClassVar[str] = "fr.pimms.referral.reminded.v1"
    status: ReferralStatus
    reason: Literal["no_acknowledgement"] = "no_acknowledgement"
    reminder: Annotated[int, Field(ge=1)]
    due_at: AwareDatetime


class ReferralEscalated(ReferralEvent):
    """Still no acknowledgement at twice the partner's delay: the mediator must step in."""

    ce_type: ClassVar[str] = "fr.pimms.referral.escalated.v1"
    status: ReferralStatus
    reason: Literal["no_acknowledgement"] = "no_acknowledgement"
    due_at: AwareDatetime


class ReferralDocumentsForwarded(ReferralEvent):
    """Documents the partner asked for were brought: the partner-gateway sends them on.

    `documents` are the codes added since the partner's request, `missing_documents` those it
    asked for that are still missing (the visitor and mediator are told again when some are).
    """

    ce_type: ClassVar[str] = "fr.pimms.referral.documents_forwarded.v1"
    status: Literal["on_hold"] = "on_hold"
    documents: Annotated[DocumentList, Field(min_length=1)]
    missing_documents: DocumentList = ()


REFERRAL_EVENT_BY_STATUS: dict[str, type[ReferralEvent]] = {
    m.model_fields["status"].default: m
    for m in (
        ReferralRequested,
        ReferralTransmitted,
        ReferralReceived,
        ReferralAccepted,
        ReferralInProgress,
        ReferralOnHold,
        ReferralCompleted,
        ReferralRejected,
        ReferralExpired,
        ReferralCancelled,
        ReferralDeliveryFailed,
    )
}

# Events about a referral that do not change its status: the SLA ladder's steps, forwarding.
REFERRAL_SIGNALS: tuple[type[ReferralEvent], ...] = (
    ReferralReminded,
    ReferralEscalated,
    ReferralDocumentsForwarded,
)

LIFECYCLE_EVENTS: tuple[type[LifecycleEvent], ...] = (
    CaseOpened,
    CaseClosed,
    ReferralUnroutable,
    *REFERRAL_EVENT_BY_STATUS.values(),
    *REFERRAL_SIGNALS,
)
