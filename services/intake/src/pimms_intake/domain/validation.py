"""Front-office messages checked field by field, with the error codes of specs/front-office.md."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pimms_contracts.base import Event
from pimms_contracts.v1.common import FINAL_STATUSES
from pimms_contracts.v1.frontoffice import ErrorCode, FieldError, ReferralAssessed
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from pimms_intake.domain.cases import CaseSnapshot

_TYPE_ERRORS = {
    "string_type",
    "bool_type",
    "int_type",
    "float_type",
    "list_type",
    "tuple_type",
    "dict_type",
    "model_type",
    "model_attributes_type",
    "uuid_type",
    "datetime_type",
    "none_required",
    "is_instance_of",
    "dataclass_type",
    "frozen_set_type",
    "set_type",
    "bytes_type",
}
_FORMAT_ERRORS = {
    "string_pattern_mismatch",
    "uuid_parsing",
    "uuid_version",
    "datetime_parsing",
    "datetime_from_date_parsing",
    "timezone_aware",
    "datetime_object_invalid",
    "control_characters",
    "value_error",
    "date_from_datetime_parsing",
}

_HINTS = {
    "submission_id": "un UUID, par exemple 0b9c1f3e-6a53-4f3e-9a55-7d2f4e0c9a11",
    "site_id": "le code du site PIMMS en minuscules, par exemple lyon-8",
    "submitted_at": "une date RFC 3339 avec fuseau, par exemple 2026-11-27T09:30:00+01:00",
    "added_at": "une date RFC 3339 avec fuseau, par exemple 2026-11-27T09:30:00+01:00",
    "withdrawn_at": "une date RFC 3339 avec fuseau, par exemple 2026-11-27T09:30:00+01:00",
    "assessed_at": "une date RFC 3339 avec fuseau, par exemple 2026-11-27T09:30:00+01:00",
    "referral_id": "un UUID, celui de la demande au partenaire",
    "visitor.phone": "un numéro international, par exemple +33612345678",
    "visitor.email": "une adresse e-mail, par exemple prenom.nom@example.org",
    "visitor.postal_code": "cinq chiffres, par exemple 69008",
    "visitor.preferred_language": "un code de langue, par exemple fr, en ou ar",
    "visitor.first_name": "sans caractères de contrôle",
    "visitor.last_name": "sans caractères de contrôle",
    "need.summary": "sans caractères de contrôle (retour à la ligne et tabulation permis)",
    "mediator_id": "sans caractères de contrôle",
    "rating": "une note entière de 1 à 5",
    "comment": "sans caractères de contrôle (retour à la ligne et tabulation permis)",
}

# Every sentence intake says to a mediator, in one place: key -> (contract code, French template).
# `{where}` is « Le champ « x » » (or « Le message » for the whole message); the other names are
# filled by the caller.
MESSAGES: Mapping[str, tuple[ErrorCode, str]] = {
    "missing": ("missing", "{where} est obligatoire et doit être renseigné."),
    "unknown_field": (
        "unknown_field",
        "{where} n'existe pas dans le format convenu : vérifiez son orthographe.",
    ),
    "consent_missing": (
        "consent_missing",
        "Le visiteur n'a pas donné son accord pour que sa demande soit transmise à un "
        "partenaire : rien ne peut être partagé sans ce consentement.",
    ),
    "too_long": ("too_long", "{where} est trop long."),
    "too_long_limit": ("too_long", "{where} est trop long ({limit} caractères au plus)."),
    "invalid_type": ("invalid_type", "{where} n'a pas le bon type de valeur ({expected} attendu)."),
    "invalid_format": ("invalid_format", "{where} n'est pas au bon format."),
    "invalid_format_hint": ("invalid_format", "{where} n'est pas au bon format : {hint}."),
    "invalid_value": ("invalid_value", "{where} n'a pas une valeur permise."),
    "invalid_value_hint": ("invalid_value", "{where} n'a pas une valeur permise : {hint}."),
    "invalid_value_choices": (
        "invalid_value",
        "{where} n'a pas une valeur permise (valeurs possibles : {expected}).",
    ),
    "repeated_value": ("invalid_value", "{where} contient deux fois la même valeur."),
    "conflict": (
        "conflict",
        "Cette demande (même submission_id) a déjà été reçue avec un contenu différent : rien "
        "n'a été modifié. Pour corriger un dossier, retirez-le puis envoyez une nouvelle demande.",
    ),
    "case_closed": (
        "case_closed",
        "Le dossier {case_reference} est clos : les pièces ne peuvent plus y être ajoutées. "
        "Ouvrez une nouvelle demande si nécessaire.",
    ),
    "unknown_submission": (
        "unknown_submission",
        "Aucune demande acceptée ne porte ce submission_id : envoyez d'abord la demande, ou "
        "vérifiez l'identifiant.",
    ),
    "referral_not_of_case": (
        "invalid_value",
        "Le dossier {case_reference} n'a pas de demande à un partenaire portant ce referral_id : "
        "vérifiez l'identifiant.",
    ),
    "referral_not_final": (
        "invalid_value",
        "La demande au partenaire n'est pas encore terminée : elle pourra être évaluée une fois "
        "close.",
    ),
}


def field_error(key: str, *, field: str, **values: object) -> FieldError:
    """The error `key` of MESSAGES about `field`, its French sentence filled with `values`."""
    code, template = MESSAGES[key]
    where = f"Le champ « {field} »" if field else "Le message"
    return FieldError(field=field, code=code, message=template.format(where=where, **values))


def conflict_error() -> FieldError:
    """The same submission id came again with other content: nothing changed."""
    return field_error("conflict", field="")


def case_closed_error(*, case_reference: str) -> FieldError:
    """Documents for a case already closed."""
    return field_error("case_closed", field="submission_id", case_reference=case_reference)


def unknown_submission_error() -> FieldError:
    """Documents, a withdrawal or an assessment for a submission id never accepted."""
    return field_error("unknown_submission", field="submission_id")


def assessment_errors(
    assessment: ReferralAssessed,
    *,
    case: CaseSnapshot | None,
    referral_statuses: Mapping[str, str],
) -> tuple[FieldError, ...]:
    """Why intake refuses a well-formed assessment (none: it is recorded and acknowledged).

    `referral_statuses` holds the status of each referral of the submission's case, as
    `pimms.cases.v1` last told it. Only a referral of this case that is final can be assessed.
    """
    if case is None:
        return (unknown_submission_error(),)
    status = referral_statuses.get(str(assessment.referral_id))
    if status is None:
        key = "referral_not_of_case"
        return (field_error(key, field="referral_id", case_reference=case.case_reference),)
    if status not in FINAL_STATUSES:
        return (field_error("referral_not_final", field="referral_id"),)
    return ()


@dataclass(frozen=True)
class Invalid:
    """A message tied to a submission id, refused with these errors."""

    submission_id: str
    errors: tuple[FieldError, ...]

    @property
    def malformed(self) -> bool:
        """True when the message breaks the schema (not only a business rule like consent)."""
        return any(e.code != "consent_missing" for e in self.errors)


def validate(model: type[Event], raw: bytes | str) -> Event | tuple[FieldError, ...]:
    """The valid message (from its JSON text), or its errors, one per field, in the tool's words."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        return field_errors(exc)


