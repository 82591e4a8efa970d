"""Gateway use cases: one async function each, reading like the sentences of the issue."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID, uuid4

from pimms_contracts import topics
from pimms_contracts.v1.internal import (
    IntakeCaseOpened,
    IntakeDocumentsAdded,
    PartnerDelivered,
    PartnerDeliveryFailed,
    PartnerStatusReported,
)
from pimms_contracts.v1.lifecycle import (
    ReferralCancelled,
    ReferralDocumentsForwarded,
    ReferralReminded,
    ReferralRequested,
)
from pimms_servicekit.dead_letters import Original
from pimms_servicekit.hooks import Hook, Hooks, Outcome
from pimms_servicekit.parking import ExpiredParking
from pimms_servicekit.routing import Handlers
from pimms_servicekit.unit_of_work import UnitOfWork

from pimms_partner_gateways.adapters.base import CannotRender
from pimms_partner_gateways.adapters.registry import PartnerLink
from pimms_partner_gateways.adapters.repository import GatewayRepos
from pimms_partner_gateways.domain.model import (
    Delivery,
    DeliveryStatus,
    PartnerAnswer,
    ReadAnswer,
    Referral,
    answers_for,
    decide_cancellation,
    decide_follow_up,
    decide_request,
    dossier_from_case,
    with_documents,
)
from pimms_partner_gateways.transports.base import MessageKind, PartnerMessage, TransportKind
from pimms_partner_gateways.transports.kafka_responses import PartnerAnswerReceived
from pimms_partner_gateways.transports.refusals import ReportRefused

Uow = UnitOfWork[GatewayRepos]

handles: Handlers[GatewayRepos] = Handlers()
hooks: Hooks[GatewayRepos] = Hooks()


class DeliveryHook(Hook):
    """What to record once a partner's transport has (or could not take) a message."""

    name: ClassVar[str] = "partner_delivery"
    case_id: str
    referral_id: str
    partner_id: str
    kind: MessageKind
    transport: TransportKind


@handles(IntakeCaseOpened)
async def store_dossier(event: IntakeCaseOpened, uow: Uow) -> None:
    """Intake opened a case: keep what partners need, then send the referrals that waited for it."""
    case_id = str(event.case_id)
    if await uow.repos.add_dossier(dossier_from_case(event), at=uow.now()):
        uow.log("dossier.stored", case_reference=event.case_reference)
    if await uow.repos.has_waiting_referrals(case_id):
        await uow.release(key=case_id)


@handles(IntakeDocumentsAdded)
async def update_documents(event: IntakeDocumentsAdded, uow: Uow) -> None:
    """The visitor brought more documents: the dossier holds the whole set now."""
    if await uow.repos.set_documents(str(event.case_id), tuple(event.documents), at=uow.now()):
        uow.log("dossier.documents_updated", documents=list(event.documents))
        # A checklist partner's referral may have arrived first and waits for these documents.
        await uow.release(key=str(event.case_id))
    else:
        uow.log("dossier.unknown", level="warning", case_reference=event.case_reference)


@handles(ReferralRequested)
async def request_referral(event: ReferralRequested, uow: Uow) -> None:
    """Referrals routed the need to a partner: send it in the partner's format, once."""
    repo = uow.repos
    referral = Referral(
        referral_id=str(event.referral_id), case_id=str(event.case_id), partner_id=event.partner_id
    )
    uow.alias(referral.referral_id)
    existing = await repo.delivery(referral.referral_id)
    dossier = await repo.dossier(referral.case_id)
    partner = repo.partners.directory.get(referral.partner_id)
    required = partner.required_documents if partner is not None else ()
    lacking = dossier is not None and any(d not in dossier.documents for d in required)
    decision = decide_request(existing, has_dossier=dossier is not None, lacks_documents=lacking)
    if decision == "already_handled":
        assert existing is not None
        uow.log(
            "referral.already_handled",
            referral_id=referral.referral_id,
            partner_id=existing.partner_id,
            delivery_status=existing.status.value,
        )
        return
    now = uow.now()
    if decision == "wait_for_dossier":
        await repo.record(
            referral, DeliveryStatus.REQUESTED, correlation_id=uow.correlation_id, at=now
        )
        await uow.park(key=referral.case_id, reason="waiting for the dossier")
        return
    if decision == "wait_for_documents":
        await repo.record(
            referral, DeliveryStatus.REQUESTED, correlation_id=uow.correlation_id, at=now
        )
        await uow.park(key=referral.case_id, reason="waiting for the documents")
        return
    assert dossier is not None
    link = repo.partners.reach(referral.partner_id)
    if isinstance(link, str):
        await _fail(uow, referral, reason=link)
        return
    try:
        payload = link.adapter.to_referral(dossier, referral)
    except CannotRender as exc:
        await _fail(uow, referral, reason=exc.reason)
        return
    _send(uow, link, referral, payload=payload, kind="referral")
    await repo.record(referral, DeliveryStatus.SENT, correlation_id=uow.correlation_id, at=now)
    uow.log(
        "referral.sent_to_partner",
        referral_id=referral.referral_id,
        partner_id=referral.partner_id,
        transport=link.transport.kind,
    )


