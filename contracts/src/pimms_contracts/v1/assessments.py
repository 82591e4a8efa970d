"""The mediator's assessment as intake recorded it, on `pimms.intake.assessments.v1` (internal).

Intake publishes it once it accepted a `fr.pimms.referral.assessed.v1`, keyed by case id, for the
yearly partnership review. It names the referral's site and partner (as `pimms.cases.v1` told
intake) and carries no personal data: no mediator id, and a comment scrubbed of phone numbers and
e-mail addresses. A later assessment of the same referral replaces this one.
"""

from __future__ import annotations

from typing import ClassVar
from uuid import UUID

from pydantic import AwareDatetime

from pimms_contracts.base import Event
from pimms_contracts.v1.common import (
    AssessmentComment,
    AssessmentTags,
    CaseReference,
    PartnerId,
    Rating,
    SiteId,
)


class AssessmentRecorded(Event):
    """A finished referral was assessed by its mediator (replaces any earlier assessment of it)."""

    ce_type: ClassVar[str] = "fr.pimms.intake.assessment_recorded.v1"

    case_id: UUID
    case_reference: CaseReference
    site_id: SiteId
    referral_id: UUID
    partner_id: PartnerId
    rating: Rating
    tags: AssessmentTags
    comment: AssessmentComment | None = None
    assessed_at: AwareDatetime
    recorded_at: AwareDatetime
