"""Every shipped template renders, in fr, en and ar, with every variable filled."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pimms_contracts.v1.internal import PartnerReportRefused
from pimms_contracts.v1.lifecycle import (
    CaseClosed,
    ReferralAccepted,
    ReferralCompleted,
    ReferralDeliveryFailed,
    ReferralExpired,
    ReferralOnHold,
    ReferralRejected,
    ReferralUnroutable,
)
from pimms_notifications.adapters.templates import TemplateLibrary
from pimms_notifications.domain.notices import (
    MEDIATOR_TEMPLATES,
    VISITOR_TEMPLATES,
    Notice,
    Told,
    case_opened_notice,
    visitor_unreachable_notice,
    who_is_told,
)
from pimms_notifications.domain.templates import TemplateError
from pimms_notifications.domain.wording import SUPPORTED_LANGUAGES, template_variables

AT = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
COMMON: dict[str, Any] = {
    "case_id": uuid.uuid4(),
    "case_reference": "LYON8-2026-000123",
    "site_id": "lyon-8",
    "occurred_at": AT,
}
REF: dict[str, Any] = {**COMMON, "referral_id": uuid.uuid4(), "partner_id": "la-poste"}
EVENTS: list[Told] = [
    ReferralUnroutable(**COMMON, category="water_bill", departement="29"),
    ReferralAccepted(**REF),
    ReferralOnHold(**REF),
    ReferralOnHold(**REF, reason="missing_documents", missing_documents=("tax_notices", "id_card")),
    ReferralCompleted(**REF, outcome="visitor_unreachable"),
    ReferralRejected(**REF, reason="incomplete"),
    ReferralExpired(**REF),
    ReferralDeliveryFailed(**REF, reason="http_503"),
    CaseClosed(**COMMON, outcome="withdrawn", reason="visitor_request"),
    PartnerReportRefused(**REF, reported_status="in_progress", current_status="expired"),
]


def all_notices() -> list[Notice]:
    notices = [
        case_opened_notice(),
        visitor_unreachable_notice(failed_template="case_closed", referral_id=None),
    ]
    for event in EVENTS:
        notices += who_is_told(event)
    return notices


@pytest.fixture(scope="module")
def library() -> TemplateLibrary:
    return TemplateLibrary.load()


def test_every_template_is_covered_by_an_event() -> None:
    visitor = {n.template for n in all_notices() if n.audience == "visitor"}
    mediator = {n.template for n in all_notices() if n.audience == "mediator"}
    assert visitor == VISITOR_TEMPLATES
    assert mediator == MEDIATOR_TEMPLATES


@pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
@pytest.mark.parametrize("channel", ["sms", "email"])
def test_visitor_templates_render_in_every_language(
    library: TemplateLibrary, language: str, channel: str
) -> None:
    for notice in (n for n in all_notices() if n.audience == "visitor"):
        variables = template_variables(
            notice,
            language=language,
            case_reference="LYON8-2026-000123",
            first_name="Marie",
            partner_name="La Poste",
        )
        used, text = library.render(
            template=notice.template, channel=channel, language=language, variables=variables
        )
        assert used == language
        whole = (text.subject or "") + text.body
        assert "$" not in whole, (language, notice.template)
        assert "LYON8-2026-000123" in whole
        assert "la-poste" not in whole
        if channel == "sms":
            assert text.subject is None
            assert len(text.body) <= 320, (language, notice.template)
        else:
            assert text.subject
        if "partner" in variables and notice.template != "case_opened":
            assert "La Poste" in whole


def test_mediator_templates_render_in_french(library: TemplateLibrary) -> None:
    for notice in (n for n in all_notices() if n.audience == "mediator"):
        variables = template_variables(
            notice, language="fr", case_reference="LYON8-2026-000123", partner_name="La Poste"
        )
        used, text = library.render(
            template=notice.template, channel="mediator_inbox", language="fr", variables=variables
        )
        assert used == "fr"
        assert text.subject
        assert "$" not in text.subject + text.body, notice.template
        if notice.template != "referral_delivery_failed":  # that one quotes the gateway's detail
            assert "_" not in text.body, notice.template  # codes are shown as words


def test_the_missing_documents_are_named_in_the_visitors_language(
    library: TemplateLibrary,
) -> None:
    [visitor, _] = who_is_told(EVENTS[3])
    bodies = {}
    for language in SUPPORTED_LANGUAGES:
        variables = template_variables(
            visitor, language=language, case_reference="X", first_name="M", partner_name="P"
        )
        bodies[language] = library.render(
            template=visitor.template, channel="sms", language=language, variables=variables
        )[1].body
    assert "avis d'imposition, pièce d'identité" in bodies["fr"]
    assert "tax notices, identity document" in bodies["en"]
    assert "الإشعارات الضريبية، وثيقة الهوية" in bodies["ar"]


def test_an_unsupported_language_gets_french(library: TemplateLibrary) -> None:
    variables = {"case_reference": "X", "first_name": "M"}
    used, text = library.render(
        template="case_opened", channel="sms", language="de", variables=variables
    )
    assert used == "fr"
    assert text.body.startswith("PIMMS : Bonjour M")


def test_a_missing_template_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "fr").mkdir()
    (tmp_path / "fr" / "case_opened.sms.txt").write_text("Bonjour", encoding="utf-8")
    with pytest.raises(TemplateError, match="missing template"):
        TemplateLibrary.load(tmp_path)