@handles(ReferralCancelled)
async def cancel_referral(event: ReferralCancelled, uow: Uow) -> None:
    """A referral is withdrawn: tell the partner if it has it; otherwise make sure it never does."""
    repo = uow.repos
    existing = await repo.delivery(str(event.referral_id))
    decision = decide_cancellation(existing)
    if decision == "already_cancelled":
        uow.log("referral.already_cancelled", referral_id=str(event.referral_id))
        return
    now = uow.now()
    referral = (
        existing.referral
        if existing is not None
        else Referral(
            referral_id=str(event.referral_id),
            case_id=str(event.case_id),
            partner_id=event.partner_id,
        )
    )
    await repo.record(referral, DeliveryStatus.CANCELLED, correlation_id=uow.correlation_id, at=now)
    if decision == "withdraw_unsent":
        # A referral still waiting for its dossier is parked: releasing the parking now drops it
        # (it is cancelled) and parks the case's other referrals again.
        await uow.release(key=referral.case_id)
        uow.log(
            "referral.cancelled_before_sending",
            referral_id=referral.referral_id,
            partner_id=referral.partner_id,
        )
        return
    link = repo.partners.reach(referral.partner_id)
    if isinstance(link, str):
        uow.log(
            "referral.cancellation_not_sent",
            level="warning",
            referral_id=referral.referral_id,
            partner_id=referral.partner_id,
            reason=link,
        )
        return
    payload = link.adapter.to_cancellation(referral, now)
    _send(uow, link, referral, payload=payload, kind="cancellation")
    repo.record_cancellation_sent(referral.referral_id, at=now)
    uow.log(
        "referral.cancellation_sent",
        referral_id=referral.referral_id,
        partner_id=referral.partner_id,
    )


@handles(ReferralReminded)
async def remind_partner(event: ReferralReminded, uow: Uow) -> None:
    """No acknowledgement in time: the partner gets its reminder, in its format and transport."""
    repo, referral_id = uow.repos, str(event.referral_id)
    delivery = await repo.delivery(referral_id)
    decision = decide_follow_up(delivery, partner_id=event.partner_id, reminder=event.reminder)
    if decision != "send":
        uow.log(
            "referral.reminder_not_sent",
            level="info" if decision == "already_sent" else "warning",
            referral_id=referral_id,
            partner_id=event.partner_id,
            reminder=event.reminder,
            why=decision,
        )
        return
    assert delivery is not None
    link = repo.partners.reach(delivery.partner_id)
    dossier = await repo.dossier(delivery.case_id)
    if isinstance(link, str) or dossier is None:
        uow.log(
            "referral.reminder_not_sent",
            level="warning",
            referral_id=referral_id,
            partner_id=event.partner_id,
            reminder=event.reminder,
            why=link if isinstance(link, str) else "no_dossier",
        )
        return
    payload = link.adapter.to_reminder(dossier, delivery.referral, number=event.reminder)
    _send(uow, link, delivery.referral, payload=payload, kind="reminder", number=event.reminder)
    repo.record_reminder_sent(referral_id, number=event.reminder, at=uow.now())
    uow.log(
        "referral.reminder_sent",
        referral_id=referral_id,
        partner_id=delivery.partner_id,
        reminder=event.reminder,
        transport=link.transport.kind,
    )


