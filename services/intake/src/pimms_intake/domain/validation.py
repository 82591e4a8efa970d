"""Front-office messages checked field by field, with the error codes of specs/front-office.md."""

from __future__ import annotations

from dataclasses import dataclass

from pimms_contracts.base import Event
from pimms_contracts.v1.frontoffice import ErrorCode, FieldError
from pydantic import ValidationError
from pydantic_core import ErrorDetails

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
    "visitor.phone": "un numéro international, par exemple +33612345678",
    "visitor.email": "une adresse e-mail, par exemple prenom.nom@example.org",
    "visitor.postal_code": "cinq chiffres, par exemple 69008",
    "visitor.preferred_language": "un code de langue, par exemple fr, en ou ar",
    "visitor.first_name": "sans caractères de contrôle",
    "visitor.last_name": "sans caractères de contrôle",
    "need.summary": "sans caractères de contrôle (retour à la ligne et tabulation permis)",
    "mediator_id": "sans caractères de contrôle",
}


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
    where = f"Le champ « {path} »" if path else "Le message"
    generic_path = _without_indexes(path)
    hint = _HINTS.get(generic_path)
    context = detail.get("ctx") or {}
    if code == "missing":
        return f"{where} est obligatoire et doit être renseigné."
    if code == "unknown_field":
        return f"{where} n'existe pas dans le format convenu : vérifiez son orthographe."
    if code == "consent_missing":
        return (
            "Le visiteur n'a pas donné son accord pour que sa demande soit transmise à un "
            "partenaire : rien ne peut être partagé sans ce consentement."
        )
    if code == "too_long":
        limit = context.get("max_length")
        return f"{where} est trop long" + (f" ({limit} caractères au plus)." if limit else ".")
    if code == "invalid_type":
        return f"{where} n'a pas le bon type de valeur ({_expected(detail['type'])} attendu)."
    if code == "invalid_format":
        return f"{where} n'est pas au bon format" + (f" : {hint}." if hint else ".")
    expected = context.get("expected")
    if expected:
        return f"{where} n'a pas une valeur permise (valeurs possibles : {expected})."
    return f"{where} n'a pas une valeur permise."


def _expected(kind: str) -> str:
    return {
        "string_type": "texte",
        "bool_type": "true ou false",
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
