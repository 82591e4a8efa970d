"""When a case closes, and with which summary outcome."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from pimms_referrals.domain.closure import closing_outcome
from pimms_referrals.domain.lifecycle import Referral, new_referral

T0 = datetime(2026, 11, 27, 8, 30, tzinfo=UTC)


def referral(status: str, outcome: str | None = None) -> Referral:
    base = new_referral(
        referral_id="r",
        case_id="c",
        partner_id="edf",
        position=0,
        ack_within=timedelta(hours=1),
        resolve_within=timedelta(days=1),
        at=T0,
    )
    return dataclasses.replace(base, status=status, outcome=outcome)


RESOLVED = referral("completed", "resolved")
NOT_RESOLVED = referral("completed", "not_resolved")
UNREACHABLE = referral("completed", "visitor_unreachable")


@pytest.mark.parametrize(
    ("referrals", "outcome"),
    [
        ([RESOLVED], "resolved"),
        ([RESOLVED, RESOLVED], "resolved"),
        ([RESOLVED, NOT_RESOLVED], "partially_resolved"),
        ([RESOLVED, referral("rejected")], "partially_resolved"),
        ([referral("delivery_failed"), RESOLVED], "partially_resolved"),
        ([NOT_RESOLVED], "not_resolved"),
        ([UNREACHABLE], "not_resolved"),
        ([referral("rejected")], "not_resolved"),
        ([referral("expired")], "not_resolved"),
        ([referral("delivery_failed"), referral("rejected")], "not_resolved"),
    ],
)
def test_every_referral_final_closes_with_a_summary(
    referrals: list[Referral], outcome: str
) -> None:
    assert closing_outcome(referrals) == outcome


@pytest.mark.parametrize(
    "status", ["requested", "transmitted", "received", "accepted", "in_progress", "on_hold"]
)
def test_a_case_with_an_unfinished_referral_stays_open(status: str) -> None:
    assert closing_outcome([RESOLVED, referral(status)]) is None


def test_an_unroutable_case_never_closes_by_itself() -> None:
    assert closing_outcome([]) is None
