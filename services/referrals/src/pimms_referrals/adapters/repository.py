"""Referrals' database access for one batch: read once for the whole batch, write once at flush.

`prefetch` loads, in two statements, every case the batch's payloads name (locked on PostgreSQL:
one writer per case) and every referral of those cases. Handlers then read and change that state
in memory, so the messages of one batch see each other's changes; `flush` writes what changed in
one statement per table (executemany), before the unit of work commits.

The `timers` table is kept equal to `domain.sla.due_timers` of every referral: a referral's rows
change only with the referral, in the same flush. The scheduler claims due rows through
`claim_due_timers`: the case is the lock every writer takes first (handlers wait for it, the
scheduler skips a case someone holds and takes it at its next tick), so two instances never fire
one timer twice and never deadlock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from pimms_contracts.partners import PartnerDirectory
from pimms_contracts.v1.common import WithdrawalReason
from pimms_contracts.v1.internal import (
    IntakeCaseOpened,
    IntakeCaseWithdrawn,
    IntakeDocumentsAdded,
    PartnerDelivered,
    PartnerDeliveryFailed,
    PartnerStatusReported,
)
from pimms_contracts.v1.lifecycle import CaseOutcome
from pimms_servicekit.db import BulkInsert, BulkUpdate, padded
from pimms_servicekit.storage import storable_text
from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pimms_referrals.adapters.tables import cases, referral_events, referrals, timers
from pimms_referrals.domain.cases import Case
from pimms_referrals.domain.lifecycle import Referral, Transition
from pimms_referrals.domain.sla import Timer, due_timers

_TimerKey = tuple[str, str]  # (kind, referral_id): a timer row's primary key

# Columns a referral never changes after it is routed.
# One INSERT statement per table and batch on PostgreSQL (see BulkInsert).
_INSERT_CASES = BulkInsert(cases)
_INSERT_REFERRALS = BulkInsert(referrals)
_INSERT_EVENTS = BulkInsert(referral_events)
_INSERT_TIMERS = BulkInsert(timers)
_FIXED_REFERRAL_COLUMNS = ("referral_id", "case_id", "partner_id", "position", "requested_at")
_REFERRAL_UPDATES = tuple(
    c.name for c in referrals.columns if c.name not in _FIXED_REFERRAL_COLUMNS
)
_UPDATE_REFERRALS = BulkUpdate(
    referrals,
    match={"key_referral_id": "referral_id"},
    assign={name: name for name in _REFERRAL_UPDATES},
)
_CASE_UPDATES = ("documents", "closed_at", "outcome", "close_reason")
# What referrals reads: every one of these names its case.
_ABOUT_A_CASE = (
    IntakeCaseOpened,
    IntakeDocumentsAdded,
    IntakeCaseWithdrawn,
    PartnerDelivered,
    PartnerDeliveryFailed,
    PartnerStatusReported,
)


class ReferralsRepos:
    """Cases, referrals and their status history, as one batch sees and changes them."""

    def __init__(self, session: AsyncSession, *, directory: PartnerDirectory) -> None:
        self.session = session
        self._partners = directory
        self._cases: dict[str, Case | None] = {}
        self._referrals: dict[str, list[Referral]] = {}  # by case id, in routing order
        self._new_cases: dict[str, Case] = {}
        self._changed_cases: set[str] = set()
        self._new_referrals: dict[str, Referral] = {}
        self._changed_referrals: dict[str, Referral] = {}
        self._history: list[dict[str, Any]] = []
        # Each referral as stored (its timer rows are due_timers of it), and timer rows fired.
        self._stored_referrals: dict[str, Referral] = {}
        self._fired: set[_TimerKey] = set()

    def partners(self) -> PartnerDirectory:
        """The partner directory as it was when this batch began (one version per batch)."""
        return self._partners

    async def prefetch(self, payloads: Sequence[object]) -> None:
        """Load every case the batch's payloads name, and their referrals (two statements)."""
        await self._load(str(p.case_id) for p in payloads if isinstance(p, _ABOUT_A_CASE))

    async def case(self, case_id: str) -> Case | None:
        """The case as this batch sees it, or None when it was never opened."""
        if case_id not in self._cases:
            await self._load([case_id])
        return self._cases[case_id]

    async def referrals_of(self, case_id: str) -> list[Referral]:
        """Every referral of a case, in routing order."""
        if case_id not in self._cases:
            await self._load([case_id])
        return list(self._referrals.get(case_id, ()))

    async def referral_of(
        self, case_id: str, *, referral_id: str, partner_id: str
    ) -> Referral | None:
        """The referral of this case to this partner with this id, or None."""
        for referral in await self.referrals_of(case_id):
            if referral.referral_id == referral_id and referral.partner_id == partner_id:
                return referral
        return None

    def add_case(self, case: Case) -> None:
        """Keep a case just opened."""
        self._cases[case.case_id] = case
        self._referrals[case.case_id] = []
        self._new_cases[case.case_id] = case

    def set_documents(self, case: Case, documents: Sequence[str]) -> Case:
        """Replace the documents the visitor brought (the whole set now held)."""
        return self._change_case(dataclasses.replace(case, documents=tuple(documents)))

    def close_case(
        self, case: Case, *, outcome: CaseOutcome, reason: WithdrawalReason | None, at: datetime
    ) -> Case | None:
        """Mark the case closed; None when it already was (CaseClosed is emitted once)."""
        current = self._cases.get(case.case_id) or case
        if current.closed:
            return None
        return self._change_case(
            dataclasses.replace(current, closed_at=at, outcome=outcome, close_reason=reason)
        )

    def add_referral(self, referral: Referral, *, transition: Transition) -> None:
        """Keep a new referral and the first line of its history."""
        self._referrals.setdefault(referral.case_id, []).append(referral)
        self._new_referrals[referral.referral_id] = referral
        self._add_history(transition)

    def save_referral(self, referral: Referral, *, transition: Transition | None = None) -> None:
        """Record a referral's new state, and the transition that moved it (when one did)."""
        held = self._referrals.setdefault(referral.case_id, [])
        for index, known in enumerate(held):
            if known.referral_id == referral.referral_id:
                held[index] = referral
        if referral.referral_id in self._new_referrals:
            self._new_referrals[referral.referral_id] = referral
        else:
            self._changed_referrals[referral.referral_id] = referral
        if transition is not None:
            self._add_history(transition)

    async def claim_due_timers(self, *, now: datetime, limit: int) -> list[tuple[str, Timer]]:
        """(case id, timer) of the rows due at `now`, soonest first, of cases it could lock.

        Three statements: the cases of the `limit` soonest due rows; those cases locked (with
        their referrals loaded; on PostgreSQL a case another transaction holds is skipped, its
        timers wait for the next tick); their due rows, locked (FOR UPDATE SKIP LOCKED).
        """
        candidates = (
            await self.session.execute(
                select(timers.c.case_id)
                .where(timers.c.due_at <= now)
                .order_by(timers.c.due_at, timers.c.referral_id, timers.c.kind)
                .limit(limit)
            )
        ).all()
        case_ids = list(dict.fromkeys(row.case_id for row in candidates))
        locked = await self._load(case_ids, skip_locked=True)
        if not locked:
            return []
        rows = (
            await self.session.execute(
                select(timers)
                .where(timers.c.case_id.in_(padded(sorted(locked))), timers.c.due_at <= now)
                .order_by(timers.c.due_at, timers.c.referral_id, timers.c.kind)
                .with_for_update(skip_locked=True)
            )
        ).all()
        return [(row.case_id, Timer(row.kind, row.referral_id, row.due_at)) for row in rows]

    def find_referral(self, case_id: str, referral_id: str) -> Referral | None:
        """A referral of a case this unit of work has loaded, by id."""
        for referral in self._referrals.get(case_id, ()):
            if referral.referral_id == referral_id:
                return referral
        return None

    def timer_fired(self, timer: Timer) -> None:
        """The scheduler fired this row: it goes (the referral's pending timers are rewritten)."""
        self._fired.add((timer.kind, timer.referral_id))

    async def pending_timers(self, referral_id: str) -> list[Timer]:
        """One referral's timer rows as stored, soonest first (support tools, tests)."""
        rows = (
            await self.session.execute(
                select(timers)
                .where(timers.c.referral_id == referral_id)
                .order_by(timers.c.due_at, timers.c.kind)
            )
        ).all()
        return [Timer(row.kind, row.referral_id, row.due_at) for row in rows]

    async def flush(self) -> None:
        """Write what the batch changed: one statement per table and kind of change."""
        if self._new_cases:
            await _INSERT_CASES(self.session, [_case_row(c) for c in self._new_cases.values()])
        changed_cases = [
            case
            for case_id in sorted(self._changed_cases)
            if case_id not in self._new_cases and (case := self._cases[case_id]) is not None
        ]
        if changed_cases:
            await self.session.execute(
                update(cases)
                .where(cases.c.case_id == bindparam("key_case_id"))
                .values({name: bindparam(name) for name in _CASE_UPDATES}),
                [_case_update(c) for c in changed_cases],
            )
        if self._new_referrals:
            await _INSERT_REFERRALS(
                self.session, [_referral_row(r) for r in self._new_referrals.values()]
            )
        if self._changed_referrals:
            await _UPDATE_REFERRALS(
                self.session, [_referral_update(r) for r in self._changed_referrals.values()]
            )
        if self._history:
            await _INSERT_EVENTS(self.session, self._history)
        await self._flush_timers()
        self._new_cases.clear()
        self._changed_cases.clear()
        self._new_referrals.clear()
        self._changed_referrals.clear()
        self._history.clear()
        self._fired.clear()

    async def _flush_timers(self) -> None:
        """Make each changed referral's timer rows equal to its due timers (two statements)."""
        gone: set[_TimerKey] = set(self._fired)
        added: list[dict[str, Any]] = []
        changed = {**self._new_referrals, **self._changed_referrals}
        for referral_id in {*changed, *(key[1] for key in self._fired)}:
            current = changed.get(referral_id) or self._stored_referrals.get(referral_id)
            if current is None:
                continue
            stored = self._stored_referrals.get(referral_id)
            before = set(due_timers(stored)) if stored is not None else set()
            after = set(due_timers(current))
            gone |= {(t.kind, t.referral_id) for t in before - after}
            added.extend(
                _timer_row(t, case_id=current.case_id)
                for t in after
                if t not in before or (t.kind, t.referral_id) in self._fired
            )
            self._stored_referrals[referral_id] = current
        if gone:
            await self.session.execute(
                delete(timers).where(
                    timers.c.kind == bindparam("key_kind"),
                    timers.c.referral_id == bindparam("key_referral_id"),
                ),
                [{"key_kind": k, "key_referral_id": r} for k, r in sorted(gone)],
            )
        if added:
            await _INSERT_TIMERS(self.session, added)

    async def stored_referral(self, referral_id: str) -> Referral | None:
        """One referral as stored (support tools, tests)."""
        row = (
            await self.session.execute(
                select(referrals).where(referrals.c.referral_id == referral_id)
            )
        ).first()
        return _referral(row) if row is not None else None

    async def history(self, referral_id: str) -> list[tuple[str, datetime, str, str | None]]:
        """(status, at, source, detail) of a referral as stored, oldest first: its timeline."""
        rows = (
            await self.session.execute(
                select(
                    referral_events.c.status,
                    referral_events.c.at,
                    referral_events.c.source,
                    referral_events.c.detail,
                )
                .where(referral_events.c.referral_id == referral_id)
                .order_by(referral_events.c.id)
            )
        ).all()
        return [(r.status, r.at, r.source, r.detail) for r in rows]

    async def timeline(self, referral_id: str) -> list[dict[str, Any]]:
        """Every stored transition of a referral, oldest first, with its actor and source event."""
        rows = (
            await self.session.execute(
                select(referral_events)
                .where(referral_events.c.referral_id == referral_id)
                .order_by(referral_events.c.id)
            )
        ).all()
        return [
            {
                "from_stage": r.from_stage,
                "to_stage": r.to_stage,
                "status": r.status,
                "actor": r.source,
                "at": r.at,
                "source_event": r.source_event,
                "detail": r.detail,
            }
            for r in rows
        ]

    async def _load(self, case_ids: Iterable[str], *, skip_locked: bool = False) -> set[str]:
        """Load and lock these cases and their referrals; return the ids loaded now.

        With `skip_locked`, a case another transaction holds is left out (and not taken for
        unknown); without it, this waits for it, cases locked in id order.
        """
        wanted = sorted({c for c in case_ids if c not in self._cases})  # sorted: lock order
        if not wanted:
            return set()
        found = (
            await self.session.execute(
                select(cases)
                .where(cases.c.case_id.in_(padded(wanted)))
                .order_by(cases.c.case_id)
                .with_for_update(skip_locked=skip_locked)
            )
        ).all()
        if not skip_locked:
            for case_id in wanted:
                self._cases[case_id] = None
        for row in found:
            self._cases[row.case_id] = _case(row)
            self._referrals[row.case_id] = []
        if not found:
            return set()
        rows = (
            await self.session.execute(
                select(referrals)
                .where(referrals.c.case_id.in_(padded([r.case_id for r in found])))
                .order_by(referrals.c.case_id, referrals.c.position)
            )
        ).all()
        for row in rows:
            referral = _referral(row)
            self._referrals[row.case_id].append(referral)
            self._stored_referrals[referral.referral_id] = referral
        return {row.case_id for row in found}

    def _change_case(self, case: Case) -> Case:
        self._cases[case.case_id] = case
        if case.case_id in self._new_cases:
            self._new_cases[case.case_id] = case
        else:
            self._changed_cases.add(case.case_id)
        return case

    def _add_history(self, transition: Transition) -> None:
        detail = transition.code
        self._history.append(
            {
                "referral_id": transition.referral_id,
                "status": transition.status,
                "at": transition.at,
                "source": transition.actor,
                "detail": detail[:200] if detail else None,
                "from_stage": transition.from_stage,
                "to_stage": transition.to_stage,
                "source_event": storable_text(transition.source_event, limit=200),
            }
        )


