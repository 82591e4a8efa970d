"""The gateway's decisions, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pimms_partner_gateways.domain.model import (
    Delivery,
    DeliveryStatus,
    Dossier,
    answers_for,
    decide_cancellation,
    decide_request,
)

SENT_AT = datetime(2026, 11, 27, 8, 31, tzinfo=UTC)


def delivery(status: DeliveryStatus, *, sent: bool, partner_id: str = "edf") -> Delivery:
    return Delivery(
        referral_id="r-1",
        case_id="c-1",
        partner_id=partner_id,
        status=status,
        correlation_id="corr",
        sent_at=SENT_AT if sent else None,
    )


def test_a_new_referral_is_sent_once_its_dossier_is_here() -> None:
    assert decide_request(None, has_dossier=True) == "send"
    assert decide_request(None, has_dossier=False) == "wait_for_dossier"
    waiting = delivery(DeliveryStatus.REQUESTED, sent=False)
    assert decide_request(waiting, has_dossier=False) == "wait_for_dossier"
    assert decide_request(waiting, has_dossier=True) == "send"


@pytest.mark.parametrize(
    ("status", "sent"),
    [
        (DeliveryStatus.SENT, True),
        (DeliveryStatus.DELIVERED, True),
        (DeliveryStatus.CANCELLED, True),
        (DeliveryStatus.CANCELLED, False),
        (DeliveryStatus.FAILED, False),
    ],
)
def test_a_referral_already_handled_is_never_sent_again(status: DeliveryStatus, sent: bool) -> None:
    assert decide_request(delivery(status, sent=sent), has_dossier=True) == "already_handled"


def test_the_partner_hears_of_a_cancellation_only_if_it_had_the_referral() -> None:
    assert decide_cancellation(delivery(DeliveryStatus.SENT, sent=True)) == "tell_partner"
    assert decide_cancellation(delivery(DeliveryStatus.DELIVERED, sent=True)) == "tell_partner"
    assert decide_cancellation(delivery(DeliveryStatus.REQUESTED, sent=False)) == "withdraw_unsent"
    assert decide_cancellation(delivery(DeliveryStatus.FAILED, sent=False)) == "withdraw_unsent"
    assert decide_cancellation(None) == "withdraw_unsent"
    assert decide_cancellation(delivery(DeliveryStatus.CANCELLED, sent=True)) == (
        "already_cancelled"
    )


def test_a_partner_answers_only_for_referrals_it_was_sent() -> None:
    assert answers_for(delivery(DeliveryStatus.DELIVERED, sent=True), partner_id="edf")
    assert answers_for(delivery(DeliveryStatus.SENT, sent=True), partner_id="edf")
    assert answers_for(delivery(DeliveryStatus.CANCELLED, sent=True), partner_id="edf")
    assert not answers_for(delivery(DeliveryStatus.DELIVERED, sent=True), partner_id="la-poste")
    assert not answers_for(delivery(DeliveryStatus.REQUESTED, sent=False), partner_id="edf")
    assert not answers_for(delivery(DeliveryStatus.FAILED, sent=False), partner_id="edf")
    assert not answers_for(None, partner_id="edf")


def test_the_dossier_keeps_the_request_date_as_given_and_contacts_only_with_consent(
    dossier: Dossier,
) -> None:
    assert dossier.submitted_at.isoformat() == "2026-11-27T09:30:00+01:00"
    assert dossier.phone_for_partner == "+33612345678"
    assert dossier.email_for_partner is None
