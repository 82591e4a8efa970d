"""Random lives of a referral: partner reports, deliveries, timers, withdrawals, documents.

Whatever the order, the referral never reaches a stage or takes a move outside TRANSITIONS, a
valid final report is never lost, and no reminder or escalation follows a partner's report.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import event, given, settings
from hypothesis import strategies as st
from pimms_referrals.domain.documents import NATURALISATION_CHECKLIST
from pimms_referrals.domain.lifecycle import (
    TRANSITIONS,
    Applied,
    Forwarded,
    Impossible,
    Referral,
    Result,
    allowed,
    bring_documents,
    open_referral,
    record_delivery_failure,
    record_transmission,
    report_from_partner,
    reported_change,
    status_of,
    withdraw,
)
from pimms_referrals.domain.sla import (
    Escalate,
    Expire,
    Fired,
    Nothing,
    Remind,
    Timer,
    TimerKind,
    due_timers,
    fire_timer,
)

T0 = datetime(2026, 11, 27, 8, 30, tzinfo=UTC)
DOCUMENTS = (*NATURALISATION_CHECKLIST, "last_bill")
TIMER_KINDS: tuple[TimerKind, ...] = ("reminder", "escalation", "expiry")


@dataclass(frozen=True)
class Report:
    status: str
    code: str | None
    missing: tuple[str, ...]


@dataclass(frozen=True)
class Deliver:
    failed: bool


@dataclass(frozen=True)
class FireDue:
    """The scheduler fires a pending timer when it is due (time moves on to then)."""

    which: int  # index among the timers pending, modulo their number


@dataclass(frozen=True)
class FireStale:
    """A timer of this kind fires now: early, again, or after its row should be gone."""

    kind: TimerKind


@dataclass(frozen=True)
class Wait:
    quarters: int  # of the partner's acknowledgement delay, so that waits meet the ladder's steps


@dataclass(frozen=True)
class Withdraw:
    pass


@dataclass(frozen=True)
class Bring:
    added: tuple[str, ...]


Step = Report | Deliver | FireDue | FireStale | Wait | Withdraw | Bring

documents = st.lists(st.sampled_from(DOCUMENTS), max_size=4, unique=True).map(tuple)
ongoing_reports = st.one_of(
    st.sampled_from(["received", "accepted", "in_progress"]).map(lambda s: Report(s, None, ())),
    documents.map(lambda missing: Report("on_hold", None, missing)),
)
final_reports = st.one_of(
    st.sampled_from(["resolved", "not_resolved", "visitor_unreachable"]).map(
        lambda outcome: Report("completed", outcome, ())
    ),
    st.sampled_from(["out_of_scope", "duplicate", "incomplete", "other"]).map(
        lambda reason: Report("rejected", reason, ())
    ),
)
# Weighted by repetition (one_of picks its branches alike): endings are rarer than the rest, so
# that lives last long enough to meet the ladder's steps.
endings = st.one_of(final_reports, st.just(Withdraw()), st.just(Deliver(failed=True)))
steps = st.lists(
    st.one_of(
        ongoing_reports,
        endings,
        st.just(Deliver(failed=False)),
        st.integers(0, 5).map(FireDue),
        st.integers(0, 5).map(FireDue),
        st.integers(0, 5).map(FireDue),
        st.sampled_from(TIMER_KINDS).map(FireStale),
        st.integers(1, 9).map(Wait),
        st.integers(1, 9).map(Wait),
        st.integers(1, 9).map(Wait),
        documents.filter(bool).map(Bring),
        st.just(Bring(NATURALISATION_CHECKLIST)),
    ),
    max_size=30,
)
initial_documents = st.one_of(documents, st.just(NATURALISATION_CHECKLIST))
# Most lives start with the gateway delivering the referral, as on the platform.
lives = st.tuples(st.integers(0, 3), steps).map(
    lambda first: [Deliver(failed=False), *first[1]] if first[0] else first[1]
)
initial_documents = st.one_of(documents, st.just(NATURALISATION_CHECKLIST))


def check_move(before: Referral, result: Result | Forwarded) -> Referral:
    """Every move is one of TRANSITIONS, from the stage the referral was in."""
    if isinstance(result, Applied | Forwarded):
        t = result.transition
        assert t.from_stage == before.stage
        assert t.to_stage in allowed(before.stage, t.actor)
        assert result.referral.stage == t.to_stage
        assert result.referral.status == status_of(t.to_stage)
    else:
        assert result.referral == before
    return result.referral


@settings(max_examples=250, deadline=None)
@given(
    partner_id=st.sampled_from(["edf", "prefecture-69"]),
    initial=initial_documents,
    ack_hours=st.integers(1, 24 * 10),
    resolve_days=st.integers(1, 60),
    plan=lives,
)
def test_random_lives_stay_in_the_table(
    partner_id: str, initial: tuple[str, ...], ack_hours: int, resolve_days: int, plan: list[Step]
) -> None:
    live(partner_id, initial, ack_hours, resolve_days, plan)


asked_documents = documents.filter(bool).map(lambda missing: Report("on_hold", None, missing))
prefecture_lives = st.lists(
    st.one_of(asked_documents, documents.filter(bool).map(Bring), steps.map(tuple)),
    max_size=12,
).map(lambda parts: [Deliver(failed=False), *_flatten(parts)])


def _flatten(parts: list[Step | tuple[Step, ...]]) -> list[Step]:
    return [s for part in parts for s in (part if isinstance(part, tuple) else (part,))]


@settings(max_examples=150, deadline=None)
@given(plan=prefecture_lives, resolve_days=st.integers(10, 180))
def test_documents_the_prefecture_asks_for_are_sent_on(plan: list[Step], resolve_days: int) -> None:
    live("prefecture-69", NATURALISATION_CHECKLIST, 24 * 10, resolve_days, plan)


def live(
    partner_id: str, initial: tuple[str, ...], ack_hours: int, resolve_days: int, plan: list[Step]
) -> None:
    """Play a referral's life step by step, checking every rule on the way."""
    now = T0
    held = set(initial)
    opened = open_referral(
        referral_id="r-1",
        case_id="c-1",
        partner_id=partner_id,
        position=0,
        ack_within=timedelta(hours=ack_hours),
        resolve_within=timedelta(days=resolve_days),
        documents=initial,
        at=now,
    )
    assert opened.transition.to_stage in allowed("new", "routing")
    referral = opened.referral
    partner_acted = False
    final_report: tuple[str, str | None] | None = None
    asked: tuple[str, ...] = ()  # what the partner's last hold asked for
    brought_since: set[str] = set()
    for step in plan:
        before = referral
        result: Result | Forwarded | Fired
        if isinstance(step, Wait):
            now += timedelta(hours=ack_hours) * step.quarters / 4
            continue
        if isinstance(step, Report):
            change = reported_change(
                status=step.status,
                outcome=step.code if step.status == "completed" else None,
                reason=step.code if step.status == "rejected" else None,
                missing_documents=step.missing,
            )
            result = report_from_partner(referral, change, at=now)
            if step.status in {"completed", "rejected"} and not before.final:
                # a final answer from a partner that has the referral is always taken
                assert (before.stage == "held") == isinstance(result, Impossible)
            if isinstance(result, Applied) and result.referral.status == "on_hold":
                asked, brought_since = step.missing, set()
            if not isinstance(result, Impossible):
                partner_acted = True
                if isinstance(result, Applied) and result.referral.final:
                    final_report = (result.referral.status, step.code)
            referral = check_move(before, result)
        elif isinstance(step, Deliver):
            result = (
                record_delivery_failure(referral, reason="http_400", at=now)
                if step.failed
                else record_transmission(referral, at=now)
            )
            referral = check_move(before, result)
        elif isinstance(step, Withdraw):
            result = withdraw(referral, reason="visitor_request", at=now)
            referral = check_move(before, result)
            assert referral.final
        elif isinstance(step, Bring):
            held |= set(step.added)
            result = bring_documents(referral, added=step.added, held=tuple(held), at=now)
            referral = check_move(before, result)
            if isinstance(result, Forwarded):
                assert result.documents == step.added, "what the visitor brought is sent on"
                brought_since |= set(step.added)
                expected = tuple(code for code in asked if code not in brought_since)
                assert referral.missing_documents == expected
            if before.stage == "held" and not referral.final:
                # a held file goes out only once complete
                complete = set(NATURALISATION_CHECKLIST) <= held
                assert (referral.stage == "requested") == complete
        else:
            pending = due_timers(referral)
            if isinstance(step, FireDue):
                if not pending:
                    continue
                timer = pending[step.which % len(pending)]
                now = max(now, timer.due_at)
            else:
                # the pending row of that kind, or one already gone (fired again)
                stale = Timer(step.kind, "r-1", now)
                timer = next((t for t in pending if t.kind == step.kind), stale)
            fired = result = fire_timer(referral, timer, at=now)
            if isinstance(fired, Remind | Escalate):
                assert not partner_acted, "a partner that acted is chased no more"
                assert fired.at >= fired.due_at
            if isinstance(fired, Remind):
                assert fired.number == 1
            if isinstance(fired, Expire):
                referral = check_move(before, fired.applied)
                assert referral.status == "expired"
            elif isinstance(fired, Nothing):
                assert fired.referral == before
                referral = before
            else:
                assert fired.referral.status == before.status
                referral = fired.referral
        assert referral.stage in TRANSITIONS
        event(f"{type(result).__name__} {referral.stage}")
        if before.final:
            assert referral == before, "nothing leaves a final status"
    if final_report is not None:
        assert (referral.status, referral.outcome or referral.reason) == final_report
    assert referral.reminders_sent <= 1
    if referral.stage == "held":
        assert referral.missing_documents
        assert referral.transmitted_at is None