def _case_row(case: Case) -> dict[str, Any]:
    return {
        "case_id": case.case_id,
        "case_reference": case.case_reference,
        "site_id": case.site_id,
        "mediator_id": case.mediator_id,
        "category": case.category,
        "urgency": case.urgency,
        "departement": case.departement,
        "documents": list(case.documents),
        "submitted_at": case.submitted_at,
        "opened_at": case.opened_at,
        "closed_at": case.closed_at,
        "outcome": case.outcome,
        "close_reason": case.close_reason,
        "correlation_id": storable_text(case.correlation_id, limit=200),
    }


def _case_update(case: Case) -> dict[str, Any]:
    row = _case_row(case)
    return {"key_case_id": case.case_id, **{name: row[name] for name in _CASE_UPDATES}}


def _case(row: Any) -> Case:
    return Case(
        case_id=row.case_id,
        case_reference=row.case_reference,
        site_id=row.site_id,
        mediator_id=row.mediator_id,
        category=row.category,
        urgency=row.urgency,
        departement=row.departement,
        documents=tuple(row.documents),
        submitted_at=row.submitted_at,
        opened_at=row.opened_at,
        closed_at=row.closed_at,
        outcome=row.outcome,
        close_reason=row.close_reason,
        correlation_id=row.correlation_id,
    )


