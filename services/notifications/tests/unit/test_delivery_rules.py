"""The rules the wiring relies on: channel answers as dispatcher results, quiet-hours settings,
notices kept while their moment lasts, and holds followed through the closed loop."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from pimms_contracts.v1.lifecycle import (
    ReferralDocumentsForwarded,
    ReferralEscalated,
    ReferralOnHold,
    ReferralReminded,
)
from pimms_notifications import channels
from pimms_notifications.adapters.destinations import effect_result
from pimms_notifications.domain.notices import (
    DOCUMENTS_FORWARDED,
    PARTNER_REMINDED,
    REFERRAL_ESCALATED,
    REFERRAL_ON_HOLD_DOCUMENTS,
    facts_from_json,
    facts_to_json,
    who_is_told,
)
from pimms_notifications.domain.reminders import hold_after, hold_started
from pimms_notifications.settings import NotificationsSettings
from pimms_servicekit.effects import Delivered, Failed, RetryLater
from pydantic import ValidationError

AT = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
REF = {
    "case_id": uuid.uuid4(),
    "case_reference": "LYON8-2026-000123",
    "site_id": "lyon-8",
    "occurred_at": AT,
    "referral_id": uuid.uuid4(),
    "partner_id": "prefecture-69",
}


@pytest.mark.parametrize(
    ("answer", "result"),
    [
        (channels.Delivered("1511882900176221"), Delivered(receipt="1511882900176221")),
        (
            channels.TransientFailure("sms_http_429", timedelta(seconds=30)),
            RetryLater(reason="sms_http_429", after=timedelta(seconds=30)),
        ),
        (channels.PermanentFailure("sms_hard_bounce"), Failed(reason="sms_hard_bounce")),
    ],
)
def test_a_channels_answer_is_the_dispatchers_result(
    answer: channels.DeliveryResult, result: object
) -> None:
    assert effect_result(answer) == result


def settings(tmp_path: Path, **values: object) -> NotificationsSettings:
    return NotificationsSettings(data_dir=tmp_path, **values)  # type: ignore[arg-type]


def test_quiet_hours_apply_to_the_provider_not_to_files_unless_asked(tmp_path: Path) -> None:
    assert settings(tmp_path).sms_quiet_hours is None
    provider = {
        "sms_api_url": "https://api.brevo.com",
        "sms_api_key": "key",
        "sms_sender": "PIMMS",
        "public_url": "https://notifications.pimms.example",
        "sms_report_token": "0123456789abcdef",
    }
    assert settings(tmp_path, **provider).sms_quiet_hours == (time(21), time(8))
    assert settings(tmp_path, **provider, quiet_hours="off").sms_quiet_hours is None
    assert settings(tmp_path, quiet_hours="22:00-07:30").sms_quiet_hours == (
        time(22),
        time(7, 30),
    )


@pytest.mark.parametrize("value", ["21h-8h", "25:00-08:00", "08:00-08:00", "night"])
def test_a_wrong_quiet_hours_value_is_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ValidationError, match="HH:MM-HH:MM"):
        settings(tmp_path, quiet_hours=value)


def test_a_notices_facts_survive_their_wait() -> None:
    event = ReferralOnHold(
        **REF, reason="missing_documents", missing_documents=("tax_notices", "id_card")
    )
    for notice in who_is_told(event):
        assert facts_from_json(facts_to_json(notice.facts)) == notice.facts


def test_the_closed_loop_signals_are_told_to_the_mediator() -> None:
    due = AT + timedelta(days=2)
    reminded = ReferralReminded(**REF, status="transmitted", reminder=2, due_at=due)
    escalated = ReferralEscalated(**REF, status="transmitted", due_at=due)
    assert [(n.audience, n.template, n.facts.reminder) for n in who_is_told(reminded)] == [
        ("mediator", PARTNER_REMINDED, 2)
    ]
    assert [(n.audience, n.template) for n in who_is_told(escalated)] == [
        ("mediator", REFERRAL_ESCALATED)
    ]


def test_forwarded_documents_tell_both_what_is_left_or_the_mediator_it_is_done() -> None:
    partial = ReferralDocumentsForwarded(
        **REF, documents=("tax_notices",), missing_documents=("id_card",)
    )
    done = ReferralDocumentsForwarded(**REF, documents=("id_card",))
    assert [(n.audience, n.template, n.facts.documents) for n in who_is_told(partial)] == [
        ("visitor", REFERRAL_ON_HOLD_DOCUMENTS, ("id_card",)),
        ("mediator", REFERRAL_ON_HOLD_DOCUMENTS, ("id_card",)),
    ]
    assert [(n.audience, n.template) for n in who_is_told(done)] == [
        ("mediator", DOCUMENTS_FORWARDED)
    ]


def test_a_hold_survives_partner_reminders_and_restarts_on_what_is_still_missing() -> None:
    hold = hold_started(
        ReferralOnHold(**REF, reason="missing_documents", missing_documents=("tax_notices",))
    )
    assert hold is not None
    reminded = ReferralReminded(**REF, status="on_hold", reminder=1, due_at=AT)
    assert hold_after(hold, reminded) == hold
    later = AT + timedelta(days=1)
    forwarded = ReferralDocumentsForwarded(
        **{**REF, "occurred_at": later},
        documents=("tax_notices",),
        missing_documents=("id_card",),
    )
    after = hold_after(hold, forwarded)
    assert (after.documents, after.since, after.reminders_sent, after.ended) == (
        ("id_card",),
        later,
        0,
        False,
    )
    done = ReferralDocumentsForwarded(**REF, documents=("id_card",))
    assert hold_after(after, done).ended
