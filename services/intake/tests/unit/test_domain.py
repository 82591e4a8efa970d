"""References, fingerprints and what downstream services may see of the visitor."""

from __future__ import annotations

import json

import pytest
from pimms_contracts.examples import need_submitted
from pimms_contracts.v1.frontoffice import NeedSubmitted
from pimms_intake.domain.cases import (
    decide_submission,
    fingerprint,
    merge_documents,
    normalize_language,
    shared_visitor,
)
from pimms_intake.domain.references import format_reference, reference_prefix


def need(**changes: object) -> NeedSubmitted:
    return NeedSubmitted.model_validate_json(json.dumps(need_submitted(new_id=False, **changes)))


@pytest.mark.parametrize(
    ("site", "prefix"),
    [("lyon-8", "LYON8"), ("saint-denis-nord", "SAINTDE"), ("a1", "A1"), ("brest", "BREST")],
)
def test_reference_prefix(site: str, prefix: str) -> None:
    assert reference_prefix(site) == prefix


def test_references_fit_the_contract() -> None:
    assert format_reference("LYON8", 2026, 123) == "LYON8-2026-000123"
    longest = format_reference("SAINTDE", 2026, 9_999_999)
    assert len(longest) == 20
    with pytest.raises(ValueError, match="exhausted"):
        format_reference("SAINTDE", 2026, 10_000_000)


def test_same_content_same_fingerprint_whatever_the_defaults() -> None:
    explicit = need(visitor__preferred_language="fr", need__documents=["id_card", "last_bill"])
    assert fingerprint(explicit) == fingerprint(need())
    assert fingerprint(need(need__urgency="low")) != fingerprint(need())


def test_submission_decisions() -> None:
    assert decide_submission(None, "abc") == "open"


@pytest.mark.parametrize(
    ("tag", "language"), [("fr", "fr"), ("fr-FR", "fr"), ("EN-gb", "en"), ("ar", "ar")]
)
def test_language_region_is_dropped(tag: str, language: str) -> None:
    assert normalize_language(tag) == language


def test_contacts_are_shared_only_where_consented() -> None:
    visitor = shared_visitor(need(visitor__contact_consent={"sms": True, "email": False}))
    assert visitor.phone == "+33612345678"
    assert visitor.email is None
    nothing = shared_visitor(need(visitor__contact_consent={"sms": False, "email": False}))
    assert nothing.phone is None
    assert nothing.email is None


def test_documents_merge_without_repeats() -> None:
    assert merge_documents(("id_card",), ("tax_notices", "id_card")) == ("id_card", "tax_notices")
