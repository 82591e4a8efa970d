"""The SLA ladder (specs/partners.md, "SLA ladder"), as durable timers and what firing one does.

From transmission, with the partner's own delays: no acknowledgement (any valid report) within
`ack_within` -> a reminder to the partner (the mediator is told); still none at twice that ->
escalation to the mediator; no final status within `resolve_within` -> `expired`. Reminders and
escalation stop as soon as the partner acts.

A timer is a row (kind, referral_id, due_at) a scheduler holds and fires when due. Firing reads the
referral as it is now, so a timer fired twice, late, or after the partner answered does nothing
more: a restart loses none (rows are durable) and fires none twice (the second firing finds the
step done). `due_timers` is the set of rows a referral should have: store it after every change.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pimms_referrals.domain.lifecycle import EXPIRY, Applied, Referral, move

TimerKind = Literal["reminder", "escalation", "expiry"]

ESCALATION_FACTOR = 2


@dataclass(frozen=True)
class Timer:
    """One step of the ladder due for one referral: a durable row, unique by (kind, referral)."""

    kind: TimerKind
    referral_id: str
    due_at: datetime

    @property
    def key(self) -> str:
        """The row's unique key, also the source event of what it causes."""
        return f"{self.kind}:{self.referral_id}"


def escalation_due_at(referral: Referral) -> datetime | None:
    """When the mediator must step in: twice the acknowledgement delay after transmission."""
    if referral.transmitted_at is None:
        return None
    return referral.transmitted_at + ESCALATION_FACTOR * referral.ack_within


def due_timers(referral: Referral) -> tuple[Timer, ...]:
    """The timers a referral has pending, soonest first: the rows its scheduler must hold."""
    if referral.final or referral.transmitted_at is None:
        return ()
    ack_due = referral.ack_due_at or referral.transmitted_at + referral.ack_within
    resolve_due = referral.resolve_due_at or referral.transmitted_at + referral.resolve_within
    timers = [Timer("expiry", referral.referral_id, resolve_due)]
    if referral.acknowledged_at is None:
        if referral.reminders_sent == 0:
            timers.append(Timer("reminder", referral.referral_id, ack_due))
        escalation = escalation_due_at(referral)
        if referral.escalated_at is None and escalation is not None:
            timers.append(Timer("escalation", referral.referral_id, escalation))
    return tuple(sorted(timers, key=lambda t: t.due_at))


@dataclass(frozen=True)
class Remind:
    """Send the partner reminder number `number` in its format, and tell the mediator."""

    referral: Referral
    number: int
    due_at: datetime
    at: datetime


@dataclass(frozen=True)
class Escalate:
    """Tell the mediator the partner has not acknowledged at twice its delay."""

    referral: Referral
    due_at: datetime
    at: datetime


@dataclass(frozen=True)
class Expire:
    """No final answer in time: the referral is `expired` (visitor and mediator told)."""

    applied: Applied

    @property
    def referral(self) -> Referral:
        """The expired referral."""
        return self.applied.referral


NothingReason = Literal["partner_acted", "final", "already_done", "not_due", "not_transmitted"]


@dataclass(frozen=True)
class Nothing:
    """Firing the timer does nothing; the row can go."""

    referral: Referral
    reason: NothingReason


Fired = Remind | Escalate | Expire | Nothing


def fire_timer(referral: Referral, timer: Timer, *, at: datetime) -> Fired:
    """What firing `timer` at `at` does to the referral as it is now."""
    if referral.final:
        return Nothing(referral, "final")
    if referral.transmitted_at is None:
        return Nothing(referral, "not_transmitted")
    pending = {t.kind: t for t in due_timers(referral)}
    due = pending.get(timer.kind)
    if due is None:
        acted = referral.acknowledged_at is not None
        return Nothing(referral, "partner_acted" if acted else "already_done")
    if at < due.due_at:
        return Nothing(referral, "not_due")
    if due.kind == "reminder":
        number = referral.reminders_sent + 1
        updated = dataclasses.replace(referral, reminders_sent=number)
        return Remind(updated, number=number, due_at=due.due_at, at=at)
    if due.kind == "escalation":
        updated = dataclasses.replace(referral, escalated_at=at)
        return Escalate(updated, due_at=due.due_at, at=at)
    result = move(referral, EXPIRY, actor="platform_timer", at=at, source_event=timer.key)
    assert isinstance(result, Applied), "TRANSITIONS lets the timer expire an unfinished referral"
    return Expire(result)
