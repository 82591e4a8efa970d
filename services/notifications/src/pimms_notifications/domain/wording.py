"""Languages, and codes (outcomes, reasons, documents, statuses) as words a person reads."""

from __future__ import annotations

import re
from collections.abc import Mapping

from pimms_notifications.domain.notices import Facts, Notice

SUPPORTED_LANGUAGES: tuple[str, ...] = ("fr", "en", "ar")
DEFAULT_LANGUAGE = "fr"
MEDIATOR_LANGUAGE = "fr"

Words = Mapping[str, Mapping[str, str]]

UNKNOWN_PARTNER: Mapping[str, str] = {
    "fr": "le partenaire",
    "en": "the partner",
    "ar": "الشريك",
}

COMPLETION_OUTCOMES: Words = {
    "fr": {
        "resolved": "une solution a été trouvée",
        "not_resolved": "aucune solution n'a pu être trouvée",
        "visitor_unreachable": "l'opérateur n'a pas réussi à vous joindre",
    },
    "en": {
        "resolved": "a solution was found",
        "not_resolved": "no solution could be found",
        "visitor_unreachable": "the operator could not reach you",
    },
    "ar": {
        "resolved": "تم إيجاد حل",
        "not_resolved": "لم يتم التوصل إلى حل",
        "visitor_unreachable": "لم يتمكن المتعامل من الاتصال بك",
    },
}

# The mediator reads about the visitor, not to them.
MEDIATOR_COMPLETION_OUTCOMES: Mapping[str, str] = {
    "resolved": "solution trouvée",
    "not_resolved": "sans solution",
    "visitor_unreachable": "le visiteur n'a pas pu être joint",
}

CASE_OUTCOMES: Words = {
    "fr": {
        "resolved": "votre demande a été résolue",
        "partially_resolved": "votre demande a été en partie résolue",
        "not_resolved": "aucune solution n'a pu être trouvée",
        "withdrawn": "la demande a été retirée",
    },
    "en": {
        "resolved": "your request was resolved",
        "partially_resolved": "your request was partly resolved",
        "not_resolved": "no solution could be found",
        "withdrawn": "the request was withdrawn",
    },
    "ar": {
        "resolved": "تمت معالجة طلبك",
        "partially_resolved": "تمت معالجة طلبك جزئيًا",
        "not_resolved": "لم يتم التوصل إلى حل",
        "withdrawn": "تم سحب الطلب",
    },
}

MEDIATOR_CASE_OUTCOMES: Mapping[str, str] = {
    "resolved": "résolu",
    "partially_resolved": "résolu en partie",
    "not_resolved": "non résolu",
    "withdrawn": "retiré",
}

WITHDRAWAL_REASONS: Mapping[str, str] = {
    "visitor_request": "à la demande du visiteur",
    "resolved_at_desk": "résolu au guichet",
    "duplicate": "doublon",
    "entered_in_error": "saisi par erreur",
}

REJECTION_REASONS: Mapping[str, str] = {
    "out_of_scope": "hors du périmètre du partenaire",
    "duplicate": "doublon d'une demande déjà reçue",
    "incomplete": "dossier incomplet",
    "other": "autre motif",
}

DOCUMENTS: Words = {
    "fr": {
        "id_card": "pièce d'identité",
        "birth_certificate": "acte de naissance",
        "proof_of_address": "justificatif de domicile",
        "tax_notices": "avis d'imposition",
        "language_diploma": "diplôme de langue française",
        "last_bill": "dernière facture",
        "residence_permit": "titre de séjour",
        "payslips": "bulletins de salaire",
        "bank_details": "relevé d'identité bancaire",
    },
    "en": {
        "id_card": "identity document",
        "birth_certificate": "birth certificate",
        "proof_of_address": "proof of address",
        "tax_notices": "tax notices",
        "language_diploma": "French language diploma",
        "last_bill": "latest bill",
        "residence_permit": "residence permit",
        "payslips": "payslips",
        "bank_details": "bank details (RIB)",
    },
    "ar": {
        "id_card": "وثيقة الهوية",
        "birth_certificate": "شهادة الميلاد",
        "proof_of_address": "إثبات السكن",
        "tax_notices": "الإشعارات الضريبية",
        "language_diploma": "شهادة اللغة الفرنسية",
        "last_bill": "آخر فاتورة",
        "residence_permit": "بطاقة الإقامة",
        "payslips": "كشوف الرواتب",
        "bank_details": "بيانات الحساب البنكي",
    },
}

LIST_SEPARATORS: Mapping[str, str] = {"fr": ", ", "en": ", ", "ar": "، "}