@handles(ReferralDocumentsForwarded)
async def forward_documents(event: ReferralDocumentsForwarded, uow: Uow) -> None:
    """Documents the partner asked for were brought: it gets its file again, with them listed."""
    repo, referral_id = uow.repos, str(event.referral_id)
    delivery = await repo.delivery(referral_id)
    decision = decide_follow_up(delivery, partner_id=event.partner_id)
    dossier = await repo.dossier(str(event.case_id))
    link = repo.partners.reach(event.partner_id)
    if decision != "send" or dossier is None or isinstance(link, str):
        why = decision if decision != "send" else (link if isinstance(link, str) else "no_dossier")
        uow.log(
            "referral.documents_not_forwarded",
            level="warning",
            referral_id=referral_id,
            partner_id=event.partner_id,
            why=why,
        )
        return
    assert delivery is not None
    now = uow.now()
    updated = with_documents(dossier, tuple(event.documents))
    if updated is not dossier:
        await repo.set_documents(dossier.case_id, updated.documents, at=now)
    try:
        payload = link.adapter.to_referral(updated, delivery.referral)
    except CannotRender as exc:
        uow.log(
            "referral.documents_not_forwarded",
            level="warning",
            referral_id=referral_id,
            partner_id=event.partner_id,
            why=exc.reason,
        )
        return
    # The same referral again (a revision numbered by its document count): the partner
    # deduplicates by reference and reads the new list; no second "delivered" is reported.
    revision = len(updated.documents)
    _send(uow, link, delivery.referral, payload=payload, kind="referral", number=revision)
    uow.log(
        "referral.documents_forwarded",
        referral_id=referral_id,
        partner_id=event.partner_id,
        documents=list(event.documents),
        missing_documents=list(event.missing_documents),
    )


@handles(PartnerAnswerReceived)
async def report_partner_status(received: PartnerAnswerReceived, uow: Uow) -> None:
    """A partner answered on its Kafka topic: tell referrals, or dead-letter an unknown one."""
    applied = await apply_answer(
        uow,
        partner_id=received.partner_id,
        read=ReadAnswer(answer=received.answer, unknown_fields=received.unknown_fields),
        original=received.original,
    )
    if applied == "unknown_reference":
        uow.dead_letter(
            reason="unknown_reference",
            error=f"no referral with this reference was sent to {received.partner_id}",
        )


Applied = Literal["applied", "unknown_reference"]


async def apply_answer(
    uow: Uow, *, partner_id: str, read: ReadAnswer, original: Original
) -> Applied:
    """A partner's answer (any transport): tell referrals, in the platform's words, and keep the
    partner's original to dead-letter it if referrals refuses the report.

    Field names the partner added are logged once per partner (names only, tolerant reader).
    """
    repo, answer = uow.repos, read.answer
    new_names = repo.unknown_fields.first_seen(partner_id=partner_id, names=read.unknown_fields)
    if new_names:
        uow.log("partner.unknown_fields", partner_id=partner_id, fields=sorted(new_names))
    delivery = await repo.delivery(answer.reference)
    if delivery is None or not answers_for(delivery, partner_id=partner_id):
        return "unknown_reference"
    uow.about_case(delivery.case_id, correlation_id=delivery.correlation_id)
    now = uow.now()
    report_id = uuid4()
    uow.emit(
        _status_reported(answer, delivery, report_id=report_id, now=now),
        topic=topics.PARTNER_REPORTS,
        key=delivery.case_id,
        detail=f"{partner_id} {answer.status}",
        event_id=str(report_id),  # the report's ce_id is its id: older refusals name it so
    )
    repo.keep_report(
        report_id=str(report_id),
        referral_id=delivery.referral_id,
        partner_id=partner_id,
        original=original,
        at=now,
    )
    uow.log(
        "partner.status_reported",
        referral_id=delivery.referral_id,
        partner_id=partner_id,
        status=answer.status,
        outcome=answer.outcome,
        reason=answer.reason,
        delivery_status=delivery.status.value,
    )
    return "applied"


def _status_reported(
    answer: PartnerAnswer, delivery: Delivery, *, report_id: UUID, now: datetime
) -> PartnerStatusReported:
    return PartnerStatusReported(
        case_id=UUID(delivery.case_id),
        referral_id=UUID(delivery.referral_id),
        partner_id=delivery.partner_id,
        status=answer.status,
        outcome=answer.outcome,
        reason=answer.reason,
        missing_documents=answer.missing_documents,
        reported_at=answer.reported_at,
        received_at=now,
        report_id=report_id,
    )


@handles(ReportRefused)
async def dead_letter_refused_report(refused: ReportRefused, uow: Uow) -> None:
    """Referrals could not apply a partner's report: its original record goes to dead letters."""
    event = refused.event
    report = await uow.repos.report(refused.report_id) if refused.report_id else None
    if report is None or report.dead_lettered:
        uow.log(
            "partner.refused_report_not_dead_lettered",
            level="warning",
            referral_id=str(event.referral_id),
            partner_id=event.partner_id,
            why="already dead-lettered" if report is not None else "unknown report",
        )
        return
    uow.dead_letter(
        reason=event.reason,
        error=(
            f"{event.partner_id} reported {event.reported_status} but referral "
            f"{event.referral_id} is {event.current_status}"
        ),
        original=report.original,
    )
    uow.repos.report_dead_lettered(report, at=uow.now())


