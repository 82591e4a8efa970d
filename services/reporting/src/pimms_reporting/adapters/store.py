"""The projection read whole for a report, and emptied for a rebuild."""

from __future__ import annotations

from pimms_servicekit.db import Database
from pimms_servicekit.inbox import DEAD_LETTERED
from pimms_servicekit.tables import inbox
from sqlalchemy import Table, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from pimms_reporting.adapters.tables import (
    PROJECTION,
    assessments,
    cases,
    notifications,
    referrals,
    sla_signals,
)
from pimms_reporting.domain.facts import (
    AssessmentFact,
    CaseFacts,
    Facts,
    NotificationFact,
    ReferralFacts,
    SlaSignal,
)


async def _rows(session: AsyncSession, table: Table) -> list[dict[str, object]]:
    primary = list(table.primary_key.columns)
    result = await session.execute(select(table).order_by(*primary))
    return [dict(row._mapping) for row in result]


async def load_facts(database: Database) -> Facts:
    """Every fact of the projection (ordered by id, so that a report is the same every time)."""
    async with database.sessions() as session:
        return Facts(
            cases=tuple(CaseFacts(**r) for r in await _rows(session, cases)),  # type: ignore[arg-type]
            referrals=tuple(ReferralFacts(**r) for r in await _rows(session, referrals)),  # type: ignore[arg-type]
            signals=tuple(SlaSignal(**r) for r in await _rows(session, sla_signals)),  # type: ignore[arg-type]
            notifications=tuple(
                NotificationFact(**r)  # type: ignore[arg-type]
                for r in await _rows(session, notifications)
            ),
            assessments=tuple(
                AssessmentFact(**{**r, "tags": tuple(r["tags"])})  # type: ignore[arg-type]
                for r in await _rows(session, assessments)
            ),
        )


async def empty_projection(database: Database, *, consumer: str) -> None:
    """Forget every fact and which messages were counted, in one transaction, so that the
    topics read again from their start fill fresh tables. Messages that went to dead letters
    stay known: a rebuild does not dead-letter them twice."""
    async with database.transaction() as session:
        for table in PROJECTION:
            await session.execute(delete(table))
        await session.execute(
            delete(inbox).where(inbox.c.consumer == consumer, inbox.c.outcome != DEAD_LETTERED)
        )
