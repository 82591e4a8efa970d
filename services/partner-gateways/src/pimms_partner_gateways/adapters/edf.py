"""EDF: JSON over Kafka (specs/partners.md, `edf`). EDF's French field names stay in this module."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pimms_contracts.v1.common import CompletionOutcome, PartnerReportedStatus, RejectionReason
from pimms_servicekit.messages import BadMessage, parse_json

from pimms_partner_gateways.adapters.base import (
    BadPartnerMessage,
    CannotRender,
    check_reference,
    parse_partner_time,
    partner_time,
    quoted_word,
)
from pimms_partner_gateways.domain.model import Dossier, PartnerAnswer, Referral

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
_RESPONSE_FIELDS = frozenset(
    {"reference", "statut", "motif", "resultat", "commentaire", "horodatage"}
)


class EdfAdapter:
    """EDF's JSON messages."""

    format = "edf"

    def to_referral(self, dossier: Dossier, referral: Referral) -> bytes:
        """The referral, field for field and in the order of EDF's specification."""
        motif = MOTIFS_BY_CATEGORY.get(dossier.category)
        if motif is None:
            raise CannotRender(
                "unsupported_category", f"EDF's format has no motif for {dossier.category}"
            )
        return _document(
            {
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
        )

    def to_cancellation(self, referral: Referral, at: datetime) -> bytes:
        """`{"reference", "statut": "ANNULE", "horodatage"}`."""
        message = {
            "reference": referral.referral_id,
            "statut": "ANNULE",
            "horodatage": partner_time(at),
        }
        return json.dumps(message, ensure_ascii=False).encode()

    def from_response(self, value: bytes | None) -> PartnerAnswer:
        """One of EDF's answers; BadPartnerMessage says precisely what is wrong with it."""
        try:
            data = parse_json(value)
        except BadMessage as bad:
            raise BadPartnerMessage("not_json", bad.error) from None
        if not isinstance(data, dict):
            raise BadPartnerMessage("schema_invalid", "the message must be a JSON object")
        unexpected = sorted(set(data) - _RESPONSE_FIELDS)
        if unexpected:
            names = ", ".join(quoted_word(name) for name in unexpected)
            raise BadPartnerMessage("schema_invalid", f"unexpected field(s): {names}")
        reference = check_reference(data.get("reference"), field="reference")
        statut = _word(data, "statut", required=True)
        assert statut is not None
        reported_at = parse_partner_time(data.get("horodatage"), field="horodatage")
        _optional_text(data, "commentaire")
        motif = _word(data, "motif")
        resultat = _word(data, "resultat")
        status = STATUTS.get(statut)
        if status is None:
            raise BadPartnerMessage(
                "unknown_status",
                f"statut {quoted_word(statut)} is not one of {', '.join(STATUTS)}",
            )
        outcome: CompletionOutcome | None = None
        reason: RejectionReason | None = None
        if status == "completed":
            if resultat is None:
                raise BadPartnerMessage("schema_invalid", "statut CLOS requires resultat")
            outcome = RESULTATS.get(resultat)
            if outcome is None:
                raise BadPartnerMessage(
                    "unknown_outcome",
                    f"resultat {quoted_word(resultat)} is not one of {', '.join(RESULTATS)}",
                )
        elif status == "rejected":
            reason = MOTIFS_DE_REFUS.get(motif or "", "other")
        return PartnerAnswer(
            reference=reference,
            status=status,
            reported_at=reported_at,
            outcome=outcome,
            reason=reason,
        )


def _document(fields: dict[str, Any]) -> bytes:
    """One top-level field per line, nested objects on one line: the layout of the specification."""
    lines = [
        f"  {json.dumps(name)}: {json.dumps(value, ensure_ascii=False)}"
        for name, value in fields.items()
    ]
    return ("{\n" + ",\n".join(lines) + "\n}").encode()


def _word(data: dict[str, Any], field: str, *, required: bool = False) -> str | None:
    value = data.get(field)
    if value is None:
        if required:
            raise BadPartnerMessage("schema_invalid", f"{field} is missing")
        return None
    if not isinstance(value, str) or not value:
        raise BadPartnerMessage("schema_invalid", f"{field} must be a non-empty string")
    return value


def _optional_text(data: dict[str, Any], field: str) -> None:
    value = data.get(field)
    if value is not None and not isinstance(value, str):
        raise BadPartnerMessage("schema_invalid", f"{field} must be a string")


ADAPTER = EdfAdapter()