def field_errors(exc: ValidationError) -> tuple[FieldError, ...]:
    """Turn pydantic errors into front-office field errors."""
    errors: list[FieldError] = []
    seen: set[tuple[str, str]] = set()
    for detail in exc.errors(include_input=False, include_url=False):
        path = ".".join(str(part) for part in detail["loc"])
        code = _code(detail)
        if (path, code) in seen:
            continue
        seen.add((path, code))
        errors.append(FieldError(field=path, code=code, message=_message(path, code, detail)))
    return tuple(errors)


def _code(detail: ErrorDetails) -> ErrorCode:
    kind = detail["type"]
    if kind == "missing":
        return "missing"
    if kind == "extra_forbidden":
        return "unknown_field"
    if kind == "consent_missing":
        return "consent_missing"
    if kind in {"string_too_long", "too_long"}:
        return "too_long"
    if kind in {"string_too_short", "too_short"}:
        return "missing"
    if kind in _TYPE_ERRORS:
        return "invalid_type"
    if kind in _FORMAT_ERRORS:
        return "invalid_format"
    return "invalid_value"


def _message(path: str, code: ErrorCode, detail: ErrorDetails) -> str:
    context = detail.get("ctx") or {}
    hint = _HINTS.get(_without_indexes(path))
    values = {
        "limit": context.get("max_length"),
        "expected": context.get("expected") or _expected(detail["type"]),
        "hint": hint,
    }
    return field_error(_message_key(code, detail, hint), field=path, **values).message


def _message_key(code: ErrorCode, detail: ErrorDetails, hint: str | None) -> str:
    context = detail.get("ctx") or {}
    if code == "too_long":
        return "too_long_limit" if context.get("max_length") else "too_long"
    if code == "invalid_format":
        return "invalid_format_hint" if hint else "invalid_format"
    if code == "invalid_value":
        if detail["type"] == "repeated_value":
            return "repeated_value"
        if context.get("expected"):
            return "invalid_value_choices"
        return "invalid_value_hint" if hint else "invalid_value"
    return code


def _expected(kind: str) -> str:
    return {
        "string_type": "texte",
        "bool_type": "true ou false",
        "int_type": "nombre entier",
        "list_type": "liste",
        "tuple_type": "liste",
        "dict_type": "objet",
        "model_type": "objet",
        "model_attributes_type": "objet",
        "uuid_type": "texte UUID",
        "datetime_type": "date",
    }.get(kind, "autre")


def _without_indexes(path: str) -> str:
    return ".".join(part for part in path.split(".") if not part.isdigit())
