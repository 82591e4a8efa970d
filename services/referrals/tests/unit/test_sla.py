"""The SLA ladder on an injected clock: reminder, escalation, expiry; silence once answered."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pimms_referrals.domain.lifecycle import (
    Applied,
    Referral,
    open_referral,
    record_transmission,
    report_from_partner,
    reported_change,
    withdraw,
)
from pimms_referrals.domain.sla import (
    Escalate,
    Expire,
    Nothing,
    Remind,
    Timer,
    TimerKind,
    due_timers,
    fire_timer,
)
from pimms_servicekit.clock import ManualClock

T0 = datetime(2026, 11, 27, 8, 30, tzinfo=UTC)
EDF_ACK, EDF_RESOLVE = timedelta(hours=48), timedelta(days=15)


@dataclass
class Stored:
    """What a scheduler keeps between runs: rows only (plain values, as a database would)."""

    referral_row: dict[str, Any]
    timer_rows: set[tuple[TimerKind, str, datetime]]
    said: list[str] = field(default_factory=list)


def save(referral: Referral, stored: Stored | None = None) -> Stored:
    rows = {(t.kind, t.referral_id, t.due_at) for t in due_timers(referral)}
    if stored is None:
        return Stored(dataclasses.asdict(referral), rows)
    stored.referral_row, stored.timer_rows = dataclasses.asdict(referral), rows
    return stored


def load(stored: Stored) -> Referral:
    row = stored.referral_row
    return Referral(**{**row, "missing_documents": tuple(row["missing_documents"])})


def run_scheduler(stored: Stored, clock: ManualClock) -> None:
    """One pass of a scheduler started afresh: fire every row due now, soonest first."""
    due = sorted((r for r in stored.timer_rows if r[2] <= clock.now()), key=lambda r: r[2])
    for kind, referral_id, due_at in due:
        fired = fire_timer(load(stored), Timer(kind, referral_id, due_at), at=clock.now())
        if isinstance(fired, Remind):
            stored.said.append(f"partner: relance {fired.number}")
            stored.said.append("mediator: reminder sent")
        elif isinstance(fired, Escalate):
            stored.said.append("mediator: escalation")
        elif isinstance(fired, Expire):
            stored.said.append(f"visitor and mediator: {fired.referral.status}")
        save(fired.referral, stored)


def transmitted(clock: ManualClock) -> Referral:
    opened = open_referral(
        referral_id="r-1",
        case_id="c-1",
        partner_id="edf",
        position=0,
        ack_within=EDF_ACK,
        resolve_within=EDF_RESOLVE,
        documents=(),
        at=clock.now(),
    )
    sent = record_transmission(opened.referral, at=clock.now())
    assert isinstance(sent, Applied)
    return sent.referral


def test_the_ladder_is_three_durable_rows_from_transmission() -> None:
    referral = transmitted(ManualClock(T0))
    assert due_timers(referral) == (
        Timer("reminder", "r-1", T0 + EDF_ACK),
        Timer("escalation", "r-1", T0 + 2 * EDF_ACK),
        Timer("expiry", "r-1", T0 + EDF_RESOLVE),
    )
    assert [t.key for t in due_timers(referral)] == [
        "reminder:r-1",
        "escalation:r-1",
        "expiry:r-1",
    ]


def test_a_silent_partner_is_reminded_escalated_then_expired_across_restarts() -> None:
    clock = ManualClock(T0)
    stored = save(transmitted(clock))
    clock.advance(EDF_ACK - timedelta(seconds=1))
    run_scheduler(stored, clock)
    assert stored.said == []
    clock.advance(timedelta(seconds=1))
    run_scheduler(stored, clock)
    run_scheduler(stored, clock)  # a restart right after: nothing fires twice
    assert stored.said == ["partner: relance 1", "mediator: reminder sent"]
    clock.advance(EDF_ACK)
    run_scheduler(stored, clock)
    run_scheduler(stored, clock)
    assert stored.said[2:] == ["mediator: escalation"]
    clock.advance(EDF_RESOLVE - 2 * EDF_ACK - timedelta(minutes=1))
    run_scheduler(stored, clock)
    assert len(stored.said) == 3
    clock.advance(timedelta(minutes=1))
    run_scheduler(stored, clock)
    run_scheduler(stored, clock)
    assert stored.said[3:] == ["visitor and mediator: expired"]
    expired = load(stored)
    assert (expired.status, expired.reason, expired.updated_at) == (
        "expired",
        "no_final_answer",
        T0 + EDF_RESOLVE,
    )
    assert stored.timer_rows == set()


def test_a_scheduler_down_for_days_catches_up_in_order_without_repeats() -> None:
    clock = ManualClock(T0)
    stored = save(transmitted(clock))
    clock.advance(EDF_RESOLVE + timedelta(days=1))
    run_scheduler(stored, clock)
    assert stored.said == [
        "partner: relance 1",
        "mediator: reminder sent",
        "mediator: escalation",
        "visitor and mediator: expired",
    ]


def test_a_partner_that_answers_after_the_first_reminder_gets_nothing_more() -> None:
    clock = ManualClock(T0)
    stored = save(transmitted(clock))
    clock.advance(EDF_ACK)
    run_scheduler(stored, clock)
    clock.advance(timedelta(hours=3))
    answered = report_from_partner(load(stored), reported_change(status="received"), at=clock.now())
    assert isinstance(answered, Applied)
    save(answered.referral, stored)
    assert [kind for kind, _, _ in stored.timer_rows] == ["expiry"]
    clock.advance(EDF_ACK * 2)
    run_scheduler(stored, clock)
    assert stored.said == ["partner: relance 1", "mediator: reminder sent"]


def test_a_partner_that_answers_in_time_is_never_chased_but_still_expires() -> None:
    clock = ManualClock(T0)
    referral = transmitted(clock)
    reminder, escalation, expiry = due_timers(referral)
    clock.advance(timedelta(hours=1))
    answered = report_from_partner(referral, reported_change(status="accepted"), at=clock.now())
    assert isinstance(answered, Applied)
    acted = answered.referral
    clock.advance(EDF_RESOLVE)
    # rows fired anyway (an old scheduler, a race): the referral as it is now decides
    assert fire_timer(acted, reminder, at=clock.now()) == Nothing(acted, "partner_acted")
    assert fire_timer(acted, escalation, at=clock.now()) == Nothing(acted, "partner_acted")
    assert isinstance(fire_timer(acted, expiry, at=clock.now()), Expire)


def test_a_timer_fired_early_does_nothing() -> None:
    clock = ManualClock(T0)
    referral = transmitted(clock)
    reminder = due_timers(referral)[0]
    assert fire_timer(referral, reminder, at=T0 + timedelta(hours=1)) == Nothing(
        referral, "not_due"
    )


@pytest.mark.parametrize("final", ["completed", "cancelled"])
def test_a_final_referral_has_no_timer_and_ignores_old_ones(final: str) -> None:
    clock = ManualClock(T0)
    referral = transmitted(clock)
    expiry = due_timers(referral)[-1]
    if final == "completed":
        done = report_from_partner(
            referral, reported_change(status="completed", outcome="resolved"), at=T0
        )
    else:
        done = withdraw(referral, reason="visitor_request", at=T0)
    assert isinstance(done, Applied)
    assert due_timers(done.referral) == ()
    assert fire_timer(done.referral, expiry, at=T0 + EDF_RESOLVE) == Nothing(done.referral, "final")


def test_expiry_is_a_transition_by_the_platform_timer() -> None:
    referral = transmitted(ManualClock(T0))
    expiry = due_timers(referral)[-1]
    fired = fire_timer(referral, expiry, at=T0 + EDF_RESOLVE)
    assert isinstance(fired, Expire)
    t = fired.applied.transition
    assert (t.from_stage, t.to_stage, t.actor, t.source_event, t.reason) == (
        "transmitted",
        "expired",
        "platform_timer",
        "expiry:r-1",
        "no_final_answer",
    )
