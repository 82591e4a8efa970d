"""Intake's rows for one batch: read in bulk, written in bulk when the batch is flushed.

One need costs no statement of its own: the batch's submission ids are looked up in one query,
new cases and visitors are inserted with one statement each, reference counters are read once
(row-locked on PostgreSQL until the commit) and written once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from pimms_contracts.v1.frontoffice import (
    NeedDocumentsAdded,
    NeedSubmitted,
    NeedWithdrawn,
    ReferralAssessed,
)
from pimms_servicekit.db import BulkInsert, chunks, padded
from pimms_servicekit.storage import storable_id
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from pimms_intake.adapters.tables import (
    assessments,
    cases,
    reference_counters,
    referral_statuses,
    rejections,
    visitors,
)
from pimms_intake.domain.assessments import KnownReferral
from pimms_intake.domain.cases import CaseSnapshot, CaseStatus

# One INSERT statement per table and batch on PostgreSQL (see BulkInsert).
_INSERT_CASES = BulkInsert(cases)
_INSERT_VISITORS = BulkInsert(visitors)
_INSERT_REJECTIONS = BulkInsert(rejections)
# Stored, or replaced where the referral has a row already.
_UPSERT_STATUSES = BulkInsert(referral_statuses, replace_existing=["referral_id"])
_UPSERT_ASSESSMENTS = BulkInsert(assessments, replace_existing=["referral_id"])


class IntakeRepository:
    """Cases, visitors, reference counters and rejections, for the batch being processed."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._by_submission: dict[str, CaseSnapshot | None] = {}
        self._new_cases: list[dict[str, Any]] = []
        self._new_visitors: list[dict[str, Any]] = []
        self._updates: dict[str, dict[str, Any]] = {}
        self._counters: dict[str, int] = {}
        self._rejections: list[dict[str, Any]] = []
        self._referrals: dict[str, dict[str, KnownReferral]] = {}
        self._statuses: dict[str, dict[str, Any]] = {}
        self._assessments: dict[str, dict[str, Any]] = {}

    async def prefetch(self, payloads: Sequence[object]) -> None:
        """Look up the cases of every submission of the batch in one query (and the referrals
        of the cases assessed, in one more)."""
        await self.load(
            str(p.submission_id)
            for p in payloads
            if isinstance(p, NeedSubmitted | NeedDocumentsAdded | NeedWithdrawn | ReferralAssessed)
        )
        assessed = {
            snapshot.case_id
            for p in payloads
            if isinstance(p, ReferralAssessed)
            and (snapshot := self._by_submission.get(str(p.submission_id))) is not None
        }
        await self._load_referrals(assessed)

    async def load(self, submission_ids: Iterable[str]) -> None:
        """Look up, in one query, the cases of submissions not seen yet in this batch."""
        wanted = sorted({s for s in submission_ids if s not in self._by_submission})
        for chunk in chunks(wanted):
            rows = await self.session.execute(
                select(cases).where(cases.c.submission_id.in_(padded(chunk)))
            )
            for row in rows:
                self._by_submission[row.submission_id] = CaseSnapshot(
                    case_id=row.case_id,
                    case_reference=row.case_reference,
                    submission_id=row.submission_id,
                    fingerprint=row.fingerprint,
                    accepted_at=row.accepted_at,
                    correlation_id=row.correlation_id,
                    status=CaseStatus(row.status),
                    documents=tuple(row.documents),
                )
            for submission_id in chunk:
                self._by_submission.setdefault(submission_id, None)

    async def case_by_submission(self, submission_id: str) -> CaseSnapshot | None:
        """The case opened for this submission id, if any (cases opened in this batch included)."""
        if submission_id not in self._by_submission:
            await self.load([submission_id])
        return self._by_submission[submission_id]

    async def next_reference_number(self, counter: str) -> int:
        """The next number of a reference counter (read once per batch, locked until commit)."""
        if counter not in self._counters:
            dialect = sqlite if self.session.get_bind().dialect.name == "sqlite" else postgresql
            statement = (
                dialect.insert(reference_counters)
                .values(counter=counter, last_value=0)
                .on_conflict_do_update(
                    index_elements=["counter"],
                    set_={"last_value": reference_counters.c.last_value},
                )
                .returning(reference_counters.c.last_value)
            )
            self._counters[counter] = int((await self.session.execute(statement)).scalar_one())
        self._counters[counter] += 1
        return self._counters[counter]

    def add_case(
        self,
        *,
        need: NeedSubmitted,
        case_id: str,
        case_reference: str,
        fingerprint: str,
        correlation_id: str,
        accepted_at: datetime,
        language: str,
    ) -> None:
        """Store the case and the visitor."""
        submission_id = str(need.submission_id)
        self._new_cases.append(
            {
                "case_id": case_id,
                "case_reference": case_reference,
                "submission_id": submission_id,
                "fingerprint": fingerprint,
                "site_id": need.site_id,
                "mediator_id": need.mediator_id,
                "channel": need.channel,
                "category": need.need.category,
                "urgency": need.need.urgency,
                "documents": list(need.need.documents),
                "status": CaseStatus.OPEN.value,
                "correlation_id": correlation_id,
                "submitted_at": need.submitted_at,
                "accepted_at": accepted_at,
                "withdrawn_at": None,
                "withdrawal_reason": None,
                "closed_at": None,
            }
        )
        visitor = need.visitor
        self._new_visitors.append(
            {
                "case_id": case_id,
                "first_name": visitor.first_name,
                "last_name": visitor.last_name,
                "phone": visitor.phone,
                "email": visitor.email,
                "postal_code": visitor.postal_code,
                "preferred_language": language,
                "consent_sms": visitor.contact_consent.sms,
                "consent_email": visitor.contact_consent.email,
                "summary": need.need.summary,
            }
        )
        self._by_submission[submission_id] = CaseSnapshot(
            case_id=case_id,
            case_reference=case_reference,
            submission_id=submission_id,
            fingerprint=fingerprint,
            accepted_at=accepted_at,
            correlation_id=correlation_id,
            status=CaseStatus.OPEN,
            documents=need.need.documents,
        )

    def set_documents(self, case: CaseSnapshot, documents: tuple[str, ...]) -> None:
        """Replace the documents held for a case."""
        self._change(case, {"documents": list(documents)}, documents=documents)

    def mark_withdrawn(self, case: CaseSnapshot, *, reason: str, at: datetime) -> None:
        """The front office withdrew the need."""
        values = {
            "status": CaseStatus.WITHDRAWN.value,
            "withdrawn_at": at,
            "withdrawal_reason": reason,
        }
        self._change(case, values, status=CaseStatus.WITHDRAWN)

    def mark_closed(self, case_id: str, *, at: datetime) -> None:
        """Referrals closed the case."""
        self._updates.setdefault(case_id, {}).update(status=CaseStatus.CLOSED.value, closed_at=at)
        for submission_id, snapshot in self._by_submission.items():
            if snapshot is not None and snapshot.case_id == case_id:
                self._by_submission[submission_id] = replace(snapshot, status=CaseStatus.CLOSED)

    def record_rejection(
        self, *, message_id: str, submission_id: str, codes: list[str], at: datetime
    ) -> None:
        """Remember a refusal (codes only, no content) for `pimms trace`."""
        self._rejections.append(
            {
                # What a tool sent may hold bytes a database refuses (a NUL): stored as a digest.
                "message_id": storable_id(message_id, limit=300),
                "submission_id": storable_id(submission_id, limit=100),
                "codes": ",".join(sorted(set(codes)))[:500],
                "rejected_at": at,
            }
        )

    async def referrals_of(self, case_id: str) -> dict[str, KnownReferral]:
        """The referrals of a case by id, with the status `pimms.cases.v1` last gave each."""
        if case_id not in self._referrals:
            await self._load_referrals({case_id})
        return self._referrals[case_id]

    async def _load_referrals(self, case_ids: Iterable[str]) -> None:
        wanted = sorted({c for c in case_ids if c not in self._referrals})
        for chunk in chunks(wanted):
            for case_id in chunk:
                self._referrals[case_id] = {}
            rows = await self.session.execute(
                select(referral_statuses).where(referral_statuses.c.case_id.in_(padded(chunk)))
            )
            for row in rows:
                self._referrals[row.case_id][row.referral_id] = KnownReferral(
                    referral_id=row.referral_id,
                    case_id=row.case_id,
                    site_id=row.site_id,
                    partner_id=row.partner_id,
                    status=row.status,
                )
            for pending in self._statuses.values():
                if pending["case_id"] in chunk:
                    self._referrals[pending["case_id"]][pending["referral_id"]] = _known(pending)

    def set_referral_status(
        self,
        *,
        referral_id: str,
        case_id: str,
        site_id: str,
        partner_id: str,
        status: str,
        at: datetime,
    ) -> None:
        """Remember a referral's latest status (events of one case arrive in order)."""
        row = {
            "referral_id": referral_id,
            "case_id": case_id,
            "site_id": site_id,
            "partner_id": partner_id,
            "status": status,
            "updated_at": at,
        }
        self._statuses[referral_id] = row
        if case_id in self._referrals:
            self._referrals[case_id][referral_id] = _known(row)

    def save_assessment(
        self, *, assessment: ReferralAssessed, case_id: str, recorded_at: datetime
    ) -> None:
        """Keep the assessment of a referral, replacing any earlier one."""
        self._assessments[str(assessment.referral_id)] = {
            "referral_id": str(assessment.referral_id),
            "case_id": case_id,
            "submission_id": str(assessment.submission_id),
            "mediator_id": assessment.mediator_id,
            "rating": assessment.rating,
            "tags": list(assessment.tags),
            "comment": assessment.comment,
            "assessed_at": assessment.assessed_at,
            "recorded_at": recorded_at,
        }

    def _change(self, case: CaseSnapshot, values: dict[str, Any], **snapshot: Any) -> None:
        pending = next((row for row in self._new_cases if row["case_id"] == case.case_id), None)
        if pending is not None:
            pending.update(values)
        else:
            self._updates.setdefault(case.case_id, {}).update(values)
        self._by_submission[case.submission_id] = replace(case, **snapshot)

    async def flush(self) -> None:
        """Write everything this batch decided, a statement per kind of row."""
        session = self.session
        if self._new_cases:
            await _INSERT_CASES(session, self._new_cases)
            await _INSERT_VISITORS(session, self._new_visitors)
        for case_id, values in self._updates.items():
            await session.execute(update(cases).where(cases.c.case_id == case_id).values(**values))
        for counter, value in self._counters.items():
            await session.execute(
                update(reference_counters)
                .where(reference_counters.c.counter == counter)
                .values(last_value=value)
            )
        if self._rejections:
            await _INSERT_REJECTIONS(session, self._rejections)
        await _UPSERT_STATUSES(session, list(self._statuses.values()))
        await _UPSERT_ASSESSMENTS(session, list(self._assessments.values()))
        self._new_cases, self._new_visitors, self._rejections = [], [], []
        self._statuses, self._assessments = {}, {}
        self._updates, self._counters = {}, {}


def _known(row: dict[str, Any]) -> KnownReferral:
    return KnownReferral(
        referral_id=row["referral_id"],
        case_id=row["case_id"],
        site_id=row["site_id"],
        partner_id=row["partner_id"],
        status=row["status"],
    )
