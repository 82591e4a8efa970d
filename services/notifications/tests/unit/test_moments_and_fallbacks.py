"""One message per moment, fallbacks when a channel fails, and visitor reminders."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pimms_contracts.v1.internal import IntakeDocumentsAdded
from pimms_contracts.v1.lifecycle import (
    CaseClosed,
    ReferralAccepted,
    ReferralCompleted,
    ReferralInProgress,
    ReferralOnHold,
)
from pimms_notifications.adapters.templates import Part, TemplateLibrary
from pimms_notifications.domain.contacts import ContactProfile, VisitorReach
from pimms_notifications.domain.fallbacks import TellMediator, next_visitor_reach
from pimms_notifications.domain.moments import PendingNotice, group_moments, moment_window, ready
from pimms_notifications.domain.notices import (
    COMBINED,
    DOCUMENT_REMINDER,
    Notice,
    Told,
    notification_id,
    who_is_told,
)
from pimms_notifications.domain.reminders import (
    hold_after,
    hold_started,
    next_reminder_at,
    reminded,
    reminder_due,
    reminder_notification_id,
)
from pimms_notifications.domain.sms import sms_length, sms_text
from pimms_notifications.domain.wording import template_variables

AT = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
CASE_ID = uuid.uuid4()
REFERRAL_ID = uuid.uuid4()
COMMON: dict[str, Any] = {
    "case_id": CASE_ID,
    "case_reference": "LYON8-2026-000123",
    "site_id": "lyon-8",
}
REF: dict[str, Any] = {**COMMON, "referral_id": REFERRAL_ID, "partner_id": "la-poste"}


def pending(event: Told, *, message_id: str, at: datetime) -> list[PendingNotice]:
    return [
        PendingNotice(
            notification_id=notification_id(
                message_id=message_id, audience=notice.audience, template=notice.template
            ),
            notice=notice,
            at=at,
        )
        for notice in who_is_told(event)
    ]


def completed_then_closed(gap: timedelta) -> list[PendingNotice]:
    completed = ReferralCompleted(**REF, occurred_at=AT, outcome="resolved")
    closed = CaseClosed(**COMMON, occurred_at=AT, outcome="resolved")
    return pending(completed, message_id="m1", at=AT) + pending(
        closed, message_id="m2", at=AT + gap
    )


def test_the_last_referral_completing_and_the_case_closing_are_one_message_each() -> None:
    moments = group_moments(completed_then_closed(timedelta(milliseconds=40)))
    assert [m.audience for m in moments] == ["visitor", "mediator"]
    visitor = moments[0]
    assert visitor.template == COMBINED
    assert [n.template for n in visitor.notices] == ["referral_completed", "case_closed"]
    assert visitor.send_at == AT + timedelta(seconds=2)
    assert len(visitor.merged_ids) == 1


def test_news_further_apart_than_the_window_are_separate_messages() -> None:
    moments = group_moments(completed_then_closed(timedelta(seconds=3)))
    assert [(m.audience, m.template) for m in moments] == [
        ("visitor", "referral_completed"),
        ("mediator", "referral_completed"),
        ("visitor", "case_closed"),
        ("mediator", "case_closed"),
    ]


def test_the_window_is_a_setting() -> None:
    moments = group_moments(
        completed_then_closed(timedelta(seconds=3)), window=timedelta(seconds=5)
    )
    assert [m.template for m in moments] == [COMBINED, COMBINED]


def test_a_redelivered_event_does_not_add_to_the_moment_and_keeps_its_id() -> None:
    once = group_moments(completed_then_closed(timedelta(milliseconds=40)))
    twice = group_moments(completed_then_closed(timedelta(milliseconds=40)) * 2)
    assert [(m.notification_id, m.notices) for m in twice] == [
        (m.notification_id, m.notices) for m in once
    ]


def test_a_moment_goes_only_when_its_window_is_over() -> None:
    moments = group_moments(completed_then_closed(timedelta(milliseconds=40)))
    assert ready(moments, now=AT + timedelta(seconds=1)) == ()
    assert ready(moments, now=AT + timedelta(seconds=2)) == moments


def test_on_a_fast_clock_the_window_lasts_two_real_seconds_at_least() -> None:
    two = timedelta(seconds=2)
    assert moment_window(two, time_scale=1.0) == two
    assert moment_window(timedelta(0), time_scale=1.0) == timedelta(0)  # tests shorten it
    assert moment_window(two, time_scale=43_200) == timedelta(days=1)  # 2 real seconds
    assert moment_window(two, time_scale=0.5) == two  # slower than real time: the setting
    assert moment_window(timedelta(days=2), time_scale=43_200) == timedelta(days=2)
    assert moment_window(two, time_scale=43_200, real_minimum=timedelta(0)) == two


def test_two_referrals_accepted_together_are_one_message() -> None:
    other = {**REF, "referral_id": uuid.uuid4(), "partner_id": "edf"}
    items = pending(ReferralAccepted(**REF, occurred_at=AT), message_id="a", at=AT) + pending(
        ReferralAccepted(**other, occurred_at=AT), message_id="b", at=AT + timedelta(seconds=1)
    )
    [moment] = group_moments(items)
    assert moment.template == COMBINED
    assert len(moment.parts) == 2


@pytest.fixture(scope="module")
def library() -> TemplateLibrary:
    return TemplateLibrary.load()


def parts_for(notices: tuple[Notice, ...], language: str) -> list[Part]:
    return [
        Part(
            template=notice.template,
            variables=template_variables(
                notice,
                language=language,
                case_reference="LYON8-2026-000123",
                first_name="Marie" if notice.audience == "visitor" else None,
                partner_name="La Poste",
            ),
        )
        for notice in notices
    ]


def test_the_combined_sms_says_the_outcome_and_the_closure_in_one_sms(
    library: TemplateLibrary,
) -> None:
    [visitor, _] = group_moments(completed_then_closed(timedelta(milliseconds=40)))
    language, text = library.render_combined(
        parts=parts_for(visitor.notices, "fr"), channel="sms", language="fr"
    )
    assert language == "fr"
    assert text.body == (
        "PIMMS : Bonjour Marie, dossier LYON8-2026-000123 : La Poste a traité votre demande : "
        "une solution a été trouvée. Dossier clos : votre demande a été résolue.\n"
    )
    assert sms_length(sms_text(text.body)).segments == 1


def test_the_combined_email_and_inbox_say_every_part(library: TemplateLibrary) -> None:
    [visitor, mediator] = group_moments(completed_then_closed(timedelta(milliseconds=40)))
    _, email = library.render_combined(
        parts=parts_for(visitor.notices, "en"), channel="email", language="en"
    )
    assert email.subject == "Case LYON8-2026-000123: news about your request"
    assert "- La Poste has dealt with your request: a solution was found.\n" in email.body
    assert "- Case closed: your request was resolved.\n" in email.body
    _, inbox = library.render_combined(
        parts=parts_for(mediator.notices, "fr"), channel="mediator_inbox", language="fr"
    )
    assert inbox.subject == "[LYON8-2026-000123] Demande traitée par La Poste ; Dossier clos"
    assert "* Demande traitée par La Poste\n" in inbox.body
    assert "Résultat : solution trouvée." in inbox.body
    assert "Issue : résolu." in inbox.body


def profile(**changes: Any) -> ContactProfile:
    base: dict[str, Any] = {
        "case_id": str(CASE_ID),
        "case_reference": "LYON8-2026-000123",
        "site_id": "lyon-8",
        "mediator_id": "med-1",
        "first_name": "Marie",
        "phone": "+33612345678",
        "email": "marie@example.org",
        "consent_sms": True,
        "consent_email": True,
        "language": "fr",
    }
    return ContactProfile(**{**base, **changes})


def test_a_failed_sms_falls_back_to_email_where_the_visitor_consented() -> None:
    reach = next_visitor_reach(profile(), failed={"sms"}, reason="sms_hard_bounce")
    assert reach == VisitorReach(channel="email", address="marie@example.org")


def test_without_email_consent_a_failed_sms_tells_the_mediator() -> None:
    reach = next_visitor_reach(profile(consent_email=False), failed={"sms"}, reason="sms_http_400")
    assert reach == TellMediator(reason="sms_http_400", tell=True)


def test_a_failed_email_after_a_failed_sms_tells_the_mediator_once() -> None:
    first = next_visitor_reach(profile(), failed={"sms", "email"}, reason="email_bounced")
    assert first == TellMediator(reason="email_bounced", tell=True)
    again = next_visitor_reach(
        profile(unreachable_told=True), failed={"sms", "email"}, reason="email_bounced"
    )
    assert again == TellMediator(reason="email_bounced", tell=False)


def test_an_email_only_visitor_whose_email_fails_is_not_sent_an_sms() -> None:
    reach = next_visitor_reach(profile(consent_sms=False), failed={"email"}, reason="email_bounced")
    assert isinstance(reach, TellMediator)


HELD = ReferralOnHold(
    **REF,
    occurred_at=AT,
    reason="missing_documents",
    missing_documents=("tax_notices", "language_diploma"),
)
DAY = timedelta(days=1)


def test_a_hold_for_documents_reminds_the_visitor_twice_then_stops() -> None:
    hold = hold_started(HELD)
    assert hold is not None
    assert reminder_due(hold, now=AT + 3 * DAY - timedelta(seconds=1), delay=3 * DAY) is None
    first = reminder_due(hold, now=AT + 3 * DAY, delay=3 * DAY)
    assert first is not None
    assert first.template == DOCUMENT_REMINDER
    assert first.audience == "visitor"
    assert first.facts.documents == ("tax_notices", "language_diploma")
    assert first.facts.reminder == 1
    hold = reminded(hold, at=AT + 3 * DAY)
    assert next_reminder_at(hold, delay=3 * DAY) == AT + 6 * DAY
    second = reminder_due(hold, now=AT + 6 * DAY, delay=3 * DAY)
    assert second is not None
    assert second.facts.reminder == 2
    hold = reminded(hold, at=AT + 6 * DAY)
    assert next_reminder_at(hold, delay=3 * DAY) is None
    assert reminder_due(hold, now=AT + 30 * DAY, delay=3 * DAY) is None


def test_reminder_ids_are_stable_and_distinct() -> None:
    hold = hold_started(HELD)
    assert hold is not None
    assert reminder_notification_id(hold, reminder=1) == reminder_notification_id(hold, reminder=1)
    assert reminder_notification_id(hold, reminder=1) != reminder_notification_id(hold, reminder=2)


@pytest.mark.parametrize(
    "event",
    [
        IntakeDocumentsAdded(
            case_id=CASE_ID,
            case_reference="LYON8-2026-000123",
            added=("tax_notices",),
            documents=("tax_notices",),
            added_at=AT + DAY,
        ),
        ReferralInProgress(**REF, occurred_at=AT + DAY),
        CaseClosed(**COMMON, occurred_at=AT + DAY, outcome="withdrawn", reason="visitor_request"),
    ],
    ids=["visitor brought documents", "referral moved on", "case closed"],
)
def test_reminders_stop_when_the_visitor_acts_or_the_case_closes(event: Any) -> None:
    hold = hold_started(HELD)
    assert hold is not None
    ended = hold_after(hold, event)
    assert reminder_due(ended, now=AT + 10 * DAY, delay=3 * DAY) is None


def test_another_referral_or_case_does_not_stop_the_reminders() -> None:
    hold = hold_started(HELD)
    assert hold is not None
    other_referral = ReferralInProgress(**{**REF, "referral_id": uuid.uuid4()}, occurred_at=AT)
    other_case = CaseClosed(
        **{**COMMON, "case_id": uuid.uuid4()}, occurred_at=AT, outcome="resolved"
    )
    assert hold_after(hold_after(hold, other_referral), other_case) == hold


def test_a_hold_without_named_documents_is_not_reminded() -> None:
    assert hold_started(ReferralOnHold(**REF, occurred_at=AT)) is None