@hooks.before_delivered(DeliveryHook)
async def partner_round_delivered(items: list[tuple[DeliveryHook, Outcome]], uow: Uow) -> None:
    """A relay round's deliveries are recorded together; each hook below then says its own."""
    await uow.repos.mark_all_delivered([(d.referral_id, d.kind, o.at) for d, o in items])


@hooks.delivered(DeliveryHook)
async def partner_delivered(data: DeliveryHook, outcome: Outcome, uow: Uow) -> None:
    """The partner's transport has the message (Kafka acked it): it is transmitted."""
    if not await uow.repos.mark_delivered(data.referral_id, kind=data.kind, at=outcome.at):
        return  # already recorded: the message was published again after a fault
    uow.emit(
        PartnerDelivered(
            case_id=UUID(data.case_id),
            referral_id=UUID(data.referral_id),
            partner_id=data.partner_id,
            kind=data.kind,
            transport=data.transport,
            delivered_at=outcome.at,
        ),
        topic=topics.PARTNER_REPORTS,
        key=data.case_id,
        detail=f"{data.partner_id} {data.kind} delivered",
    )
    uow.log(
        "referral.transmitted" if data.kind == "referral" else f"referral.{data.kind}_transmitted",
        referral_id=data.referral_id,
        partner_id=data.partner_id,
    )


@hooks.failed(DeliveryHook)
async def partner_delivery_failed(data: DeliveryHook, outcome: Outcome, uow: Uow) -> None:
    """The partner's dispatcher gave up: a referral is reported failed, a cancellation logged."""
    reason = outcome.reason or "delivery_failed"
    if data.kind != "referral" or not await uow.repos.mark_failed(
        data.referral_id, reason=reason, at=outcome.at
    ):
        uow.log(
            f"referral.{data.kind}_not_delivered",
            level="warning",
            referral_id=data.referral_id,
            partner_id=data.partner_id,
            reason=reason,
        )
        return
    _report_failure(uow, data.case_id, data.referral_id, data.partner_id, reason=reason)


def _send(
    uow: Uow,
    link: PartnerLink,
    referral: Referral,
    *,
    payload: bytes,
    kind: MessageKind,
    number: int = 0,
) -> None:
    link.transport.send(
        uow,
        PartnerMessage(
            partner_id=link.partner_id,
            kind=kind,
            key=referral.referral_id,
            payload=payload,
            number=number,
        ),
        hook=DeliveryHook(
            case_id=referral.case_id,
            referral_id=referral.referral_id,
            partner_id=link.partner_id,
            kind=kind,
            transport=link.transport.kind,
        ),
    )


PARKED_TOO_LONG = "parked_too_long"


async def parked_too_long(expired: ExpiredParking, uow: Uow) -> None:
    """A referral waited for its dossier (or its documents) past the bound (housekeeping has
    dead-lettered it, reason `parked_too_long`): its delivery fails, so the mediator is told
    (referrals turns `gateway.delivery_failed` into `referral.delivery_failed`, which notifications
    says to the mediator). Several parked messages of one case: the first fails them all."""
    case_id = expired.case_id or expired.park_key
    for delivery in await uow.repos.waiting_deliveries(case_id):
        uow.about_case(case_id, correlation_id=delivery.correlation_id)
        referral = Referral(
            referral_id=delivery.referral_id, case_id=case_id, partner_id=delivery.partner_id
        )
        await _fail(uow, referral, reason=PARKED_TOO_LONG)


async def _fail(uow: Uow, referral: Referral, *, reason: str) -> None:
    await uow.repos.record(
        referral,
        DeliveryStatus.FAILED,
        correlation_id=uow.correlation_id,
        at=uow.now(),
        failure_reason=reason,
    )
    _report_failure(uow, referral.case_id, referral.referral_id, referral.partner_id, reason=reason)


def _report_failure(
    uow: Uow, case_id: str, referral_id: str, partner_id: str, *, reason: str
) -> None:
    uow.emit(
        PartnerDeliveryFailed(
            case_id=UUID(case_id),
            referral_id=UUID(referral_id),
            partner_id=partner_id,
            reason=reason,
            failed_at=uow.now(),
        ),
        topic=topics.PARTNER_REPORTS,
        key=case_id,
        detail=f"{partner_id} {reason}",
    )
    uow.log(
        "referral.delivery_failed",
        level="warning",
        referral_id=referral_id,
        partner_id=partner_id,
        reason=reason,
    )
