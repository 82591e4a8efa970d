"""Préfecture du Rhône: naturalisation files, JSON over Kafka (specs/partners.md, `prefecture-69`).

The checklist is the directory's `required_documents` for the partner (the specification's five
documents); whether an incomplete file is held is the referrals service's decision, the file says
`complet` either way.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pimms_contracts.v1.common import CompletionOutcome, PartnerReportedStatus, RejectionReason
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from pimms_partner_gateways.adapters.base import (
    BadPartnerMessage,
    check_reference,
    check_reminder_number,
    describe_errors,
    json_document,
    json_line,
    parse_partner_time,
    partner_time,
    quoted_word,
    read_json_object,
    safe_names,
)
from pimms_partner_gateways.domain.model import Dossier, PartnerAnswer, ReadAnswer, Referral

CHECKLIST = (
    "id_card",
    "birth_certificate",
    "proof_of_address",
    "tax_notices",
    "language_diploma",
)
COMPLEMENT_DEMANDE = "COMPLEMENT_DEMANDE"
ETATS: dict[str, tuple[PartnerReportedStatus, CompletionOutcome | None, RejectionReason | None]] = {
    "RECEPTIONNE": ("received", None, None),
    "INSTRUCTION": ("in_progress", None, None),
    COMPLEMENT_DEMANDE: ("on_hold", None, None),
    "DECISION_RENDUE": ("completed", "resolved", None),
    "IRRECEVABLE": ("rejected", None, "incomplete"),
}


class PrefectureReponse(BaseModel):
    """An answer as the prefecture's specification lists it; other fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    numeroDemande: StrictStr = Field(min_length=1, max_length=200)
    etat: StrictStr = Field(min_length=1)
    piecesDemandees: list[StrictStr] | None = Field(default=None, max_length=30)
    horodatage: StrictStr


RESPONSE_FIELDS = frozenset(PrefectureReponse.model_fields)


def missing_documents(
    documents: Iterable[str], *, checklist: Iterable[str] = CHECKLIST
) -> tuple[str, ...]:
    """The checklist's documents not among `documents`, in the checklist's order."""
    given = set(documents)
    return tuple(code for code in checklist if code not in given)


class PrefectureAdapter:
    """The prefecture's JSON messages, with its naturalisation checklist."""

    format = "prefecture-69"

    def __init__(self, *, checklist: tuple[str, ...] = CHECKLIST) -> None:
        self.checklist = checklist or CHECKLIST

    def to_referral(self, dossier: Dossier, referral: Referral) -> bytes:
        """The file: `piecesFournies` the visitor's documents, `complet` the checklist's verdict."""
        return json_document(self._fields(dossier, referral))

    def to_reminder(self, dossier: Dossier, referral: Referral, *, number: int) -> bytes:
        """The file again with `"relance": <n>`."""
        return json_document(
            self._fields(dossier, referral), extra={"relance": check_reminder_number(number)}
        )

    def to_cancellation(self, referral: Referral, at: datetime) -> bytes:
        """`{"numeroDemande", "etat": "RETIRE", "horodatage"}`."""
        return json_line(
            {
                "numeroDemande": referral.referral_id,
                "etat": "RETIRE",
                "horodatage": partner_time(at),
            }
        )

    def from_response(self, value: bytes | None) -> PartnerAnswer:
        """One of the prefecture's answers; BadPartnerMessage says what is wrong."""
        return self.read_response(value).answer

    def read_response(self, value: bytes | None) -> ReadAnswer:
        """An answer; `COMPLEMENT_DEMANDE` carries the requested checklist documents."""
        data = read_json_object(value)
        try:
            reponse = PrefectureReponse.model_validate(data)
        except ValidationError as exc:
            raise BadPartnerMessage("schema_invalid", describe_errors(exc)) from None
        reference = check_reference(reponse.numeroDemande, field="numeroDemande")
        reported_at = parse_partner_time(reponse.horodatage, field="horodatage")
        known = ETATS.get(reponse.etat)
        if known is None:
            raise BadPartnerMessage(
                "unknown_status",
                f"etat {quoted_word(reponse.etat)} is not one of {', '.join(ETATS)}",
            )
        status, outcome, reason = known
        requested: tuple[str, ...] = ()
        if reponse.etat == COMPLEMENT_DEMANDE:
            requested = self._requested(reponse.piecesDemandees)
        answer = PartnerAnswer(
            reference=reference,
            status=status,
            reported_at=reported_at,
            outcome=outcome,
            reason=reason,
            missing_documents=requested,
        )
        return ReadAnswer(answer=answer, unknown_fields=safe_names(set(data) - RESPONSE_FIELDS))

    def _requested(self, pieces: list[str] | None) -> tuple[str, ...]:
        if not pieces:
            raise BadPartnerMessage(
                "schema_invalid", "etat COMPLEMENT_DEMANDE requires a non-empty piecesDemandees"
            )
        unknown = [piece for piece in pieces if piece not in self.checklist]
        if unknown:
            names = ", ".join(quoted_word(piece) for piece in unknown)
            raise BadPartnerMessage(
                "unknown_document",
                f"piecesDemandees {names} not in the checklist {', '.join(self.checklist)}",
            )
        return tuple(dict.fromkeys(pieces))

    def _fields(self, dossier: Dossier, referral: Referral) -> dict[str, object]:
        documents = list(dict.fromkeys(dossier.documents))
        return {
            "numeroDemande": referral.referral_id,
            "dossierPimms": dossier.case_reference,
            "dateDepot": dossier.submitted_at.isoformat(),
            "demandeur": {
                "nom": dossier.last_name,
                "prenom": dossier.first_name,
                "telephone": dossier.phone_for_partner,
                "email": dossier.email_for_partner,
                "codePostal": dossier.postal_code,
            },
            "piecesFournies": documents,
            "complet": not missing_documents(documents, checklist=self.checklist),
            "pointAccueil": dossier.site_id,
        }


ADAPTER = PrefectureAdapter()
