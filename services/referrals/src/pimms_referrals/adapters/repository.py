"""Referrals' database access, inside the transaction of the batch being processed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pimms_contracts.v1.common import WithdrawalReason
from pimms_contracts.v1.lifecycle import CaseOutcome
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pimms_referrals.adapters.tables import cases, referral_events, referrals
from pimms_referrals.domain.cases import Case
from pimms_referrals.domain.lifecycle import Referral


class ReferralsRepository:
    """Cases, referrals and the status history of each referral."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def case(self, case_id: str, *, lock: bool = False) -> Case | None:
        """The case, locked for this transaction when `lock` (PostgreSQL: one writer per case)."""
        statement = select(cases).where(cases.c.case_id == case_id)
        if lock:
            statement = statement.with_for_update()
        row = (await self.session.execute(statement)).first()
        return _case(row) if row is not None else None

    async def add_case(self, case: Case) -> None:
        """Store a case just opened."""
        await self.session.execute(
            insert(cases).values(
                case_id=case.case_id,
                case_reference=case.case_reference,
                site_id=case.site_id,
                mediator_id=case.mediator_id,
                category=case.category,
                urgency=case.urgency,
                departement=case.departement,
                documents=list(case.documents),
                submitted_at=case.submitted_at,
                opened_at=case.opened_at,
            )
        )

    async def set_documents(self, case_id: str, documents: Sequence[str]) -> None:
        """Replace the documents the visitor brought (the whole set now held)."""
        await self.session.execute(
            update(cases).where(cases.c.case_id == case_id).values(documents=list(documents))
        )

    async def close_case(
        self, case_id: str, *, outcome: CaseOutcome, reason: WithdrawalReason | None, at: datetime
    ) -> bool:
        """Mark the case closed; False when it already was (CaseClosed is emitted once)."""
        result = await self.session.execute(
            update(cases)
            .where(cases.c.case_id == case_id, cases.c.closed_at.is_(None))
            .values(closed_at=at, outcome=outcome, close_reason=reason)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def add_referral(self, referral: Referral, *, source: str) -> None:
        """Store a new referral and the first line of its history."""
        await self.session.execute(insert(referrals).values(**_referral_row(referral)))
        await self._history(referral, source=source)

    async def referral(self, referral_id: str) -> Referral | None:
        """One referral."""
        row = (
            await self.session.execute(
                select(referrals).where(referrals.c.referral_id == referral_id)
            )
        ).first()
        return _referral(row) if row is not None else None

    async def referrals_of(self, case_id: str) -> list[Referral]:
        """Every referral of a case, in routing order."""
        rows = (
            await self.session.execute(
                select(referrals)
                .where(referrals.c.case_id == case_id)
                .order_by(referrals.c.position)
            )
        ).all()
        return [_referral(r) for r in rows]

    async def save_status(self, referral: Referral, *, source: str) -> None:
        """Record a referral's new status and append it to its history."""
        row = _referral_row(referral)
        for fixed in ("referral_id", "case_id", "partner_id", "position", "requested_at"):
            row.pop(fixed)
        await self.session.execute(
            update(referrals).where(referrals.c.referral_id == referral.referral_id).values(**row)
        )
        await self._history(referral, source=source)

    async def history(self, referral_id: str) -> list[tuple[str, datetime, str, str | None]]:
        """(status, at, source, detail) of a referral, oldest first: its timeline."""
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

    async def _history(self, referral: Referral, *, source: str) -> None:
        detail = referral.outcome or referral.reason
        await self.session.execute(
            insert(referral_events).values(
                referral_id=referral.referral_id,
                status=referral.status,
                at=referral.updated_at,
                source=source,
                detail=detail[:200] if detail else None,
            )
        )


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
