"""Every SMS the platform can send, in every language, stays within its segment budget.

Budget, with long realistic values (a long first name, a 20-character case reference, the
longest operator name, all five naturalisation documents, the longest outcomes):
  - one piece of news: GSM-7 texts (French, English) at most 2 segments (306 septets), UCS-2
    texts (Arabic) at most 4 segments (268 UTF-16 units);
  - two pieces of news said together (one message per moment): GSM-7 at most 3 segments
    (the full document list with another news item in French needs the third), UCS-2 at most 4.
With typical values (short name, usual reference, no document list), every French and English
single-event SMS, and the "completed + case closed" message, fits in 1 SMS (160 septets).
"""

from __future__ import annotations

import uuid
from itertools import combinations

import pytest
from pimms_notifications.adapters.templates import Part, TemplateLibrary
from pimms_notifications.domain.notices import (
    ALL_MEDIATOR_TEMPLATES,
    CASE_CLOSED,
    REFERRAL_ACCEPTED,
    REFERRAL_COMPLETED,
    REFERRAL_EXPIRED,
    REFERRAL_ON_HOLD,
    REFERRAL_ON_HOLD_DOCUMENTS,
    REFERRAL_REJECTED,
    Facts,
    Notice,
    case_opened_notice,
    document_reminder_notice,
    partner_reminded_notice,
    referral_escalated_notice,
    visitor_unreachable_notice,
)
from pimms_notifications.domain.sms import sms_length, sms_text
from pimms_notifications.domain.wording import SUPPORTED_LANGUAGES, template_variables

GSM7_BUDGET = 2
UCS2_BUDGET = 4
GSM7_PAIR_BUDGET = 3
UCS2_PAIR_BUDGET = 4

REFERRAL = uuid.UUID("00000000-0000-5000-8000-0000000000aa")
NATURALISATION = (
    "id_card",
    "birth_certificate",
    "proof_of_address",
    "tax_notices",
    "language_diploma",
)
LONG_NAMES = {"fr": "Marie-Bernadette", "en": "Christopher-James", "ar": "عبد الرحمن"}
LONG_REFERENCE = "VENISSIEUX-2026-0001"
LONG_PARTNER = "Préfecture du Rhône"


def visitor_notices(*, long: bool) -> list[Notice]:
    partner = Facts(partner_id="prefecture-69")
    documents = NATURALISATION if long else ("tax_notices",)
    return [
        case_opened_notice(),
        Notice("visitor", REFERRAL_ACCEPTED, REFERRAL, partner),
        Notice("visitor", REFERRAL_ON_HOLD, REFERRAL, partner),
        Notice(
            "visitor",
            REFERRAL_ON_HOLD_DOCUMENTS,
            REFERRAL,
            Facts(partner_id="prefecture-69", documents=documents),
        ),
        Notice(
            "visitor",
            REFERRAL_COMPLETED,
            REFERRAL,
            Facts(
                partner_id="prefecture-69", outcome="visitor_unreachable" if long else "resolved"
            ),
        ),
        Notice(
            "visitor", REFERRAL_REJECTED, REFERRAL, Facts(partner_id="x", rejection_reason="other")
        ),
        Notice("visitor", REFERRAL_EXPIRED, REFERRAL, partner),
        Notice(
            "visitor",
            CASE_CLOSED,
            None,
            Facts(case_outcome="partially_resolved" if long else "resolved"),
        ),
        document_reminder_notice(
            referral_id=REFERRAL, partner_id="prefecture-69", documents=documents, reminder=2
        ),
    ]


def variables(notice: Notice, language: str, *, long: bool) -> dict[str, str]:
    return template_variables(
        notice,
        language=language,
        case_reference=LONG_REFERENCE if long else "LYON8-2026-000123",
        first_name=LONG_NAMES[language] if long else "Marie",
        partner_name=LONG_PARTNER if long else "La Poste",
    )


@pytest.fixture(scope="module")
def library() -> TemplateLibrary:
    return TemplateLibrary.load()


def within_budget(body: str, *, pair: bool = False) -> tuple[bool, str]:
    length = sms_length(sms_text(body))
    if pair:
        budget = GSM7_PAIR_BUDGET if length.encoding == "gsm7" else UCS2_PAIR_BUDGET
    else:
        budget = GSM7_BUDGET if length.encoding == "gsm7" else UCS2_BUDGET
    return (
        length.segments <= budget,
        f"{length.encoding} {length.units} units {length.segments} SMS",
    )


@pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
def test_every_visitor_sms_with_long_values_stays_within_budget(
    library: TemplateLibrary, language: str
) -> None:
    for notice in visitor_notices(long=True):
        used, text = library.render(
            template=notice.template,
            channel="sms",
            language=language,
            variables=variables(notice, language, long=True),
        )
        assert used == language
        assert "$" not in text.body
        assert LONG_REFERENCE in text.body
        ok, detail = within_budget(text.body)
        assert ok, (language, notice.template, detail)


@pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
def test_every_pair_said_together_stays_within_budget(
    library: TemplateLibrary, language: str
) -> None:
    for pair in combinations(visitor_notices(long=True), 2):
        if all(n.facts.documents for n in pair):
            continue  # one case has one naturalisation referral: one document list at a time
        parts = [Part(n.template, variables(n, language, long=True)) for n in pair]
        _, text = library.render_combined(parts=parts, channel="sms", language=language)
        assert "$" not in text.body
        ok, detail = within_budget(text.body, pair=True)
        assert ok, (language, [n.template for n in pair], detail)


@pytest.mark.parametrize("language", ["fr", "en"])
def test_typical_single_news_fits_one_sms(library: TemplateLibrary, language: str) -> None:
    for notice in visitor_notices(long=False):
        if notice.facts.documents:
            continue  # a document list is worth a second SMS
        _, text = library.render(
            template=notice.template,
            channel="sms",
            language=language,
            variables=variables(notice, language, long=False),
        )
        length = sms_length(sms_text(text.body))
        assert (length.encoding, length.segments) == ("gsm7", 1), (notice.template, length)


@pytest.mark.parametrize("language", ["fr", "en"])
def test_completed_and_closed_together_fit_one_sms(library: TemplateLibrary, language: str) -> None:
    notices = visitor_notices(long=False)
    pair = [notices[4], notices[7]]
    parts = [Part(n.template, variables(n, language, long=False)) for n in pair]
    _, text = library.render_combined(parts=parts, channel="sms", language=language)
    assert sms_length(sms_text(text.body)).segments == 1, text.body


@pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
def test_the_document_reminder_names_the_documents_in_words(
    library: TemplateLibrary, language: str
) -> None:
    notice = visitor_notices(long=True)[-1]
    for channel in ("sms", "email"):
        _, text = library.render(
            template=notice.template,
            channel=channel,
            language=language,
            variables=variables(notice, language, long=True),
        )
        expected = {
            "fr": "pièce d'identité, acte de naissance, justificatif de domicile, avis "
            "d'imposition, diplôme de langue française",
            "en": "identity document, birth certificate, proof of address, tax notices, "
            "French language diploma",
            "ar": "وثيقة الهوية، شهادة الميلاد، إثبات السكن، "
            "الإشعارات الضريبية، شهادة اللغة الفرنسية",
        }[language]
        assert expected in text.body
        assert "_" not in text.body


def test_the_new_mediator_messages_read_in_french(library: TemplateLibrary) -> None:
    notices = [
        partner_reminded_notice(referral_id=REFERRAL, partner_id="la-poste", reminder=1),
        referral_escalated_notice(referral_id=REFERRAL, partner_id="la-poste"),
        visitor_unreachable_notice(failed_template="document_reminder", referral_id=REFERRAL),
    ]
    assert {n.template for n in notices[:2]} <= ALL_MEDIATOR_TEMPLATES
    texts = {}
    for notice in notices:
        values = template_variables(
            notice, language="fr", case_reference="LYON8-2026-000123", partner_name="La Poste"
        )
        _, text = library.render(
            template=notice.template, channel="mediator_inbox", language="fr", variables=values
        )
        assert "$" not in (text.subject or "") + text.body
        texts[notice.template] = text
    assert texts["partner_reminded"].subject == "[LYON8-2026-000123] Relance 1 envoyée à La Poste"
    assert "deux fois le délai convenu" in texts["referral_escalated"].body
    assert "le rappel des pièces manquantes" in texts["visitor_unreachable"].body
