"""The mediator's assessment: checked as the contract says, refused in French, kept scrubbed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pimms_contracts.examples import DELETE
from pimms_contracts.v1.frontoffice import ReferralAssessed
from pimms_intake.domain.assessments import recorded_assessment, scrub_comment
from pimms_intake.domain.cases import CaseSnapshot, CaseStatus
from pimms_intake.domain.validation import assessment_errors, validate

REFERRAL = "5f0c2a7e-1d2b-4c3d-8e9f-0a1b2c3d4e5f"


def assessment(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "submission_id": "0b9c1f3e-6a53-4f3e-9a55-7d2f4e0c9a11",
        "referral_id": REFERRAL,
        "mediator_id": "m-042",
        "rating": 4,
        "tags": ["fast", "clear_answer"],
        "comment": "Réponse rapide et claire.",
        "assessed_at": "2026-12-20T10:00:00+01:00",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not DELETE}


def refused(**changes: Any) -> dict[str, tuple[str, str]]:
    result = validate(ReferralAssessed, json.dumps(assessment(**changes)))
    assert isinstance(result, tuple), "expected the assessment to be refused"
    return {e.field: (e.code, e.message) for e in result}


def test_the_contract_example_is_valid() -> None:
    valid = validate(ReferralAssessed, json.dumps(assessment()))
    assert isinstance(valid, ReferralAssessed)
    assert valid.tags == ("fast", "clear_answer")


@pytest.mark.parametrize(
    ("changes", "field", "code", "message"),
    [
        (
            {"rating": 6},
            "rating",
            "invalid_value",
            "Le champ « rating » n'a pas une valeur permise : une note entière de 1 à 5.",
        ),
        (
            {"rating": 0},
            "rating",
            "invalid_value",
            "Le champ « rating » n'a pas une valeur permise : une note entière de 1 à 5.",
        ),
        (
            {"rating": "4"},
            "rating",
            "invalid_type",
            "Le champ « rating » n'a pas le bon type de valeur (nombre entier attendu).",
        ),
        ({"rating": DELETE}, "rating", "missing", None),
        ({"tags": ["quick"]}, "tags.0", "invalid_value", None),
        (
            {"tags": ["slow", "slow"]},
            "tags",
            "invalid_value",
            "Le champ « tags » contient deux fois la même valeur.",
        ),
        (
            {"comment": "x" * 1001},
            "comment",
            "too_long",
            "Le champ « comment » est trop long (1000 caractères au plus).",
        ),
        ({"comment": "a\x00b"}, "comment", "invalid_format", None),
        (
            {"note": "typo"},
            "note",
            "unknown_field",
            "Le champ « note » n'existe pas dans le format convenu : vérifiez son orthographe.",
        ),
        ({"referral_id": "r-1"}, "referral_id", "invalid_format", None),
        ({"assessed_at": "2026-12-20T10:00:00"}, "assessed_at", "invalid_format", None),
    ],
)
def test_a_malformed_assessment_is_refused_field_by_field(
    changes: dict[str, Any], field: str, code: str, message: str | None
) -> None:
    errors = refused(**changes)
    assert list(errors) == [field]
    assert errors[field][0] == code
    if message is not None:
        assert errors[field][1] == message
    assert errors[field][1].startswith(f"Le champ « {field} »")


def test_an_unknown_tag_lists_the_allowed_ones() -> None:
    message = refused(tags=["quick"])["tags.0"][1]
    assert "valeurs possibles" in message
    assert "'visitor_unsatisfied'" in message


def case() -> CaseSnapshot:
    return CaseSnapshot(
        case_id="c-1",
        case_reference="LYON8-2026-000123",
        submission_id="0b9c1f3e-6a53-4f3e-9a55-7d2f4e0c9a11",
        fingerprint="f",
        accepted_at=datetime(2026, 11, 27, 8, 30, tzinfo=UTC),
        correlation_id="k",
        status=CaseStatus.CLOSED,
        documents=(),
    )


def valid() -> ReferralAssessed:
    return ReferralAssessed.model_validate_json(json.dumps(assessment()))


@pytest.mark.parametrize("final", ["completed", "rejected", "expired", "cancelled"])
def test_a_final_referral_of_the_case_can_be_assessed(final: str) -> None:
    assert assessment_errors(valid(), case=case(), referral_statuses={REFERRAL: final}) == ()


def test_an_assessment_for_an_unknown_submission_is_refused() -> None:
    (error,) = assessment_errors(valid(), case=None, referral_statuses={})
    assert (error.field, error.code) == ("submission_id", "unknown_submission")
    assert error.message.startswith("Aucune demande acceptée ne porte ce submission_id")


def test_a_referral_of_another_case_or_not_final_is_an_invalid_value() -> None:
    (other,) = assessment_errors(valid(), case=case(), referral_statuses={"x": "completed"})
    assert (other.field, other.code) == ("referral_id", "invalid_value")
    assert "LYON8-2026-000123" in other.message
    (running,) = assessment_errors(
        valid(), case=case(), referral_statuses={REFERRAL: "in_progress"}
    )
    assert (running.field, running.code) == ("referral_id", "invalid_value")
    assert running.message == (
        "La demande au partenaire n'est pas encore terminée : elle pourra être évaluée une fois "
        "close."
    )


@pytest.mark.parametrize(
    ("comment", "kept"),
    [
        ("Rappeler au 06 12 34 56 78 svp", "Rappeler au [retiré] svp"),
        ("tél. 06.12.34.56.78.", "tél. [retiré]."),
        ("joignable au 0612345678", "joignable au [retiré]"),
        ("numéro +33 6 12 34 56 78 ou +33612345678", "numéro [retiré] ou [retiré]"),
        ("depuis l'étranger 0033 6 12 34 56 78", "depuis l'étranger [retiré]"),
        ("+33 (0)6 12 34 56 78", "[retiré]"),
        ("écrire à marie.dupont@example.org.", "écrire à [retiré]."),
        ("(contact: m.d+pimms@mail.example.fr)", "(contact: [retiré])"),
    ],
)
def test_contact_details_are_removed_from_comments(comment: str, kept: str) -> None:
    assert scrub_comment(comment) == kept


@pytest.mark.parametrize(
    "comment",
    [
        "Dossier LYON8-2026-000123 traité le 2026-11-27, réponse le 27/11/2026 à 14:30.",
        "Réponse en 15 jours, 3 relances, note 4/5.",
        "",
    ],
)
def test_comments_without_contact_details_are_kept_as_they_are(comment: str) -> None:
    assert scrub_comment(comment) == comment


def test_the_recorded_assessment_is_the_scrubbed_one() -> None:
    given = ReferralAssessed.model_validate_json(
        json.dumps(assessment(comment="Appeler le 06 12 34 56 78"))
    )
    recorded = recorded_assessment(given)
    assert recorded.comment == "Appeler le [retiré]"
    assert recorded.model_dump(exclude={"comment"}) == given.model_dump(exclude={"comment"})
    assert recorded_assessment(valid().model_copy(update={"comment": None})).comment is None
