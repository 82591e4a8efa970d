"""Reporting's rows for one batch: referrals read in one query, every fact written in bulk."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from pimms_contracts.v1.lifecycle import ReferralEvent
from pimms_servicekit.db import BulkInsert, chunks, padded
from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from pimms_reporting.adapters.tables import (
    assessments,
    cases,
    notifications,
    referrals,
    sla_signals,
)
from pimms_reporting.domain.facts import (
    AssessmentFact,
    CaseFacts,
    NotificationFact,
    ReferralFacts,
    SlaSignal,
)

_ROWS_PER_STATEMENT = 500  # rows of one upsert
# By table: its rows stored, or replaced where the primary key has a row already.
_UPSERTS = {
    table.name: BulkInsert(table, replace_existing=[c.name for c in table.primary_key.columns])
    for table in (referrals, cases, sla_signals, notifications, assessments)
}


class ReportingRepos:
    """The projection's facts, for the batch being processed."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._referrals: dict[str, ReferralFacts | None] = {}
        self._changed: dict[str, ReferralFacts] = {}
        self._rows: dict[str, dict[str, dict[str, Any]]] = {
            t.name: {} for t in (cases, sla_signals, notifications, assessments)
        }

    async def prefetch(self, payloads: Sequence[object]) -> None:
        """Load, in one query per 500, every referral the batch's lifecycle events name."""
        await self._load(str(p.referral_id) for p in payloads if isinstance(p, ReferralEvent))

    async def referral(self, referral_id: str) -> ReferralFacts | None:
        """A referral's facts so far (None before its first event)."""
        if referral_id not in self._referrals:
            await self._load([referral_id])
        return self._referrals[referral_id]

    async def _load(self, referral_ids: Iterable[str]) -> None:
        wanted = sorted({r for r in referral_ids if r not in self._referrals})
        for chunk in chunks(wanted):
            rows = await self.session.execute(
                select(referrals).where(referrals.c.referral_id.in_(padded(chunk)))
            )
            for row in rows:
                self._referrals[row.referral_id] = ReferralFacts(**row._mapping)
            for referral_id in chunk:
                self._referrals.setdefault(referral_id, None)

    def put_referral(self, facts: ReferralFacts) -> None:
        """Keep a referral's new facts."""
        self._referrals[facts.referral_id] = facts
        self._changed[facts.referral_id] = facts

    def put_case(self, facts: CaseFacts) -> None:
        """Keep a case as opened."""
        self._rows[cases.name][facts.case_id] = dataclasses.asdict(facts)

    def add_signal(self, signal: SlaSignal) -> None:
        """Keep a reminder or an escalation."""
        self._rows[sla_signals.name][signal.signal_id] = dataclasses.asdict(signal)

    def put_notification(self, fact: NotificationFact) -> None:
        """Keep a notification's outcome."""
        self._rows[notifications.name][fact.notification_id] = dataclasses.asdict(fact)

    def put_assessment(self, fact: AssessmentFact) -> None:
        """Keep a referral's assessment, replacing an earlier one."""
        row = dataclasses.asdict(fact)
        row["tags"] = list(fact.tags)
        self._rows[assessments.name][fact.referral_id] = row

    async def flush(self) -> None:
        """Write the batch's facts: one upsert statement per table."""
        changed = [dataclasses.asdict(f) for f in self._changed.values()]
        await self._upsert(referrals, changed)
        for table in (cases, sla_signals, notifications, assessments):
            await self._upsert(table, list(self._rows[table.name].values()))
            self._rows[table.name] = {}
        self._changed = {}

    async def _upsert(self, table: Table, rows: list[dict[str, Any]]) -> None:
        upsert = _UPSERTS[table.name]
        for start in range(0, len(rows), _ROWS_PER_STATEMENT):
            await upsert(self.session, rows[start : start + _ROWS_PER_STATEMENT])
