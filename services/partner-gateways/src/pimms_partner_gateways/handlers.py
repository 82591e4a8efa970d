"""Gateway use cases: one async function each, reading like the sentences of the issue."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pimms_contracts import topics
from pimms_contracts.v1.internal import (
    IntakeCaseOpened,
    IntakeDocumentsAdded,
    PartnerDelivered,
    PartnerDeliveryFailed,
    PartnerMessageRef,
    PartnerStatusReported,
)
from pimms_contracts.v1.lifecycle import ReferralCancelled, ReferralRequested
from pimms_servicekit.logging import get_logger
from pimms_servicekit.messages import b64
from pimms_servicekit.outbox import OutboxBuffer
from pimms_servicekit.pipeline import MessageContext
from sqlalchemy.ext.asyncio import AsyncSession

from pimms_partner_gateways.adapters.base import CannotRender
from pimms_partner_gateways.adapters.registry import PartnerLink, PartnerNetwork
from pimms_partner_gateways.adapters.repository import GatewayRepository
from pimms_partner_gateways.domain.model import (
    DeliveryStatus,
    PartnerAnswer,
    Referral,
    answers_for,
    decide_cancellation,
    decide_request,
    dossier_from_case,
)

DELIVERY_HOOK = "partner_delivery"

log = get_logger("pimms.partner_gateways")


async def store_dossier(event: IntakeCaseOpened, ctx: MessageContext) -> None:
    """Intake opened a case: keep what partners need, then send the referrals that waited for it."""
    repo = GatewayRepository(ctx.session)
    if await repo.add_dossier(dossier_from_case(event), at=ctx.now()):
        ctx.log("dossier.stored", case_reference=event.case_reference)
    await ctx.replay(await ctx.unpark(key=str(event.case_id)))


async def update_documents(event: IntakeDocumentsAdded, ctx: MessageContext) -> None:
    """The visitor brought more documents: the dossier holds the whole set now."""
    repo = GatewayRepository(ctx.session)
    if await repo.set_documents(str(event.case_id), tuple(event.documents), at=ctx.now()):
        ctx.log("dossier.documents_updated", documents=list(event.documents))
    else:
        ctx.log("dossier.unknown", level="warning", case_reference=event.case_reference)


async def request_referral(
    event: ReferralRequested, ctx: MessageContext, *, partners: PartnerNetwork
) -> None:
    """Referrals routed the need to a partner: send it in the partner's format, once."""
    repo = GatewayRepository(ctx.session)
    referral = Referral(
        referral_id=str(event.referral_id), case_id=str(event.case_id), partner_id=event.partner_id
    )
    ctx.alias(referral.referral_id)
    existing = await repo.delivery(referral.referral_id)
    dossier = await repo.dossier(referral.case_id)
    decision = decide_request(existing, has_dossier=dossier is not None)
    if decision == "already_handled":
        assert existing is not None
        ctx.log(
            "referral.already_handled",
            referral_id=referral.referral_id,
            partner_id=existing.partner_id,
            delivery_status=existing.status.value,
        )
        return
    now = ctx.now()
    if decision == "wait_for_dossier":
        await repo.record(
            referral, DeliveryStatus.REQUESTED, correlation_id=ctx.correlation_id, at=now
        )
        await ctx.park(key=referral.case_id, reason="waiting for the dossier")
        return
    assert dossier is not None
    link = partners.reach(referral.partner_id)
    if isinstance(link, str):
        await _fail(ctx, repo, referral, reason=link)
        return
    try:
        payload = link.adapter.to_referral(dossier, referral)
    except CannotRender as exc:
        await _fail(ctx, repo, referral, reason=exc.reason)
        return
    _send(ctx, link, referral, payload=payload, kind="referral")
    await repo.record(referral, DeliveryStatus.SENT, correlation_id=ctx.correlation_id, at=now)
    ctx.log(
        "referral.sent_to_partner",
        referral_id=referral.referral_id,
        partner_id=referral.partner_id,
        transport=link.transport.kind,
    )


async def cancel_referral(
    event: ReferralCancelled, ctx: MessageContext, *, partners: PartnerNetwork
) -> None:
    """A referral is withdrawn: tell the partner if it has it; otherwise make sure it never does."""
    repo = GatewayRepository(ctx.session)
    existing = await repo.delivery(str(event.referral_id))
    decision = decide_cancellation(existing)
    if decision == "already_cancelled":
        ctx.log("referral.already_cancelled", referral_id=str(event.referral_id))
        return
    now = ctx.now()
    referral = (
        existing.referral
        if existing is not None
        else Referral(
            referral_id=str(event.referral_id),
            case_id=str(event.case_id),
            partner_id=event.partner_id,
        )
    )
    await repo.record(referral, DeliveryStatus.CANCELLED, correlation_id=ctx.correlation_id, at=now)
    if decision == "withdraw_unsent":
        # A referral still waiting for its dossier is parked: replaying the parking now drops it
        # (it is cancelled) and parks the case's other referrals again.
        await ctx.replay(await ctx.unpark(key=referral.case_id))
        ctx.log(
            "referral.cancelled_before_sending",
            referral_id=referral.referral_id,
            partner_id=referral.partner_id,
        )
        return
    link = partners.reach(referral.partner_id)
    if isinstance(link, str):
        ctx.log(
            "referral.cancellation_not_sent",
            level="warning",
            referral_id=referral.referral_id,
            partner_id=referral.partner_id,
            reason=link,
        )
        return
    _send(
        ctx,
        link,
        referral,
        payload=link.adapter.to_cancellation(referral, now),
        kind="cancellation",
    )
    await repo.record_cancellation_sent(referral.referral_id, at=now)
    ctx.log(
        "referral.cancellation_sent",
        referral_id=referral.referral_id,
        partner_id=referral.partner_id,
    )


