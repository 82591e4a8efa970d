"""The gateway's database access, inside the transaction of the batch (or relay) at work."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import CursorResult, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pimms_partner_gateways.adapters.tables import deliveries, dossiers
from pimms_partner_gateways.domain.model import Delivery, DeliveryStatus, Dossier, Referral

DeliveryKind = Literal["referral", "cancellation", "reminder"]


class GatewayRepository:
    """Dossiers and deliveries."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- dossiers ---

    async def add_dossier(self, dossier: Dossier, *, at: datetime) -> bool:
        """Store a dossier; False when it was already there (a replay: it is left as it is)."""
        if await self.dossier(dossier.case_id) is not None:
            return False
        await self.session.execute(
            insert(dossiers).values(
                case_id=dossier.case_id,
                case_reference=dossier.case_reference,
                site_id=dossier.site_id,
                mediator_id=dossier.mediator_id,
                submitted_at=dossier.submitted_at.isoformat(),
                category=dossier.category,
                urgency=dossier.urgency,
                summary=dossier.summary,
                documents=list(dossier.documents),
                first_name=dossier.first_name,
                last_name=dossier.last_name,
                phone=dossier.phone,
                email=dossier.email,
                consent_sms=dossier.consent_sms,
                consent_email=dossier.consent_email,
                postal_code=dossier.postal_code,
                language=dossier.language,
                stored_at=at,
                updated_at=at,
            )
        )
        return True

    async def dossier(self, case_id: str) -> Dossier | None:
        """The dossier of a case, if it has arrived."""
        row = (
            await self.session.execute(select(dossiers).where(dossiers.c.case_id == case_id))
        ).first()
        if row is None:
            return None
        return Dossier(
            case_id=row.case_id,
            case_reference=row.case_reference,
            site_id=row.site_id,
            mediator_id=row.mediator_id,
            submitted_at=datetime.fromisoformat(row.submitted_at),
            category=row.category,
            urgency=row.urgency,
            summary=row.summary,
            documents=tuple(row.documents),
            first_name=row.first_name,
            last_name=row.last_name,
            phone=row.phone,
            email=row.email,
            consent_sms=row.consent_sms,
            consent_email=row.consent_email,
            postal_code=row.postal_code,
            language=row.language,
        )

    async def set_documents(
        self, case_id: str, documents: tuple[str, ...], *, at: datetime
    ) -> bool:
        """Replace the documents of a dossier; False when the dossier is unknown."""
        result = await self.session.execute(
            update(dossiers)
            .where(dossiers.c.case_id == case_id)
            .values(documents=list(documents), updated_at=at)
        )
        return _count(result) > 0

    # --- deliveries ---

    async def delivery(self, referral_id: str) -> Delivery | None:
        """The gateway's record of a referral, if any."""
        row = (
            await self.session.execute(
                select(deliveries).where(deliveries.c.referral_id == referral_id)
            )
        ).first()
        if row is None:
            return None
        return Delivery(
            referral_id=row.referral_id,
            case_id=row.case_id,
            partner_id=row.partner_id,
            status=DeliveryStatus(row.status),
            correlation_id=row.correlation_id,
            sent_at=row.sent_at,
        )

    async def record(
        self,
        referral: Referral,
        status: DeliveryStatus,
        *,
        correlation_id: str,
        at: datetime,
        failure_reason: str | None = None,
    ) -> None:
        """Create or move a referral's delivery record to `status`, stamping when it happened."""
        stamps: dict[str, Any] = {"status": status.value, "updated_at": at}
        if status is DeliveryStatus.SENT:
            stamps["sent_at"] = at
        elif status is DeliveryStatus.CANCELLED:
            stamps["cancelled_at"] = at
        elif status is DeliveryStatus.FAILED:
            stamps.update(failed_at=at, failure_reason=failure_reason)
        result = await self.session.execute(
            update(deliveries)
            .where(deliveries.c.referral_id == referral.referral_id)
            .values(stamps)
        )
        if _count(result) == 0:
            await self.session.execute(
                insert(deliveries).values(
                    referral_id=referral.referral_id,
                    case_id=referral.case_id,
                    partner_id=referral.partner_id,
                    correlation_id=correlation_id,
                    requested_at=at,
                    **stamps,
                )
            )

    async def record_cancellation_sent(self, referral_id: str, *, at: datetime) -> None:
        """The partner's cancellation message is in the outbox."""
        await self.session.execute(
            update(deliveries)
            .where(deliveries.c.referral_id == referral_id)
            .values(cancellation_sent_at=at, updated_at=at)
        )

    async def mark_delivered(self, referral_id: str, *, kind: DeliveryKind, at: datetime) -> bool:
        """The partner's transport has the message; False if that was already recorded."""
        if kind == "reminder":
            return True  # each reminder is a message of its own
        if kind == "referral":
            statement = (
                update(deliveries)
                .where(deliveries.c.referral_id == referral_id, deliveries.c.delivered_at.is_(None))
                .values(delivered_at=at, updated_at=at)
            )
            first = _count(await self.session.execute(statement)) > 0
            if first:  # a referral cancelled meanwhile stays cancelled
                await self.session.execute(
                    update(deliveries)
                    .where(
                        deliveries.c.referral_id == referral_id,
                        deliveries.c.status == DeliveryStatus.SENT.value,
                    )
                    .values(status=DeliveryStatus.DELIVERED.value)
                )
            return first
        statement = (  # the cancellation
            update(deliveries)
            .where(
                deliveries.c.referral_id == referral_id,
                deliveries.c.cancellation_delivered_at.is_(None),
            )
            .values(cancellation_delivered_at=at, updated_at=at)
        )
        return _count(await self.session.execute(statement)) > 0


def _count(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)
