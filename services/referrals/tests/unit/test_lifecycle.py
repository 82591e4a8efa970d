"""The referral state machine, table-driven: every move a partner or the platform can ask for."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pimms_referrals.domain.lifecycle import (
    TRANSITIONS,
    Applied,
    Impossible,
    IncompleteReport,
    Referral,
    Stage,
    StatusChange,
    Unchanged,
    allowed,
    apply_partner_status,
    apply_status,
    new_referral,
    reported_change,
    status_of,
)

T0 = datetime(2026, 11, 27, 8, 30, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)

ALL: list[Stage] = [
    "requested",
    "transmitted",
    "received",
    "accepted",
    "in_progress",
    "on_hold",
    "completed",
    "rejected",
    "expired",
    "cancelled",
    "delivery_failed",
]
FINAL: list[Stage] = ["completed", "rejected", "expired", "cancelled", "delivery_failed"]
PARTNER_REPORTED = ["received", "accepted", "in_progress", "on_hold", "completed", "rejected"]

# What a partner's report may do from each stage, by the rules of specs/partners.md, written out
# (not read from TRANSITIONS) so that this test is the specification the table is checked against.
PARTNER_FORWARD: dict[Stage, set[Stage]] = {
    "requested": {"received", "accepted", "in_progress", "on_hold", "completed", "rejected"},
    "transmitted": {"received", "accepted", "in_progress", "on_hold", "completed", "rejected"},
    "received": {"accepted", "in_progress", "on_hold", "completed", "rejected"},
    "accepted": {"in_progress", "on_hold", "completed", "rejected"},
    "in_progress": {"on_hold", "completed", "rejected"},
    "on_hold": {"in_progress", "completed", "rejected"},
}
AT_PARTNER: list[Stage] = ["transmitted", "received", "accepted", "in_progress", "on_hold"]
STAGES: list[Stage] = ["new", "held", *ALL]


def test_the_table_covers_every_stage_and_only_them() -> None:
    assert set(TRANSITIONS) == set(STAGES)
    for moves in TRANSITIONS.values():
        for targets in moves.values():
            assert targets <= set(STAGES) - {"new"}


@pytest.mark.parametrize("stage", FINAL)
def test_nothing_leaves_a_final_status(stage: Stage) -> None:
    assert TRANSITIONS[stage] == {}


def test_partners_move_forward_only_and_skip_steps() -> None:
    for stage in STAGES:
        assert allowed(stage, "partner") == PARTNER_FORWARD.get(stage, set()), stage


def test_only_routing_creates_a_referral_requested_or_held() -> None:
    assert TRANSITIONS["new"] == {"routing": {"requested", "held"}}
    assert all("new" not in moves for s in STAGES for moves in TRANSITIONS[s].values())


def test_a_held_file_waits_for_documents_or_a_withdrawal_only() -> None:
    assert TRANSITIONS["held"] == {"mediator": {"requested", "held"}, "withdrawal": {"cancelled"}}


def test_the_gateway_delivers_or_fails_only_what_it_has_not_delivered() -> None:
    assert {s for s in STAGES if allowed(s, "gateway")} == {"requested"}
    assert allowed("requested", "gateway") == {"transmitted", "delivery_failed"}


def test_timers_only_expire_referrals_at_the_partner() -> None:
    expirable = {s for s in STAGES if allowed(s, "platform_timer")}
    assert expirable == set(AT_PARTNER)
    assert all(allowed(s, "platform_timer") == {"expired"} for s in expirable)


def test_a_withdrawal_cancels_every_unfinished_referral() -> None:
    unfinished = set(STAGES) - set(FINAL) - {"new"}
    assert {s for s in STAGES if allowed(s, "withdrawal")} == unfinished
    assert all(allowed(s, "withdrawal") == {"cancelled"} for s in unfinished)


def test_documents_move_only_held_files_and_partner_holds() -> None:
    assert {s for s in STAGES if allowed(s, "mediator")} == {"held", "on_hold"}
    assert allowed("on_hold", "mediator") == {"on_hold"}


def test_held_is_on_hold_for_the_public() -> None:
    assert status_of("held") == "on_hold"
    assert status_of("in_progress") == "in_progress"


def referral(status: str = "requested", **changes: Any) -> Referral:
    base = new_referral(
        referral_id="r-1",
        case_id="c-1",
        partner_id="edf",
        position=0,
        ack_within=timedelta(hours=48),
        resolve_within=timedelta(days=15),
        at=T0,
    )
    if status != "requested":  # it reached the partner (a held file is built by open_referral)
        changes = {"transmitted_at": T0, **changes}
    return dataclasses.replace(base, status=status, **changes)


def change_for(status: str) -> StatusChange:
    return reported_change(
        status=status,
        outcome="resolved" if status == "completed" else None,
        reason="out_of_scope" if status == "rejected" else None,
    )


# Every impossible partner report: from each non-final status back, and out of each final one.
IMPOSSIBLE_REPORTS = [
    ("accepted", "received"),
    ("in_progress", "received"),
    ("in_progress", "accepted"),
    ("on_hold", "received"),
    ("on_hold", "accepted"),
    *[(final, reported) for final in FINAL for reported in PARTNER_REPORTED if reported != final],
]


@pytest.mark.parametrize(("current", "reported"), IMPOSSIBLE_REPORTS)
def test_impossible_reports_change_nothing_and_explain_why(current: str, reported: str) -> None:
    before = referral(current, outcome="resolved" if current == "completed" else None)
    result = apply_partner_status(before, change_for(reported), at=T1)
    assert isinstance(result, Impossible)
    assert result.referral == before
    assert result.explanation == f"edf reported {reported} but referral r-1 is {current}"


def test_the_impossible_list_is_complete() -> None:
    computed = {
        (c, r) for c in ALL for r in PARTNER_REPORTED if r != c and r not in allowed(c, "partner")
    }
    assert computed == set(IMPOSSIBLE_REPORTS)


@pytest.mark.parametrize(
    ("current", "reported"),
    [
        ("transmitted", "completed"),  # a skip over every step is normal
        ("requested", "received"),  # the partner answered before the delivery was confirmed
        ("transmitted", "on_hold"),
        ("received", "rejected"),
        ("accepted", "in_progress"),
        ("in_progress", "on_hold"),
        ("on_hold", "in_progress"),
        ("on_hold", "completed"),
    ],
)
def test_forward_reports_apply(current: str, reported: str) -> None:
    result = apply_partner_status(referral(current), change_for(reported), at=T1)
    assert isinstance(result, Applied)
    assert result.referral.status == reported
    assert result.referral.updated_at == T1
    assert result.referral.acknowledged_at == T1


@pytest.mark.parametrize("status", [*PARTNER_REPORTED])
def test_the_same_status_again_is_a_no_op(status: str) -> None:
    before = referral(status)
    assert apply_partner_status(before, change_for(status), at=T1) == Unchanged(before)


def test_a_repeated_final_status_with_another_code_is_still_a_no_op() -> None:
    before = referral("completed", outcome="resolved")
    again = reported_change(status="completed", outcome="not_resolved")
    assert isinstance(apply_partner_status(before, again, at=T1), Unchanged)


def test_outcome_reason_and_missing_documents_go_with_the_status() -> None:
    held = apply_partner_status(
        referral("in_progress"),
        reported_change(status="on_hold", missing_documents=("tax_notices",)),
        at=T1,
    )
    assert isinstance(held, Applied)
    assert held.change.reason == "missing_documents"
    assert held.referral.missing_documents == ("tax_notices",)
    done = apply_partner_status(held.referral, change_for("completed"), at=T1)
    assert isinstance(done, Applied)
    assert (done.referral.outcome, done.referral.reason) == ("resolved", None)
    assert done.referral.missing_documents == ()
    waiting = reported_change(status="on_hold")
    assert (waiting.reason, waiting.missing_documents) == ("waiting_for_visitor", ())


def test_reports_that_lack_their_code_are_incomplete() -> None:
    with pytest.raises(IncompleteReport, match="outcome"):
        reported_change(status="completed")
    with pytest.raises(IncompleteReport, match="reason"):
        reported_change(status="rejected")


def test_transmission_starts_the_sla_deadlines_once() -> None:
    transmitted = apply_status(referral(), StatusChange(status="transmitted"), at=T1)
    assert isinstance(transmitted, Applied)
    r = transmitted.referral
    assert r.transmitted_at == T1
    assert r.ack_due_at == T1 + timedelta(hours=48)
    assert r.resolve_due_at == T1 + timedelta(days=15)
    assert r.acknowledged_at is None  # the platform's own step is no acknowledgement
    later = T1 + timedelta(hours=5)
    received = apply_partner_status(r, change_for("received"), at=later)
    assert isinstance(received, Applied)
    assert received.referral.transmitted_at == T1
    assert received.referral.acknowledged_at == later


def test_a_partner_answer_before_the_delivery_note_starts_the_deadlines() -> None:
    result = apply_partner_status(referral(), change_for("received"), at=T1)
    assert isinstance(result, Applied)
    assert result.referral.transmitted_at == T1
    assert result.referral.ack_due_at == T1 + timedelta(hours=48)


@pytest.mark.parametrize("status", ["cancelled", "delivery_failed"])
def test_a_referral_that_never_reached_the_partner_has_no_deadlines(status: str) -> None:
    result = apply_status(referral(), StatusChange(status=status, reason="x"), at=T1)
    assert isinstance(result, Applied)
    assert result.referral.final
    assert result.referral.transmitted_at is None
    assert result.referral.ack_due_at is None


def test_platform_steps_behind_the_partner_are_not_applied() -> None:
    assert isinstance(
        apply_status(referral("received"), StatusChange(status="transmitted"), at=T1), Impossible
    )
    assert isinstance(
        apply_status(referral("transmitted"), StatusChange(status="transmitted"), at=T1),
        Unchanged,
    )
