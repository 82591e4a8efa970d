"""Intake's database access, inside the transaction of the batch being processed."""

from __future__ import annotations

from datetime import datetime

from pimms_contracts.v1.frontoffice import NeedSubmitted
from sqlalchemy import insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from pimms_intake.adapters.tables import cases, reference_counters, rejections, visitors
from pimms_intake.domain.cases import CaseSnapshot, CaseStatus


class IntakeRepository:
    """Cases, visitors, reference counters and rejections."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def case_by_submission(self, submission_id: str) -> CaseSnapshot | None:
        """The case opened for this submission id, if any."""
        row = (
            await self.session.execute(select(cases).where(cases.c.submission_id == submission_id))
        ).first()
        if row is None:
            return None
        return CaseSnapshot(
            case_id=row.case_id,
            case_reference=row.case_reference,
            submission_id=row.submission_id,
            fingerprint=row.fingerprint,
            accepted_at=row.accepted_at,
            correlation_id=row.correlation_id,
            status=CaseStatus(row.status),
            documents=tuple(row.documents),
        )

    async def next_reference_number(self, counter: str) -> int:
        """The next number of a reference counter, atomically (one upsert)."""
        dialect = sqlite if self.session.get_bind().dialect.name == "sqlite" else postgresql
        statement = (
            dialect.insert(reference_counters)
            .values(counter=counter, last_value=1)
            .on_conflict_do_update(
                index_elements=["counter"],
                set_={"last_value": reference_counters.c.last_value + 1},
            )
            .returning(reference_counters.c.last_value)
        )
        return int((await self.session.execute(statement)).scalar_one())

    async def add_case(
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
        await self.session.execute(
            insert(cases).values(
                case_id=case_id,
                case_reference=case_reference,
                submission_id=str(need.submission_id),
                fingerprint=fingerprint,
                site_id=need.site_id,
                mediator_id=need.mediator_id,
                channel=need.channel,
                category=need.need.category,
                urgency=need.need.urgency,
                documents=list(need.need.documents),
                status=CaseStatus.OPEN.value,
                correlation_id=correlation_id,
                submitted_at=need.submitted_at,
                accepted_at=accepted_at,
            )
        )
        visitor = need.visitor
        await self.session.execute(
            insert(visitors).values(
                case_id=case_id,
                first_name=visitor.first_name,
                last_name=visitor.last_name,
                phone=visitor.phone,
                email=visitor.email,
                postal_code=visitor.postal_code,
                preferred_language=language,
                consent_sms=visitor.contact_consent.sms,
                consent_email=visitor.contact_consent.email,
                summary=need.need.summary,
            )
        )

    async def set_documents(self, case_id: str, documents: tuple[str, ...]) -> None:
        """Replace the documents held for a case."""
        await self.session.execute(
            update(cases).where(cases.c.case_id == case_id).values(documents=list(documents))
        )

    async def mark_withdrawn(self, case_id: str, *, reason: str, at: datetime) -> None:
        """The front office withdrew the need."""
        await self.session.execute(
            update(cases)
            .where(cases.c.case_id == case_id)
            .values(status=CaseStatus.WITHDRAWN.value, withdrawn_at=at, withdrawal_reason=reason)
        )

    async def mark_closed(self, case_id: str, *, at: datetime) -> bool:
        """The case closed; False when intake does not know it."""
        result = await self.session.execute(
            update(cases)
            .where(cases.c.case_id == case_id, cases.c.closed_at.is_(None))
            .values(status=CaseStatus.CLOSED.value, closed_at=at)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def record_rejection(
        self, *, message_id: str, submission_id: str, codes: list[str], at: datetime
    ) -> None:
        """Remember a refusal (codes only, no content) for `pimms trace`."""
        await self.session.execute(
            insert(rejections).values(
                message_id=message_id[:300],
                submission_id=submission_id[:100],
                codes=",".join(sorted(set(codes)))[:500],
                rejected_at=at,
            )
        )
