"""Internal events between services. `pimms.intake.cases.v1` carries personal data: never public."""

from __future__ import annotations

from typing import ClassVar, Literal
from uuid import UUID

from pydantic import AwareDatetime, Field

from pimms_contracts.base import Event, FrozenModel
from pimms_contracts.v1.common import (
    CaseReference,
    Channel,
    CompletionOutcome,
    DocumentList,
    Email,
    MediatorId,
    NeedCategory,
    PartnerId,
    PartnerReportedStatus,
    PersonName,
    Phone,
    PostalCode,
    RejectionReason,
    SiteId,
    Summary,
    Urgency,
    WithdrawalReason,
)
from pimms_contracts.v1.frontoffice import ContactConsent

# --- intake -> referrals, partner-gateways, notifications (topic pimms.intake.cases.v1) ---


class SharedVisitor(FrozenModel):
    """What downstream services may know of the visitor: contacts only where consented."""

    first_name: PersonName
    last_name: PersonName
    phone: Phone | None
    email: Email | None
    postal_code: PostalCode
    language: str = Field(pattern=r"^[a-z]{2,3}$")
    contact_consent: ContactConsent


class SharedNeed(FrozenModel):
    """The need as downstream services see it."""

    category: NeedCategory
    summary: Summary
    urgency: Urgency
    documents: DocumentList


class IntakeCaseOpened(Event):
    """Intake opened a case for an accepted submission."""

    ce_type: ClassVar[str] = "fr.pimms.intake.case_opened.v1"

    case_id: UUID
    case_reference: CaseReference
    submission_id: UUID
    site_id: SiteId
    mediator_id: MediatorId
    channel: Channel
    submitted_at: AwareDatetime
    opened_at: AwareDatetime
    visitor: SharedVisitor
    need: SharedNeed


class IntakeDocumentsAdded(Event):
    """The visitor brought more documents; `documents` is the whole set now held."""

    ce_type: ClassVar[str] = "fr.pimms.intake.documents_added.v1"

    case_id: UUID
    case_reference: CaseReference
    added: DocumentList
    documents: DocumentList
    added_at: AwareDatetime


class IntakeCaseWithdrawn(Event):
    """The front office withdrew the need."""

    ce_type: ClassVar[str] = "fr.pimms.intake.case_withdrawn.v1"

    case_id: UUID
    case_reference: CaseReference
    reason: WithdrawalReason
    withdrawn_at: AwareDatetime


# --- partner-gateways -> referrals (topic pimms.partners.reports.v1) ---


class PartnerMessageRef(FrozenModel):
    """Where a partner's message was read, and its exact bytes, so it can be dead-lettered later."""

    topic: str
    partition: int
    offset: int
    key_b64: str | None
    value_b64: str | None


class PartnerDelivered(Event):
    """A message for a partner was accepted by its transport."""

    ce_type: ClassVar[str] = "fr.pimms.gateway.delivered.v1"

    case_id: UUID
    referral_id: UUID
    partner_id: PartnerId
    kind: Literal["referral", "cancellation", "reminder"]
    transport: Literal["kafka", "file_drop", "webhook"]
    delivered_at: AwareDatetime


class PartnerDeliveryFailed(Event):
    """A referral could not be delivered to its partner."""

    ce_type: ClassVar[str] = "fr.pimms.gateway.delivery_failed.v1"

    case_id: UUID
    referral_id: UUID
    partner_id: PartnerId
    reason: str
    failed_at: AwareDatetime


class PartnerStatusReported(Event):
    """A partner's answer, already translated to the platform's status vocabulary."""

    ce_type: ClassVar[str] = "fr.pimms.gateway.status_reported.v1"

    case_id: UUID
    referral_id: UUID
    partner_id: PartnerId
    status: PartnerReportedStatus
    outcome: CompletionOutcome | None = None
    reason: RejectionReason | None = None
    missing_documents: DocumentList = ()
    reported_at: AwareDatetime
    received_at: AwareDatetime
    # The gateway keeps the partner's original message under this id: a refusal names it back.
    report_id: UUID | None = None
    # Deprecated (Kafka coordinates crossing a service boundary): no longer filled; kept optional
    # so that messages already in flight during an upgrade still read.
    source: PartnerMessageRef | None = None


# --- referrals -> notifications (topic pimms.referrals.alerts.v1) ---


class PartnerReportRefused(Event):
    """A partner's report could not apply to the referral; the mediator must know."""

    ce_type: ClassVar[str] = "fr.pimms.referral.report_refused.v1"

    case_id: UUID
    case_reference: CaseReference
    site_id: SiteId
    referral_id: UUID
    partner_id: PartnerId
    reported_status: PartnerReportedStatus
    current_status: str
    reason: Literal["impossible_transition"] = "impossible_transition"
    occurred_at: AwareDatetime
    # The refused report (PartnerStatusReported.report_id): the gateway dead-letters its original.
    report_id: UUID | None = None
