"""The mediator's assessment of a referral, made safe to keep for the yearly partnership review."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pimms_contracts.v1.frontoffice import ReferralAssessed

REMOVED = "[retiré]"

# International (+33 6 12 34 56 78, 0033612345678, +33 (0)6 ...) and French national
# (06 12 34 56 78, 06.12.34.56.78, 0612345678) numbers. Dates (2026-11-27, 27/11/2026) and case
# references (LYON8-2026-000123) do not match.
_PHONE = re.compile(
    r"(?<![\w+])"
    r"(?:(?:\+|00)\d{1,3}[\s.\-]?(?:\(0\)[\s.\-]?)?\d(?:[\s.\-]?\d){7,12}"
    r"|0\d(?:[\s.\-]?\d{2}){4})"
    r"(?!\w)"
)
_EMAIL = re.compile(r"[^\s@<>()\[\]\"',;:]+@[^\s@<>()\[\]\"',;:]+\.[A-Za-z]{2,}")


def scrub_comment(comment: str | None) -> str | None:
    """The comment without phone numbers and e-mail addresses (replaced by `[retiré]`)."""
    if comment is None:
        return None
    return _PHONE.sub(REMOVED, _EMAIL.sub(REMOVED, comment))


def recorded_assessment(assessment: ReferralAssessed) -> ReferralAssessed:
    """The assessment as it is stored and published: its comment scrubbed of contact details."""
    return assessment.model_copy(update={"comment": scrub_comment(assessment.comment)})


@dataclass(frozen=True)
class KnownReferral:
    """A referral of a case as `pimms.cases.v1` last told intake (no personal data)."""

    referral_id: str
    case_id: str
    site_id: str
    partner_id: str
    status: str
