"""Field-level validation of front-office messages, with the contract's error codes."""

from __future__ import annotations

import json
from typing import get_args

import pytest
from pimms_contracts.examples import DELETE, need_submitted
from pimms_contracts.v1.frontoffice import ErrorCode, NeedSubmitted, NeedWithdrawn
from pimms_intake.domain.validation import (
    MESSAGES,
    Invalid,
    case_closed_error,
    conflict_error,
    unknown_submission_error,
    validate,
)


def check(model: type, data: dict) -> object:
    return validate(model, json.dumps(data))


def errors_of(data: dict) -> dict[str, str]:
    result = check(NeedSubmitted, data)
    assert isinstance(result, tuple), "expected the message to be refused"
    return {e.field: e.code for e in result}


def test_the_contract_example_is_valid() -> None:
    need = check(NeedSubmitted, need_submitted(new_id=False))
    assert isinstance(need, NeedSubmitted)
    assert str(need.submission_id) == "0b9c1f3e-6a53-4f3e-9a55-7d2f4e0c9a11"
    assert need.visitor.contact_consent.sms is True


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        ({"visitor__phone": "0612345678"}, "visitor.phone", "invalid_format"),
        ({"visitor__phone": "+331"}, "visitor.phone", "invalid_format"),
        ({"visitor__email": "not-an-address"}, "visitor.email", "invalid_format"),
        ({"visitor__postal_code": "6900"}, "visitor.postal_code", "invalid_format"),
        ({"visitor__postal_code": "2A004"}, "visitor.postal_code", "invalid_format"),
        ({"visitor__first_name": ""}, "visitor.first_name", "missing"),
        ({"visitor__first_name": "x" * 101}, "visitor.first_name", "too_long"),
        ({"visitor__last_name": "Du\x07pont"}, "visitor.last_name", "invalid_format"),
        ({"visitor__last_name": DELETE}, "visitor.last_name", "missing"),
        ({"need__category": "cooking"}, "need.category", "invalid_value"),
        ({"need__urgency": 3}, "need.urgency", "invalid_value"),
        ({"need__summary": "x" * 2001}, "need.summary", "too_long"),
        ({"need__summary": "a\x00b"}, "need.summary", "invalid_format"),
        ({"channel": "fax"}, "channel", "invalid_value"),
        ({"site_id": "Lyon 8"}, "site_id", "invalid_format"),
        ({"mediator_id": "m" * 65}, "mediator_id", "too_long"),
        ({"submitted_at": "2026-11-27T09:30:00"}, "submitted_at", "invalid_format"),
        ({"submitted_at": "yesterday"}, "submitted_at", "invalid_format"),
        ({"visitor__contact_consent": "yes"}, "visitor.contact_consent", "invalid_type"),
        (
            {"visitor__contact_consent": {"sms": "true", "email": False}},
            "visitor.contact_consent.sms",
            "invalid_type",
        ),
        ({"visitr": {}}, "visitr", "unknown_field"),
        ({"visitor__nickname": "Mimi"}, "visitor.nickname", "unknown_field"),
        ({"consent_to_share": False}, "consent_to_share", "consent_missing"),
        ({"consent_to_share": DELETE}, "consent_to_share", "consent_missing"),
        ({"consent_to_share": "true"}, "consent_to_share", "invalid_type"),
        ({"need__documents": ["ID card"]}, "need.documents.0", "invalid_format"),
    ],
)
def test_each_invalid_field_gets_its_code(changes: dict, field: str, code: str) -> None:
    assert errors_of(need_submitted(**changes)).get(field) == code


def test_several_errors_are_all_reported() -> None:
    errors = errors_of(need_submitted(visitor__phone="12", consent_to_share=False, extra=1))
    assert errors == {
        "visitor.phone": "invalid_format",
        "consent_to_share": "consent_missing",
        "extra": "unknown_field",
    }


def test_messages_are_french_sentences_without_the_values() -> None:
    result = check(NeedSubmitted, need_submitted(visitor__phone="+33 6 12 34 56 78"))
    assert isinstance(result, tuple)
    (error,) = result
    assert error.message.startswith("Le champ « visitor.phone »")
    assert "+33612345678" in error.message  # the example of the expected format
    assert "+33 6 12 34 56 78" not in error.message


def test_names_in_any_script_are_accepted() -> None:
    for first, last in [("مريم", "بن علي"), ("Łukasz", "Wójcik"), ("Анна", "Иванова")]:
        assert isinstance(
            check(
                NeedSubmitted, need_submitted(visitor__first_name=first, visitor__last_name=last)
            ),
            NeedSubmitted,
        )


def test_optional_contacts_and_language_defaults() -> None:
    need = check(
        NeedSubmitted,
        need_submitted(
            visitor__phone=None,
            visitor__email=DELETE,
            visitor__preferred_language=DELETE,
            visitor__contact_consent=DELETE,
        ),
    )
    assert isinstance(need, NeedSubmitted)
    assert need.visitor.preferred_language == "fr"
    assert need.visitor.contact_consent.sms is False


def test_withdrawal_reason_must_be_known() -> None:
    result = check(
        NeedWithdrawn,
        {
            "submission_id": "0b9c1f3e-6a53-4f3e-9a55-7d2f4e0c9a11",
            "reason": "bored",
            "withdrawn_at": "2026-11-27T10:00:00+01:00",
        },
    )
    assert isinstance(result, tuple)
    assert result[0].code == "invalid_value"


def test_invalid_marks_schema_errors_as_malformed_but_not_consent() -> None:
    consent_only = Invalid(
        submission_id="x", errors=check(NeedSubmitted, need_submitted(consent_to_share=False))
    )  # type: ignore[arg-type]
    assert not consent_only.malformed
    broken = Invalid(submission_id="x", errors=check(NeedSubmitted, need_submitted(channel="fax")))  # type: ignore[arg-type]
    assert broken.malformed


def test_business_refusals_come_from_the_one_table_of_messages() -> None:
    assert set(MESSAGES) >= {"conflict", "case_closed", "unknown_submission"}
    conflict = conflict_error()
    assert (conflict.field, conflict.code) == ("", "conflict")
    assert conflict.message == (
        "Cette demande (même submission_id) a déjà été reçue avec un contenu différent : rien "
        "n'a été modifié. Pour corriger un dossier, retirez-le puis envoyez une nouvelle demande."
    )
    closed = case_closed_error(case_reference="LYON8-2026-000123")
    assert (closed.field, closed.code) == ("submission_id", "case_closed")
    assert closed.message == (
        "Le dossier LYON8-2026-000123 est clos : les pièces ne peuvent plus y être ajoutées. "
        "Ouvrez une nouvelle demande si nécessaire."
    )
    unknown = unknown_submission_error()
    assert (unknown.field, unknown.code) == ("submission_id", "unknown_submission")
    assert unknown.message == (
        "Aucune demande acceptée ne porte ce submission_id : envoyez d'abord la demande, ou "
        "vérifiez l'identifiant."
    )


def test_every_message_of_the_table_is_a_french_sentence_for_its_code() -> None:
    codes = set(get_args(ErrorCode))
    for key, (code, template) in MESSAGES.items():
        assert code in codes, key
        assert template.endswith("."), key