def _referral_row(referral: Referral) -> dict[str, Any]:
    return {
        "referral_id": referral.referral_id,
        "case_id": referral.case_id,
        "partner_id": referral.partner_id,
        "position": referral.position,
        "status": referral.status,
        "outcome": referral.outcome,
        "reason": referral.reason[:200] if referral.reason else None,
        "missing_documents": list(referral.missing_documents),
        "ack_within_s": int(referral.ack_within.total_seconds()),
        "resolve_within_s": int(referral.resolve_within.total_seconds()),
        "requested_at": referral.requested_at,
        "transmitted_at": referral.transmitted_at,
        "acknowledged_at": referral.acknowledged_at,
        "ack_due_at": referral.ack_due_at,
        "resolve_due_at": referral.resolve_due_at,
        "updated_at": referral.updated_at,
        "reminders_sent": referral.reminders_sent,
        "escalated_at": referral.escalated_at,
    }


def _referral_update(referral: Referral) -> dict[str, Any]:
    row = _referral_row(referral)
    return {
        "key_referral_id": referral.referral_id,
        **{name: row[name] for name in _REFERRAL_UPDATES},
    }


def _referral(row: Any) -> Referral:
    return Referral(
        referral_id=row.referral_id,
        case_id=row.case_id,
        partner_id=row.partner_id,
        position=row.position,
        status=row.status,
        outcome=row.outcome,
        reason=row.reason,
        missing_documents=tuple(row.missing_documents),
        ack_within=timedelta(seconds=row.ack_within_s),
        resolve_within=timedelta(seconds=row.resolve_within_s),
        requested_at=row.requested_at,
        transmitted_at=row.transmitted_at,
        acknowledged_at=row.acknowledged_at,
        ack_due_at=row.ack_due_at,
        resolve_due_at=row.resolve_due_at,
        updated_at=row.updated_at,
        reminders_sent=row.reminders_sent,
        escalated_at=row.escalated_at,
    )


def _timer_row(timer: Timer, *, case_id: str) -> dict[str, Any]:
    return {
        "kind": timer.kind,
        "referral_id": timer.referral_id,
        "case_id": case_id,
        "due_at": timer.due_at,
    }
