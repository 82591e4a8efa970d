"""SNCF Voyageurs: JSON over a signed webhook (specs/partners.md, `sncf`). Bodies only: the
signature and its headers are `webhook_signature`'s, the retries `domain.backoff`'s."""

from __future__ import annotations

import json
from datetime import datetime

from pimms_contracts.v1.common import CompletionOutcome, PartnerReportedStatus, RejectionReason
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from pimms_partner_gateways.adapters.base import (
    BadPartnerMessage,
    check_reference,
    check_reminder_number,
    describe_errors,
    parse_partner_time,
    partner_time,
    quoted_word,
    read_json_object,
    safe_names,
)
from pimms_partner_gateways.domain.model import Dossier, PartnerAnswer, ReadAnswer, Referral

STATUSES: dict[str, PartnerReportedStatus] = {
    "received": "received",
    "accepted": "accepted",
    "in_progress": "in_progress",
    "waiting_customer": "on_hold",
    "done": "completed",
    "declined": "rejected",
}
OUTCOMES: dict[str, CompletionOutcome] = {
    "resolved": "resolved",
    "not_resolved": "not_resolved",
    "unreachable": "visitor_unreachable",
}
REASONS: dict[str, RejectionReason] = {
    "out_of_scope": "out_of_scope",
    "duplicate": "duplicate",
    "incomplete": "incomplete",
}


class SncfResponse(BaseModel):
    """A response as SNCF's specification lists it; other fields are ignored (tolerant reader)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    referral_id: StrictStr = Field(min_length=1, max_length=200)
    status: StrictStr = Field(min_length=1)
    outcome: StrictStr | None = Field(default=None, min_length=1)
    reason: StrictStr | None = None
    comment: StrictStr | None = None
    at: StrictStr


RESPONSE_FIELDS = frozenset(SncfResponse.model_fields)


class SncfAdapter:
    """SNCF's webhook bodies."""

    format = "sncf"

    def to_referral(self, dossier: Dossier, referral: Referral) -> bytes:
        """The POST body of a referral, in the specification's field order."""
        return _body(_referral_fields(dossier, referral))

    def to_reminder(self, dossier: Dossier, referral: Referral, *, number: int) -> bytes:
        """The original body with `"reminder": <n>` added (sent with a new X-PIMMS-Delivery)."""
        fields = _referral_fields(dossier, referral)
        return _body({**fields, "reminder": check_reminder_number(number)})

    def to_cancellation(self, referral: Referral, at: datetime) -> bytes:
        """`{"referral_id", "status": "cancelled", "at"}`."""
        return _body(
            {"referral_id": referral.referral_id, "status": "cancelled", "at": partner_time(at)}
        )

    def from_response(self, value: bytes | None) -> PartnerAnswer:
        """A response body; BadPartnerMessage lists every error (the 400's body)."""
        return self.read_response(value).answer

    def read_response(self, value: bytes | None) -> ReadAnswer:
        """A response body and the names of fields SNCF added."""
        data = read_json_object(value)
        try:
            response = SncfResponse.model_validate(data)
        except ValidationError as exc:
            raise BadPartnerMessage("schema_invalid", describe_errors(exc)) from None
        reference = check_reference(response.referral_id, field="referral_id")
        reported_at = parse_partner_time(response.at, field="at")
        status = STATUSES.get(response.status)
        if status is None:
            raise BadPartnerMessage(
                "unknown_status",
                f"status {quoted_word(response.status)} is not one of {', '.join(STATUSES)}",
            )
        outcome: CompletionOutcome | None = None
        reason: RejectionReason | None = None
        if status == "completed":
            if response.outcome is None:
                raise BadPartnerMessage("schema_invalid", "status done requires outcome")
            outcome = OUTCOMES.get(response.outcome)
            if outcome is None:
                raise BadPartnerMessage(
                    "unknown_outcome",
                    f"outcome {quoted_word(response.outcome)} is not one of {', '.join(OUTCOMES)}",
                )
        elif status == "rejected":
            reason = REASONS.get(response.reason or "", "other")
        answer = PartnerAnswer(
            reference=reference,
            status=status,
            reported_at=reported_at,
            outcome=outcome,
            reason=reason,
        )
        return ReadAnswer(answer=answer, unknown_fields=safe_names(set(data) - RESPONSE_FIELDS))


def _referral_fields(dossier: Dossier, referral: Referral) -> dict[str, object]:
    return {
        "referral_id": referral.referral_id,
        "case_reference": dossier.case_reference,
        "requested_at": dossier.submitted_at.isoformat(),
        "topic": dossier.category,
        "priority": dossier.urgency,
        "customer": {
            "first_name": dossier.first_name,
            "last_name": dossier.last_name,
            "phone": dossier.phone_for_partner,
            "email": dossier.email_for_partner,
            "postal_code": dossier.postal_code,
            "language": dossier.language,
        },
        "description": dossier.summary,
        "site": {"id": dossier.site_id, "mediator_id": dossier.mediator_id},
    }


def _body(fields: dict[str, object]) -> bytes:
    return json.dumps(fields, ensure_ascii=False).encode()


ADAPTER = SncfAdapter()
