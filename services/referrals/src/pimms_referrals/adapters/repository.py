"""Referrals' database access for one batch: read once for the whole batch, write once at flush.

`prefetch` loads, in two statements, every case the batch's payloads name (locked on PostgreSQL:
one writer per case) and every referral of those cases. Handlers then read and change that state
in memory, so the messages of one batch see each other's changes; `flush` writes what changed in
one statement per table (executemany), before the unit of work commits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

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
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pimms_referrals.adapters.directory import DirectoryFile
from pimms_referrals.adapters.tables import cases, referral_events, referrals
from pimms_referrals.domain.cases import Case
from pimms_referrals.domain.lifecycle import Referral

# Who caused a status, in the referral's history.
HistorySource = Literal["routing", "gateway", "partner", "withdrawal"]

# Columns a referral never changes after it is routed.
_FIXED_REFERRAL_COLUMNS = ("referral_id", "case_id", "partner_id", "position", "requested_at")
_REFERRAL_UPDATES = tuple(
    c.name for c in referrals.columns if c.name not in _FIXED_REFERRAL_COLUMNS
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

    def __init__(self, session: AsyncSession, *, directory: DirectoryFile) -> None:
        self.session = session
        self._directory = directory
        self._partners: PartnerDirectory | None = None
        self._cases: dict[str, Case | None] = {}
        self._referrals: dict[str, list[Referral]] = {}  # by case id, in routing order
        self._new_cases: dict[str, Case] = {}
        self._changed_cases: set[str] = set()
        self._new_referrals: dict[str, Referral] = {}
        self._changed_referrals: dict[str, Referral] = {}
        self._history: list[dict[str, Any]] = []

    def partners(self) -> PartnerDirectory:
        """The partner directory, read once per batch (the file is reloaded when it changes)."""
        if self._partners is None:
            self._partners = self._directory.current()
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

    def add_referral(self, referral: Referral, *, source: HistorySource) -> None:
        """Keep a new referral and the first line of its history."""
        self._referrals.setdefault(referral.case_id, []).append(referral)
        self._new_referrals[referral.referral_id] = referral
        self._add_history(referral, source=source)

    def save_status(self, referral: Referral, *, source: HistorySource) -> None:
        """Record a referral's new status and append it to its history."""
        held = self._referrals.setdefault(referral.case_id, [])
        for index, known in enumerate(held):
            if known.referral_id == referral.referral_id:
                held[index] = referral
        if referral.referral_id in self._new_referrals:
            self._new_referrals[referral.referral_id] = referral
        else:
            self._changed_referrals[referral.referral_id] = referral
        self._add_history(referral, source=source)

    async def flush(self) -> None:
        """Write what the batch changed: one statement per table and kind of change."""
        if self._new_cases:
            await self.session.execute(
                insert(cases), [_case_row(c) for c in self._new_cases.values()]
            )
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
            await self.session.execute(
                insert(referrals), [_referral_row(r) for r in self._new_referrals.values()]
            )
        if self._changed_referrals:
            await self.session.execute(
                update(referrals)
                .where(referrals.c.referral_id == bindparam("key_referral_id"))
                .values({name: bindparam(name) for name in _REFERRAL_UPDATES}),
                [_referral_update(r) for r in self._changed_referrals.values()],
            )
        if self._history:
            await self.session.execute(insert(referral_events), self._history)
        self._new_cases.clear()
        self._changed_cases.clear()
        self._new_referrals.clear()
        self._changed_referrals.clear()
        self._history.clear()

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

    async def _load(self, case_ids: Iterable[str]) -> None:
        wanted = sorted({c for c in case_ids if c not in self._cases})  # sorted: lock order
        if not wanted:
            return
        found = (
            await self.session.execute(
                select(cases)
                .where(cases.c.case_id.in_(wanted))
                .order_by(cases.c.case_id)
                .with_for_update()
            )
        ).all()
        for case_id in wanted:
            self._cases[case_id] = None
        for row in found:
            self._cases[row.case_id] = _case(row)
            self._referrals[row.case_id] = []
        if not found:
            return
        rows = (
            await self.session.execute(
                select(referrals)
                .where(referrals.c.case_id.in_([r.case_id for r in found]))
                .order_by(referrals.c.case_id, referrals.c.position)
            )
        ).all()
        for row in rows:
            self._referrals[row.case_id].append(_referral(row))

    def _change_case(self, case: Case) -> Case:
        self._cases[case.case_id] = case
        if case.case_id in self._new_cases:
            self._new_cases[case.case_id] = case
        else:
            self._changed_cases.add(case.case_id)
        return case

    def _add_history(self, referral: Referral, *, source: HistorySource) -> None:
        detail = referral.outcome or referral.reason
        self._history.append(
            {
                "referral_id": referral.referral_id,
                "status": referral.status,
                "at": referral.updated_at,
                "source": source,
                "detail": detail[:200] if detail else None,
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
    )
