"""Who is told what, on which channel, in which language: pure functions, no I/O."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from pimms_contracts.v1.internal import PartnerReportRefused
from pimms_contracts.v1.lifecycle import (
    CaseClosed,
    CaseOpened,
    LifecycleEvent,
    ReferralAccepted,
    ReferralCancelled,
    ReferralCompleted,
    ReferralDeliveryFailed,
    ReferralExpired,
    ReferralInProgress,
    ReferralOnHold,
    ReferralReceived,
    ReferralRejected,
    ReferralRequested,
    ReferralTransmitted,
    ReferralUnroutable,
)
from pimms_notifications.domain.contacts import ContactProfile, VisitorReach, visitor_channel
from pimms_notifications.domain.notices import (
    Notice,
    Told,
    notification_id,
    visitor_unreachable_notice,
    who_is_told,
)
from pimms_notifications.domain.templates import (
    TemplateError,
    pick_language,
    render,
    split_subject,
)
from pimms_notifications.domain.wording import document_list, template_variables, visitor_language

CASE = uuid.uuid4()
REFERRAL = uuid.uuid4()
AT = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
COMMON: dict[str, Any] = {
    "case_id": CASE,
    "case_reference": "LYON8-2026-000123",
    "site_id": "lyon-8",
    "occurred_at": AT,
}
REF: dict[str, Any] = {**COMMON, "referral_id": REFERRAL, "partner_id": "edf"}


def profile(**changes: Any) -> ContactProfile:
    base: dict[str, Any] = {
        "case_id": str(CASE),
        "case_reference": "LYON8-2026-000123",
        "site_id": "lyon-8",
        "mediator_id": "m-042",
        "first_name": "Marie",
        "phone": "+33612345678",
        "email": "marie@example.org",
        "consent_sms": True,
        "consent_email": True,
        "language": "fr",
    }
    return ContactProfile(**{**base, **changes})


# --- channel choice ---


def test_sms_when_consented_with_a_phone() -> None:
    assert visitor_channel(profile()) == VisitorReach("sms", "+33612345678")


def test_sms_consent_without_a_phone_falls_back_to_email() -> None:
    assert visitor_channel(profile(phone=None)) == VisitorReach("email", "marie@example.org")


def test_email_only_consent_uses_email_even_with_a_phone() -> None:
    chosen = visitor_channel(profile(consent_sms=False))
    assert chosen == VisitorReach("email", "marie@example.org")


@pytest.mark.parametrize(
    "changes",
    [
        {"consent_sms": False, "consent_email": False},
        {"consent_sms": False, "email": None},
        {"phone": None, "email": None},
        {"consent_sms": True, "phone": None, "consent_email": False},
    ],
)
def test_no_consented_channel_means_none(changes: dict[str, Any]) -> None:
    assert visitor_channel(profile(**changes)) is None


# --- languages and template choice ---


@pytest.mark.parametrize(
    ("tag", "language"),
    [
        ("fr", "fr"),
        ("en", "en"),
        ("ar", "ar"),
        ("en-GB", "en"),
        ("AR", "ar"),
        ("de", "fr"),
        ("tr", "fr"),
        ("", "fr"),
        (None, "fr"),
    ],
)
def test_visitor_language_falls_back_to_french(tag: str | None, language: str) -> None:
    assert visitor_language(tag) == language


def test_a_template_missing_in_a_language_falls_back_to_french() -> None:
    assert pick_language("ar", {"fr", "en", "ar"}) == "ar"
    assert pick_language("de", {"fr", "en", "ar"}) == "fr"
    assert pick_language("en", {"fr"}) == "fr"


# --- who is told what (specs/front-office.md) ---


def told(event: Told) -> list[tuple[str, str]]:
    return [(n.audience, n.template) for n in who_is_told(event)]


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            ReferralUnroutable(**COMMON, category="telecom", departement="69"),
            [("mediator", "referral_unroutable")],
        ),
        (ReferralAccepted(**REF), [("visitor", "referral_accepted")]),
        (
            ReferralOnHold(**REF),
            [("visitor", "referral_on_hold"), ("mediator", "referral_on_hold")],
        ),
        (
            ReferralOnHold(**REF, reason="missing_documents", missing_documents=("tax_notices",)),
            [
                ("visitor", "referral_on_hold_documents"),
                ("mediator", "referral_on_hold_documents"),
            ],
        ),
        (
            ReferralCompleted(**REF, outcome="resolved"),
            [("visitor", "referral_completed"), ("mediator", "referral_completed")],
        ),
        (
            ReferralRejected(**REF, reason="out_of_scope"),
            [("visitor", "referral_rejected"), ("mediator", "referral_rejected")],
        ),
        (
            ReferralExpired(**REF),
            [("visitor", "referral_expired"), ("mediator", "referral_expired")],
        ),
        (
            ReferralDeliveryFailed(**REF, reason="http_404"),
            [("mediator", "referral_delivery_failed")],
        ),
        (
            CaseClosed(**COMMON, outcome="resolved"),
            [("visitor", "case_closed"), ("mediator", "case_closed")],
        ),
        (
            PartnerReportRefused(**REF, reported_status="accepted", current_status="completed"),
            [("mediator", "partner_report_refused")],
        ),
    ],
)
def test_who_is_told_what(event: Told, expected: list[tuple[str, str]]) -> None:
    assert told(event) == expected


@pytest.mark.parametrize(
    "event",
    [
        CaseOpened(**COMMON, category="energy_bill", urgency="high"),
        ReferralRequested(**REF),
        ReferralTransmitted(**REF),
        ReferralReceived(**REF),
        ReferralInProgress(**REF),
        ReferralCancelled(**REF, reason="visitor_request"),
    ],
)
def test_nobody_is_told_of_the_other_steps(event: LifecycleEvent) -> None:
    assert who_is_told(event) == ()


def test_notices_carry_the_referral() -> None:
    [visitor, mediator] = who_is_told(ReferralCompleted(**REF, outcome="resolved"))
    assert visitor.referral_id == mediator.referral_id == REFERRAL
    [closed, _] = who_is_told(CaseClosed(**COMMON, outcome="resolved"))
    assert closed.referral_id is None


def test_notification_ids_are_stable_per_message_audience_and_template() -> None:
    one = notification_id(message_id="m1", audience="visitor", template="case_opened")
    assert one == notification_id(message_id="m1", audience="visitor", template="case_opened")
    assert one != notification_id(message_id="m2", audience="visitor", template="case_opened")
    assert one != notification_id(message_id="m1", audience="mediator", template="case_opened")
    assert one != notification_id(message_id="m1", audience="visitor", template="case_closed")


# --- words ---


def test_documents_are_named_in_the_visitors_language() -> None:
    codes = ("tax_notices", "language_diploma")
    assert document_list(codes, "fr") == "avis d'imposition, diplôme de langue française"
    assert document_list(codes, "en") == "tax notices, French language diploma"
    assert document_list(codes, "ar") == "الإشعارات الضريبية، شهادة اللغة الفرنسية"
    assert document_list(("rental_lease",), "fr") == "rental lease"  # unknown: readable, not lost


def test_variables_are_words_not_codes() -> None:
    [visitor, mediator] = who_is_told(ReferralCompleted(**REF, outcome="not_resolved"))
    words = template_variables(
        visitor, language="en", case_reference="X-1", first_name="Marie", partner_name="EDF"
    )
    assert words == {
        "case_reference": "X-1",
        "first_name": "Marie",
        "partner": "EDF",
        "outcome": "no solution could be found",
    }
    assert template_variables(mediator, language="fr", case_reference="X-1")["outcome"] == (
        "sans solution"
    )


def test_an_unknown_partner_is_named_generically_never_by_id() -> None:
    [notice] = who_is_told(ReferralAccepted(**{**REF, "partner_id": "gone-partner"}))
    words = template_variables(notice, language="ar", case_reference="X-1", partner_name=None)
    assert words["partner"] == "الشريك"


def test_a_withdrawn_case_tells_the_mediator_why() -> None:
    event = CaseClosed(**COMMON, outcome="withdrawn", reason="resolved_at_desk")
    [visitor, mediator] = who_is_told(event)
    assert template_variables(visitor, language="fr", case_reference="X")["outcome"] == (
        "la demande a été retirée"
    )
    assert template_variables(mediator, language="fr", case_reference="X")["outcome"] == (
        "retiré (résolu au guichet)"
    )


def test_the_mediator_learns_which_message_could_not_go() -> None:
    notice: Notice = visitor_unreachable_notice(failed_template="case_opened", referral_id=None)
    words = template_variables(notice, language="fr", case_reference="X")
    assert words["failed_template"] == "l'ouverture du dossier et sa référence"


# --- rendering ---


def test_render_splits_subject_and_body() -> None:
    rendered = render(
        "Subject: Dossier $case_reference\n\nBonjour $first_name,\n",
        {"case_reference": "X-1", "first_name": "Marie"},
        with_subject=True,
    )
    assert rendered.subject == "Dossier X-1"
    assert rendered.body == "Bonjour Marie,\n"


def test_render_names_a_missing_variable() -> None:
    with pytest.raises(KeyError, match="partner"):
        render("$partner a pris en charge", {}, with_subject=False)


@pytest.mark.parametrize(
    "source", ["Bonjour\n\ncorps", "Subject: x\ncorps sans ligne vide", "Subject:\n\ncorps"]
)
def test_a_malformed_email_template_is_refused(source: str) -> None:
    with pytest.raises(TemplateError):
        split_subject(source)