STATUSES: Mapping[str, str] = {
    "requested": "demandée",
    "transmitted": "transmise",
    "received": "reçue",
    "accepted": "prise en charge",
    "in_progress": "en cours",
    "on_hold": "en attente du visiteur",
    "completed": "terminée",
    "rejected": "refusée",
    "expired": "expirée",
    "cancelled": "annulée",
    "delivery_failed": "non transmise",
}

CATEGORIES: Mapping[str, str] = {
    "energy_bill": "facture d'énergie",
    "water_bill": "facture d'eau",
    "postal_service": "services postaux",
    "rail_travel": "voyage en train",
    "telecom": "télécommunications",
    "naturalisation": "naturalisation",
    "housing_rights": "droit au logement",
    "health_insurance": "assurance maladie",
    "family_benefits": "prestations familiales",
    "banking": "banque",
    "micro_credit": "microcrédit",
    "other": "autre demande",
}

TEMPLATE_LABELS: Mapping[str, str] = {
    "case_opened": "l'ouverture du dossier et sa référence",
    "referral_accepted": "la prise en charge par le partenaire",
    "referral_on_hold": "la demande en attente d'un retour du visiteur",
    "referral_on_hold_documents": "les pièces manquantes à apporter",
    "referral_completed": "le résultat de la demande",
    "referral_rejected": "le refus de la demande",
    "referral_expired": "l'absence de réponse du partenaire",
    "case_closed": "la clôture du dossier",
    "document_reminder": "le rappel des pièces manquantes",
    "combined": "plusieurs nouvelles de son dossier",
}


def visitor_language(tag: str | None) -> str:
    """The language to write to the visitor in: their own if the platform speaks it, else fr."""
    primary = re.split(r"[-_]", (tag or "").strip(), maxsplit=1)[0].lower()
    return primary if primary in SUPPORTED_LANGUAGES else DEFAULT_LANGUAGE


def _word(words: Mapping[str, str], code: str) -> str:
    """The word for a code; an unknown code is shown readably rather than dropped."""
    return words.get(code) or code.replace("_", " ")


def _in(words: Words, language: str) -> Mapping[str, str]:
    return words.get(language) or words[DEFAULT_LANGUAGE]


def document_list(codes: tuple[str, ...], language: str) -> str:
    """Document codes as a list of names in `language`."""
    names = [_word(_in(DOCUMENTS, language), code) for code in codes]
    return LIST_SEPARATORS.get(language, ", ").join(names)


def template_variables(
    notice: Notice,
    *,
    language: str,
    case_reference: str,
    first_name: str | None = None,
    partner_name: str | None = None,
) -> dict[str, str]:
    """Everything a template may say for this notice, as words in `language`."""
    facts: Facts = notice.facts
    mediator = notice.audience == "mediator"
    values: dict[str, str] = {"case_reference": case_reference}
    if first_name is not None:
        values["first_name"] = first_name
    if facts.partner_id is not None:
        values["partner"] = partner_name or UNKNOWN_PARTNER.get(language, UNKNOWN_PARTNER["fr"])
    if facts.outcome is not None:
        values["outcome"] = (
            _word(MEDIATOR_COMPLETION_OUTCOMES, facts.outcome)
            if mediator
            else _word(_in(COMPLETION_OUTCOMES, language), facts.outcome)
        )
    if facts.case_outcome is not None:
        if mediator:
            outcome = _word(MEDIATOR_CASE_OUTCOMES, facts.case_outcome)
            if facts.withdrawal_reason:
                outcome += f" ({_word(WITHDRAWAL_REASONS, facts.withdrawal_reason)})"
            values["outcome"] = outcome
        else:
            values["outcome"] = _word(_in(CASE_OUTCOMES, language), facts.case_outcome)
    if facts.rejection_reason is not None:
        values["reason"] = _word(REJECTION_REASONS, facts.rejection_reason)
    if facts.delivery_reason is not None:
        values["reason"] = facts.delivery_reason
    if facts.documents:
        values["documents"] = document_list(facts.documents, language)
    if facts.category is not None:
        values["category"] = _word(CATEGORIES, facts.category)
    if facts.departement is not None:
        values["departement"] = facts.departement
    if facts.reported_status is not None:
        values["reported_status"] = _word(STATUSES, facts.reported_status)
    if facts.current_status is not None:
        values["current_status"] = _word(STATUSES, facts.current_status)
    if facts.reminder is not None:
        values["reminder"] = str(facts.reminder)
    if facts.failed_template is not None:
        values["failed_template"] = _word(TEMPLATE_LABELS, facts.failed_template)
    return values
