"""Messages exchanged with PIMMS front-office tools (specs/front-office.md), exactly."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal
from uuid import UUID

from pydantic import AfterValidator, AwareDatetime, Field
from pydantic_core import PydanticCustomError

from pimms_contracts.base import Event, FrozenModel
from pimms_contracts.v1.common import (
    AssessmentComment,
    AssessmentTags,
    CaseReference,
    Channel,
    DocumentList,
    Email,
    LanguageTag,
    MediatorId,
    NeedCategory,
    PersonName,
    Phone,
    PostalCode,
    Rating,
    SiteId,
    Summary,
    Urgency,
    WithdrawalReason,
)

ErrorCode = Literal[
    "missing",
    "invalid_type",
    "invalid_format",
    "invalid_value",
    "too_long",
    "unknown_field",
    "consent_missing",
    "unknown_submission",
    "conflict",
    "case_closed",
]


def _consent_given(value: bool) -> bool:
    if value is not True:
        raise PydanticCustomError(
            "consent_missing", "the visitor did not consent to share the need with a partner"
        )
    return value


class ContactConsent(FrozenModel):
    """Channels the visitor agreed to be contacted on."""

    sms: bool = False
    email: bool = False


class Visitor(FrozenModel):
    """The person the need is for, as the front office recorded them."""

    first_name: PersonName
    last_name: PersonName
    phone: Phone | None = None
    email: Email | None = None
    postal_code: PostalCode
    preferred_language: LanguageTag = "fr"
    contact_consent: ContactConsent = ContactConsent()


class Need(FrozenModel):
    """What the visitor needs help with."""

    category: NeedCategory
    summary: Summary
    urgency: Urgency
    documents: DocumentList = ()


class NeedSubmitted(Event):
    """A front-office tool submits a visitor's need."""

    ce_type: ClassVar[str] = "fr.pimms.need.submitted.v1"

    submission_id: UUID
    site_id: SiteId
    mediator_id: MediatorId
    submitted_at: AwareDatetime
    channel: Channel
    visitor: Visitor
    need: Need
    consent_to_share: Annotated[bool, AfterValidator(_consent_given)] = Field(
        default=False, validate_default=True
    )


class NeedDocumentsAdded(Event):
    """The visitor came back with more documents."""

    ce_type: ClassVar[str] = "fr.pimms.need.documents_added.v1"

    submission_id: UUID
    documents: Annotated[DocumentList, Field(min_length=1)]
    added_at: AwareDatetime


class NeedWithdrawn(Event):
    """The need is withdrawn; every unfinished referral is cancelled and the case closes."""

    ce_type: ClassVar[str] = "fr.pimms.need.withdrawn.v1"

    submission_id: UUID
    reason: WithdrawalReason
    withdrawn_at: AwareDatetime


class ReferralAssessed(Event):
    """The mediator's assessment of a finished referral, for the yearly partnership review.

    `comment` must carry no personal data: intake removes phone numbers and e-mail addresses
    from it before it is stored or published. A second assessment of a referral replaces the first.
    """

    ce_type: ClassVar[str] = "fr.pimms.referral.assessed.v1"

    submission_id: UUID
    referral_id: UUID
    mediator_id: MediatorId
    rating: Rating
    tags: AssessmentTags
    comment: AssessmentComment | None = None
    assessed_at: AwareDatetime


class NeedAccepted(Event):
    """The platform opened a case for a submission (the same answer on every repeat)."""

    ce_type: ClassVar[str] = "fr.pimms.need.accepted.v1"

    submission_id: str
    case_id: UUID
    case_reference: CaseReference
    accepted_at: AwareDatetime


class NeedAcknowledged(Event):
    """The platform took into account documents added to, the withdrawal of, or an assessment."""

    ce_type: ClassVar[str] = "fr.pimms.need.acknowledged.v1"

    submission_id: str
    case_id: UUID
    case_reference: CaseReference
    acknowledged: Literal["documents_added", "withdrawn", "assessed"]
    acknowledged_at: AwareDatetime


class FieldError(FrozenModel):
    """One reason a message was rejected; `message` is a French sentence for the mediator."""

    field: str
    code: ErrorCode
    message: str


class NeedRejected(Event):
    """The platform refused a message, field by field."""

    ce_type: ClassVar[str] = "fr.pimms.need.rejected.v1"

    submission_id: str
    rejected_at: AwareDatetime
    errors: Annotated[tuple[FieldError, ...], Field(min_length=1)]


FRONT_OFFICE_INPUTS: dict[str, type[Event]] = {
    m.ce_type: m for m in (NeedSubmitted, NeedDocumentsAdded, NeedWithdrawn)
}
# ReferralAssessed joins FRONT_OFFICE_INPUTS when intake's handler for it is wired: until then
# intake's route dead-letters it as an unknown type rather than decoding what it cannot handle.
