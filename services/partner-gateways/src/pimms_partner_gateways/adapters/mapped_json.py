"""Partners added by data alone: a JSON format read entirely from the directory's `mapping`.

No partner's name appears here: `orange` (Kafka) and `banque-postale` (signed webhook) are two
directory entries (services/partner-gateways/PARTNERS.md). Leaves of a layout name a source of
`pimms_contracts.partners.mapping` or hold a constant; contacts are given only where consented.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from pimms_contracts.partners.mapping import JsonMapping, parse_status_word
from pimms_contracts.v1.common import CompletionOutcome, RejectionReason

from pimms_partner_gateways.adapters.base import (
    MAX_REFERENCE,
    BadPartnerMessage,
    check_reminder_number,
    parse_partner_time,
    partner_time,
    quoted_word,
    read_json_object,
    safe_names,
)
from pimms_partner_gateways.domain.model import Dossier, PartnerAnswer, ReadAnswer, Referral

MAPPED_JSON = "mapped-json"

_REFERRAL_SOURCES: dict[str, Callable[[Dossier, Referral, JsonMapping], object]] = {
    "referral_id": lambda d, r, m: r.referral_id,
    "case_reference": lambda d, r, m: d.case_reference,
    "submitted_at": lambda d, r, m: d.submitted_at.isoformat(),
    "category": lambda d, r, m: m.category_words.get(d.category, d.category),  # type: ignore[call-overload]
    "urgency": lambda d, r, m: m.urgency_words.get(d.urgency, d.urgency),  # type: ignore[call-overload]
    "summary": lambda d, r, m: d.summary,
    "documents": lambda d, r, m: list(d.documents),
    "first_name": lambda d, r, m: d.first_name,
    "last_name": lambda d, r, m: d.last_name,
    "last_name_upper": lambda d, r, m: d.last_name.upper(),
    "phone": lambda d, r, m: d.phone_for_partner,
    "email": lambda d, r, m: d.email_for_partner,
    "postal_code": lambda d, r, m: d.postal_code,
    "language": lambda d, r, m: d.language,
    "site_id": lambda d, r, m: d.site_id,
    "mediator_id": lambda d, r, m: d.mediator_id,
}


class MappedJsonAdapter:
    """One directory-declared partner's JSON messages, both directions."""

    format = MAPPED_JSON

    def __init__(self, *, partner_id: str, mapping: JsonMapping) -> None:
        self.partner_id = partner_id
        self.mapping = mapping

    def to_referral(self, dossier: Dossier, referral: Referral) -> bytes:
        """The referral laid out as the mapping says."""
        return _json(self._referral(dossier, referral))

    def to_reminder(self, dossier: Dossier, referral: Referral, *, number: int) -> bytes:
        """The referral again with the mapping's reminder field set to `number`."""
        fields = self._referral(dossier, referral)
        fields[self.mapping.reminder_field] = check_reminder_number(number)
        return _json(fields)

    def to_cancellation(self, referral: Referral, at: datetime) -> bytes:
        """The cancellation laid out as the mapping says (`at`: when it was withdrawn)."""
        values = {"referral_id": referral.referral_id, "at": partner_time(at)}
        return _json(_fill(self.mapping.cancellation, lambda source: values[source]))

    def from_response(self, value: bytes | None) -> PartnerAnswer:
        """An answer in platform words; BadPartnerMessage says what is wrong."""
        return self.read_response(value).answer

    def read_response(self, value: bytes | None) -> ReadAnswer:
        """An answer and the names of the fields the mapping does not list."""
        spec = self.mapping.response
        data = read_json_object(value)
        reference = _text(data, spec.reference, required=True, limit=MAX_REFERENCE)
        word = _text(data, spec.status, required=True)
        reported_at = parse_partner_time(data.get(spec.at), field=spec.at)
        if spec.comment is not None:
            _text(data, spec.comment)
        assert reference is not None
        assert word is not None
        target = spec.statuses.get(word)
        if target is None:
            raise BadPartnerMessage(
                "unknown_status",
                f"{spec.status} {quoted_word(word)} is not one of {', '.join(spec.statuses)}",
            )
        status, qualifier = parse_status_word(target)
        outcome: CompletionOutcome | None = None
        reason: RejectionReason | None = None
        if status == "completed":
            outcome = qualifier or self._outcome(data)  # type: ignore[assignment]
        elif status == "rejected":
            reason = qualifier or self._reason(data)  # type: ignore[assignment]
        missing: tuple[str, ...] = ()
        if spec.missing_documents is not None and status == "on_hold":
            missing = _codes(data, spec.missing_documents)
        answer = PartnerAnswer(
            reference=reference,
            status=status,
            reported_at=reported_at,
            outcome=outcome,
            reason=reason,
            missing_documents=missing,
        )
        return ReadAnswer(answer=answer, unknown_fields=safe_names(set(data) - spec.listed_fields))

    def _referral(self, dossier: Dossier, referral: Referral) -> dict[str, Any]:
        return _fill(
            self.mapping.referral,
            lambda source: _REFERRAL_SOURCES[source](dossier, referral, self.mapping),
        )

    def _outcome(self, data: Mapping[str, object]) -> CompletionOutcome:
        spec = self.mapping.response
        assert spec.outcome is not None  # the directory refuses completed without an outcome
        word = _text(data, spec.outcome, required=True)
        assert word is not None
        outcome = spec.outcomes.get(word)
        if outcome is None:
            raise BadPartnerMessage(
                "unknown_outcome",
                f"{spec.outcome} {quoted_word(word)} is not one of {', '.join(spec.outcomes)}",
            )
        return outcome

    def _reason(self, data: Mapping[str, object]) -> RejectionReason:
        spec = self.mapping.response
        word = _text(data, spec.reason) if spec.reason is not None else None
        return spec.reasons.get(word or "", "other")


def _fill(layout: Mapping[str, Any], value_of: Callable[[str], object]) -> dict[str, Any]:
    filled: dict[str, Any] = {}
    for name, leaf in layout.items():
        if isinstance(leaf, str):
            filled[name] = value_of(leaf)
        elif set(leaf) == {"const"}:
            filled[name] = leaf["const"]
        else:
            filled[name] = _fill(leaf, value_of)
    return filled


def _json(fields: Mapping[str, Any]) -> bytes:
    return json.dumps(fields, ensure_ascii=False).encode()


def _text(
    data: Mapping[str, object], field: str, *, required: bool = False, limit: int | None = None
) -> str | None:
    value = data.get(field)
    if value is None:
        if required:
            raise BadPartnerMessage("schema_invalid", f"{field} is missing")
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        kind = "a non-empty string" if required else "a string"
        raise BadPartnerMessage("schema_invalid", f"{field} must be {kind}")
    if limit is not None and len(value) > limit:
        raise BadPartnerMessage("schema_invalid", f"{field} is longer than {limit} characters")
    return value


def _codes(data: Mapping[str, object], field: str) -> tuple[str, ...]:
    value = data.get(field)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(code, str) for code in value):
        raise BadPartnerMessage("schema_invalid", f"{field} must be a list of document codes")
    return tuple(dict.fromkeys(value))