async def report_partner_status(
    answer: PartnerAnswer, ctx: MessageContext, *, partner_id: str
) -> None:
    """A partner answered about one of its referrals: tell referrals, in the platform's words."""
    repo = GatewayRepository(ctx.session)
    delivery = await repo.delivery(answer.reference)
    if delivery is None or not answers_for(delivery, partner_id=partner_id):
        ctx.dead_letter(
            reason="unknown_reference",
            error=f"no referral with this reference was sent to {partner_id}",
        )
        return
    ctx.set_case(delivery.case_id, correlation_id=delivery.correlation_id)
    incoming = ctx.incoming
    ctx.emit(
        PartnerStatusReported(
            case_id=UUID(delivery.case_id),
            referral_id=UUID(delivery.referral_id),
            partner_id=partner_id,
            status=answer.status,
            outcome=answer.outcome,
            reason=answer.reason,
            missing_documents=answer.missing_documents,
            reported_at=answer.reported_at,
            received_at=ctx.now(),
            source=PartnerMessageRef(
                topic=incoming.topic,
                partition=incoming.partition,
                offset=incoming.offset,
                key_b64=b64(incoming.key),
                value_b64=b64(incoming.value),
            ),
        ),
        topic=topics.PARTNER_REPORTS,
        key=delivery.case_id,
        detail=f"{partner_id} {answer.status}",
    )
    ctx.log(
        "partner.status_reported",
        referral_id=delivery.referral_id,
        partner_id=partner_id,
        status=answer.status,
        outcome=answer.outcome,
        reason=answer.reason,
        delivery_status=delivery.status.value,
    )


async def partner_delivered(
    session: AsyncSession, follow_ups: OutboxBuffer, data: dict[str, Any], sent_at: datetime
) -> None:
    """The relay's on_sent hook: the partner's transport has the message, so it is transmitted."""
    kind = data["kind"]
    repo = GatewayRepository(session)
    if not await repo.mark_delivered(data["referral_id"], kind=kind, at=sent_at):
        return  # already recorded: the message was published again after a fault
    follow_ups.event(
        PartnerDelivered(
            case_id=UUID(data["case_id"]),
            referral_id=UUID(data["referral_id"]),
            partner_id=data["partner_id"],
            kind=kind,
            transport=data.get("transport", "kafka"),
            delivered_at=sent_at,
        ),
        topic=topics.PARTNER_REPORTS,
        key=data["case_id"],
        case_id=data["case_id"],
        correlation_id=data.get("correlation_id"),
        causation_id=data.get("causation_id"),
        detail=f"{data['partner_id']} {kind} delivered",
    )
    log.info(
        "referral.transmitted" if kind == "referral" else f"referral.{kind}_transmitted",
        case_id=data["case_id"],
        correlation_id=data.get("correlation_id"),
        referral_id=data["referral_id"],
        partner_id=data["partner_id"],
    )


def _send(
    ctx: MessageContext, link: PartnerLink, referral: Referral, *, payload: bytes, kind: str
) -> None:
    link.transport.send(
        ctx,
        key=referral.referral_id,
        payload=payload,
        event_type=f"partner.{link.partner_id}.{kind}",
        detail=f"{link.partner_id} {kind}",
        on_sent={
            "hook": DELIVERY_HOOK,
            "case_id": referral.case_id,
            "referral_id": referral.referral_id,
            "partner_id": link.partner_id,
            "kind": kind,
            "transport": link.transport.kind,
            "correlation_id": ctx.correlation_id,
            "causation_id": ctx.incoming.message_id,
        },
    )


async def _fail(
    ctx: MessageContext, repo: GatewayRepository, referral: Referral, *, reason: str
) -> None:
    now = ctx.now()
    await repo.record(
        referral,
        DeliveryStatus.FAILED,
        correlation_id=ctx.correlation_id,
        at=now,
        failure_reason=reason,
    )
    ctx.emit(
        PartnerDeliveryFailed(
            case_id=UUID(referral.case_id),
            referral_id=UUID(referral.referral_id),
            partner_id=referral.partner_id,
            reason=reason,
            failed_at=now,
        ),
        topic=topics.PARTNER_REPORTS,
        key=referral.case_id,
        detail=f"{referral.partner_id} {reason}",
    )
    ctx.log(
        "referral.delivery_failed",
        level="warning",
        referral_id=referral.referral_id,
        partner_id=referral.partner_id,
        reason=reason,
    )
