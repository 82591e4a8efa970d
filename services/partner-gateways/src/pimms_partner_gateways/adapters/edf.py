"""EDF: JSON over Kafka (specs/partners.md, `edf`). EDF's French field names stay in this module."""

from __future__ import annotations

from datetime import datetime

from pimms_contracts.v1.common import CompletionOutcome, PartnerReportedStatus, RejectionReason
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from pimms_partner_gateways.adapters.base import (
    BadPartnerMessage,
    CannotRender,
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

MOTIFS_BY_CATEGORY = {"energy_bill": "DIFFICULTE_PAIEMENT"}
URGENCES = {"high": "HAUTE", "normal": "NORMALE", "low": "BASSE"}

STATUTS: dict[str, PartnerReportedStatus] = {
    "RECU": "received",
    "PRIS_EN_CHARGE": "accepted",
    "EN_COURS": "in_progress",
    "EN_ATTENTE_CLIENT": "on_hold",
    "CLOS": "completed",
    "REFUSE": "rejected",
}
RESULTATS: dict[str, CompletionOutcome] = {
    "SOLUTION_TROUVEE": "resolved",
    "SANS_SOLUTION": "not_resolved",
    "CLIENT_INJOIGNABLE": "visitor_unreachable",
}
MOTIFS_DE_REFUS: dict[str, RejectionReason] = {
    "HORS_PERIMETRE": "out_of_scope",
    "DOUBLON": "duplicate",
}
Word = StrictStr


class EdfReponse(BaseModel):
    """An answer as EDF's specification lists it; other fields are ignored (tolerant reader)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    reference: StrictStr = Field(min_length=1, max_length=200)
    statut: Word = Field(min_length=1)
    horodatage: StrictStr
    motif: Word | None = Field(default=None, min_length=1)
    resultat: Word | None = Field(default=None, min_length=1)
    commentaire: StrictStr | None = None


RESPONSE_FIELDS = frozenset(EdfReponse.model_fields)


class EdfAdapter:
    """EDF's JSON messages."""

    format = "edf"

    def to_referral(self, dossier: Dossier, referral: Referral) -> bytes:
        """The referral, field for field and in the order of EDF's specification."""
        return json_document(_referral_fields(dossier, referral))

    def to_reminder(self, dossier: Dossier, referral: Referral, *, number: int) -> bytes:
        """The referral message again with `"relance": <n>` added."""
        return json_document(
            _referral_fields(dossier, referral), extra={"relance": check_reminder_number(number)}
        )

    def to_cancellation(self, referral: Referral, at: datetime) -> bytes:
        """`{"reference", "statut": "ANNULE", "horodatage"}`."""
        return json_line(
            {"reference": referral.referral_id, "statut": "ANNULE", "horodatage": partner_time(at)}
        )

    def from_response(self, value: bytes | None) -> PartnerAnswer:
        """One of EDF's answers; BadPartnerMessage says precisely what is wrong with it."""
        return self.read_response(value).answer

    def read_response(self, value: bytes | None) -> ReadAnswer:
        """One of EDF's answers and the names of the fields EDF added without telling us."""
        data = read_json_object(value)
        try:
            reponse = EdfReponse.model_validate(data)
        except ValidationError as exc:
            raise BadPartnerMessage("schema_invalid", describe_errors(exc)) from None
        reference = check_reference(reponse.reference, field="reference")
        reported_at = parse_partner_time(reponse.horodatage, field="horodatage")
        status = STATUTS.get(reponse.statut)
        if status is None:
            raise BadPartnerMessage(
                "unknown_status",
                f"statut {quoted_word(reponse.statut)} is not one of {', '.join(STATUTS)}",
            )
        outcome: CompletionOutcome | None = None
        reason: RejectionReason | None = None
        if status == "completed":
            if reponse.resultat is None:
                raise BadPartnerMessage("schema_invalid", "statut CLOS requires resultat")
            outcome = RESULTATS.get(reponse.resultat)
            if outcome is None:
                raise BadPartnerMessage(
                    "unknown_outcome",
                    f"resultat {quoted_word(reponse.resultat)} is not one of "
                    f"{', '.join(RESULTATS)}",
                )
        elif status == "rejected":
            reason = MOTIFS_DE_REFUS.get(reponse.motif or "", "other")
        answer = PartnerAnswer(
            reference=reference,
            status=status,
            reported_at=reported_at,
            outcome=outcome,
            reason=reason,
        )
        return ReadAnswer(answer=answer, unknown_fields=safe_names(set(data) - RESPONSE_FIELDS))


def _referral_fields(dossier: Dossier, referral: Referral) -> dict[str, object]:
    motif = MOTIFS_BY_CATEGORY.get(dossier.category)
    if motif is None:
        raise CannotRender(
            "unsupported_category", f"EDF's format has no motif for {dossier.category}"
        )
    return {
        "reference": referral.referral_id,
        "dossierPimms": dossier.case_reference,
        "dateDemande": dossier.submitted_at.isoformat(),
        "motif": motif,
        "urgence": URGENCES[dossier.urgency],
        "client": {
            "nom": dossier.last_name.upper(),
            "prenom": dossier.first_name,
            "telephone": dossier.phone_for_partner,
            "email": dossier.email_for_partner,
            "codePostal": dossier.postal_code,
        },
        "pointAccueil": {"code": dossier.site_id, "mediateur": dossier.mediator_id},
        "description": dossier.summary,
    }


ADAPTER = EdfAdapter()
