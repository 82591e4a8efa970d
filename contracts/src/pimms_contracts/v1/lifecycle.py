"""case and referral lifecycle on `pimms.cases.v1`, keyed by case id, no personal data."""

from __future__ import annotations

from typing import ClassVar, Literal
from uuid import UUID

from pydantic import AwareDatetime

from pimms_contracts.base import Event
from pimms_contracts.v1.common import (
    CaseReference,
    CompletionOutcome,
    DocumentList,
    NeedCategory,
    PartnerId,
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
    """The partner waits for the visitor (with the missing document codes when that is why)."""

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

LIFECYCLE_EVENTS: tuple[type[LifecycleEvent], ...] = (
    CaseOpened,
    CaseClosed,
    ReferralUnroutable,
    *REFERRAL_EVENT_BY_STATUS.values(),
)
