"""Referrals use cases: one async function each, reading like the issue's sentences.

Every lifecycle event carries `occurred_at = ctx.now()`: the time the platform learned of the
change, also for statuses a partner reports (the partner's own `reported_at` is its clock, not
ours; keeping one clock keeps the events of a case in order).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from pimms_contracts import topics
from pimms_contracts.base import Event
from pimms_contracts.v1.common import WithdrawalReason
from pimms_contracts.v1.internal import (
    IntakeCaseOpened,
    IntakeCaseWithdrawn,
    IntakeDocumentsAdded,
    PartnerDelivered,
    PartnerDeliveryFailed,
    PartnerMessageRef,
    PartnerReportRefused,
    PartnerStatusReported,
)
from pimms_contracts.v1.lifecycle import (
    REFERRAL_EVENT_BY_STATUS,
    CaseClosed,
    CaseOpened,
    CaseOutcome,
    ReferralEvent,
    ReferralUnroutable,
)
from pimms_servicekit.messages import Incoming, unb64
from pimms_servicekit.pipeline import MessageContext

from pimms_referrals.adapters.directory import DirectoryFile
from pimms_referrals.adapters.repository import ReferralsRepository
from pimms_referrals.domain.cases import Case
from pimms_referrals.domain.closure import closing_outcome
from pimms_referrals.domain.lifecycle import (
    Applied,
    Impossible,
    IncompleteReport,
    Referral,
    StatusChange,
    Unchanged,
    apply_partner_status,
    apply_status,
    new_referral,
    reported_change,
)
from pimms_referrals.domain.routing import route_need

# Who caused a status, in the referral's history.
BY_ROUTING = "routing"
BY_GATEWAY = "gateway"
BY_PARTNER = "partner"
BY_WITHDRAWAL = "withdrawal"


async def open_case(
    event: IntakeCaseOpened, ctx: MessageContext, *, directory: DirectoryFile
) -> None:
    """Intake opened a case: keep it, route it to every partner that serves it, and say so."""
    repo = ReferralsRepository(ctx.session)
    case_id = str(event.case_id)
    if await repo.case(case_id) is not None:
        ctx.log("case.already_routed", case_reference=event.case_reference)
        return
    now = ctx.now()
    routing = route_need(
        directory.current(), category=event.need.category, postal_code=event.visitor.postal_code
    )
    # Only routing facts are kept: no name, contact, postal code or summary (partner-gateways and
    # notifications keep what they need of those from the same event).
    case = Case(
        case_id=case_id,
        case_reference=event.case_reference,
        site_id=event.site_id,
        mediator_id=event.mediator_id,
        category=event.need.category,
        urgency=event.need.urgency,
        departement=routing.departement,
        documents=event.need.documents,
        submitted_at=event.submitted_at,
        opened_at=now,
    )
    await repo.add_case(case)
    ctx.alias(case.case_reference)
    _tell(
        ctx,
        case,
        CaseOpened(**_about(case, now), category=case.category, urgency=case.urgency),
    )
    if routing.unroutable:
        # The case stays open: the mediator handles it by hand and withdraws it when done.
        _tell(
            ctx,
            case,
            ReferralUnroutable(
                **_about(case, now), category=case.category, departement=routing.departement
            ),
        )
        ctx.log("case.unroutable", category=case.category, departement=routing.departement)
        return
    for position, partner in enumerate(routing.partners):
        referral = new_referral(
            referral_id=str(uuid4()),
            case_id=case_id,
            partner_id=partner.partner_id,
            position=position,
            ack_within=partner.ack_within,
            resolve_within=partner.resolve_within,
            at=now,
        )
        # Later issue (prefecture hold) goes HERE: a prefecture-69 referral whose case lacks
        # documents of the checklist (specs/partners.md) is stored on_hold with the missing list
        # and announced as referral.on_hold instead of referral.requested, so that the gateway
        # does not send it; `add_documents` releases it.
        await repo.add_referral(referral, source=BY_ROUTING)
        ctx.alias(referral.referral_id)
        _tell(ctx, case, _referral_event(case, referral, StatusChange(status="requested"), now))
        ctx.log(
            "referral.requested", partner_id=referral.partner_id, referral_id=referral.referral_id
        )


async def add_documents(event: IntakeDocumentsAdded, ctx: MessageContext) -> None:
    """The visitor brought more documents: record the set now held."""
    repo = ReferralsRepository(ctx.session)
    case = await repo.case(str(event.case_id), lock=True)
    if case is None:
        _unknown_case(ctx, "documents added")
        return
    await repo.set_documents(case.case_id, event.documents)
    # Later issue (prefecture hold) goes HERE: referrals held on_hold for missing documents are
    # released once `event.documents` covers the checklist. Releasing one that was never
    # transmitted (transmitted_at is None) is a platform-only move the state machine does not
    # allow yet (on_hold -> requested is "backward"): add it to domain/lifecycle.py then.
    ctx.log("case.documents_recorded", added=list(event.added), held=len(event.documents))


async def withdraw_case(event: IntakeCaseWithdrawn, ctx: MessageContext) -> None:
    """The need was withdrawn: cancel every unfinished referral, then close the case."""
    repo = ReferralsRepository(ctx.session)
    case = await repo.case(str(event.case_id), lock=True)
    if case is None:
        _unknown_case(ctx, "withdrawal")
        return
    if case.closed:
        ctx.log("case.withdrawal_ignored", outcome=case.outcome, reason=event.reason)
        return
    now = ctx.now()
    cancel = StatusChange(status="cancelled", reason=event.reason)
    for referral in await repo.referrals_of(case.case_id):
        if referral.final:
            continue
        result = apply_status(referral, cancel, at=now)
        if isinstance(result, Applied):
            await _record(ctx, repo, case, result, source=BY_WITHDRAWAL, at=now)
    await _close(ctx, repo, case, outcome="withdrawn", reason=event.reason, at=now)


async def record_delivery(event: PartnerDelivered, ctx: MessageContext) -> None:
    """The partner's transport took a message: a referral is now transmitted."""
    repo = ReferralsRepository(ctx.session)
    found = await _case_and_referral(
        repo, case_id=event.case_id, referral_id=event.referral_id, partner_id=event.partner_id
    )
    if found is None:
        ctx.dead_letter(
            reason="unknown_reference",
            error=(
                f"delivery of a {event.kind} to {event.partner_id} for referral "
                f"{event.referral_id}, which referrals does not know for this partner"
            ),
        )
        return
    case, referral = found
    if event.kind != "referral":
        # Cancellations and reminders change nothing in the lifecycle; the SLA timers of a later
        # issue will note reminders here.
        ctx.log(
            f"referral.{event.kind}_delivered",
            partner_id=referral.partner_id,
            referral_id=referral.referral_id,
            status=referral.status,
        )
        return
    now = ctx.now()
    result = apply_status(referral, StatusChange(status="transmitted"), at=now)
    if isinstance(result, Applied):
        await _record(ctx, repo, case, result, source=BY_GATEWAY, at=now)
    else:  # the partner already answered, or the referral is final: nothing to add
        ctx.log(
            "referral.delivery_noted",
            partner_id=referral.partner_id,
            referral_id=referral.referral_id,
            status=referral.status,
        )


async def record_delivery_failure(event: PartnerDeliveryFailed, ctx: MessageContext) -> None:
    """The referral could not be delivered: it fails for good, unless it is already final."""
    repo = ReferralsRepository(ctx.session)
    found = await _case_and_referral(
        repo, case_id=event.case_id, referral_id=event.referral_id, partner_id=event.partner_id
    )
    if found is None:
        ctx.dead_letter(
            reason="unknown_reference",
            error=(
                f"delivery failure to {event.partner_id} for referral {event.referral_id}, "
                "which referrals does not know for this partner"
            ),
        )
        return
    case, referral = found
    now = ctx.now()
    failed = StatusChange(status="delivery_failed", reason=event.reason[:200])
    result = None if referral.final else apply_status(referral, failed, at=now)
    if not isinstance(result, Applied):
        ctx.log(
            "referral.delivery_failure_ignored",
            partner_id=referral.partner_id,
            referral_id=referral.referral_id,
            status=referral.status,
        )
        return
    await _record(ctx, repo, case, result, source=BY_GATEWAY, at=now)
    await _close_if_done(ctx, repo, case, at=now)


async def apply_partner_report(event: PartnerStatusReported, ctx: MessageContext) -> None:
    """A partner reports a status: apply it if the lifecycle allows, else refuse and tell."""
    repo = ReferralsRepository(ctx.session)
    original = partner_message(event.source)
    found = await _case_and_referral(
        repo, case_id=event.case_id, referral_id=event.referral_id, partner_id=event.partner_id
    )
    if found is None:
        ctx.dead_letter(
            reason="unknown_reference",
            error=(
                f"{event.partner_id} reported {event.status} for referral {event.referral_id}, "
                "which was never sent to this partner"
            ),
            original=original,
        )
        return
    case, referral = found
    try:
        change = reported_change(
            status=event.status,
            outcome=event.outcome,
            reason=event.reason,
            missing_documents=event.missing_documents,
        )
    except IncompleteReport as exc:  # the gateway's translation is wrong, not the partner
        ctx.dead_letter(reason="schema_invalid", error=str(exc))
        return
    now = ctx.now()
    result = apply_partner_status(referral, change, at=now)
    if isinstance(result, Unchanged):
        ctx.log(
            "referral.report_repeated",
            partner_id=referral.partner_id,
            referral_id=referral.referral_id,
            status=referral.status,
        )
        return
    if isinstance(result, Impossible):
        ctx.dead_letter(reason="impossible_transition", error=result.explanation, original=original)
        ctx.emit(
            PartnerReportRefused(
                case_id=event.case_id,
                case_reference=case.case_reference,
                site_id=case.site_id,
                referral_id=event.referral_id,
                partner_id=event.partner_id,
                reported_status=event.status,
                current_status=referral.status,
                occurred_at=now,
            ),
            topic=topics.REFERRAL_ALERTS,
            key=case.case_id,
            detail=result.explanation,
        )
        ctx.log(
            "referral.report_refused",
            level="warning",
            partner_id=referral.partner_id,
            referral_id=referral.referral_id,
            reported_status=event.status,
            current_status=referral.status,
        )
        return
    await _record(ctx, repo, case, result, source=BY_PARTNER, at=now)
    if result.referral.final:
        await _close_if_done(ctx, repo, case, at=now)


def partner_message(source: PartnerMessageRef) -> Incoming:
    """The partner's original record, rebuilt from its copy, to dead-letter it as it came."""
    return Incoming(
        topic=source.topic,
        partition=source.partition,
        offset=source.offset,
        key=unb64(source.key_b64),
        value=unb64(source.value_b64),
        headers=(),  # partners send no headers (specs/partners.md)
        timestamp_ms=0,
    )


async def _case_and_referral(
    repo: ReferralsRepository, *, case_id: UUID, referral_id: UUID, partner_id: str
) -> tuple[Case, Referral] | None:
    """The case (locked: one writer per case) and its referral to this partner, if they exist."""
    case = await repo.case(str(case_id), lock=True)
    if case is None:
        return None
    referral = await repo.referral(str(referral_id))
    if referral is None or referral.case_id != case.case_id or referral.partner_id != partner_id:
        return None
    return case, referral


async def _record(
    ctx: MessageContext,
    repo: ReferralsRepository,
    case: Case,
    result: Applied,
    *,
    source: str,
    at: datetime,
) -> None:
    """Save a referral's new status with its history line, and publish the matching event."""
    referral = result.referral
    await repo.save_status(referral, source=source)
    _tell(ctx, case, _referral_event(case, referral, result.change, at))
    ctx.log(
        f"referral.{referral.status}",
        partner_id=referral.partner_id,
        referral_id=referral.referral_id,
        code=referral.outcome or referral.reason,
    )


async def _close_if_done(
    ctx: MessageContext, repo: ReferralsRepository, case: Case, *, at: datetime
) -> None:
    """Close the case once every referral of it is final."""
    if case.closed:
        return
    outcome = closing_outcome(await repo.referrals_of(case.case_id))
    if outcome is not None:
        await _close(ctx, repo, case, outcome=outcome, reason=None, at=at)


async def _close(
    ctx: MessageContext,
    repo: ReferralsRepository,
    case: Case,
    *,
    outcome: CaseOutcome,
    reason: WithdrawalReason | None,
    at: datetime,
) -> None:
    """Close the case and say so, once: a closed case never closes again."""
    if not await repo.close_case(case.case_id, outcome=outcome, reason=reason, at=at):
        return
    _tell(ctx, case, CaseClosed(**_about(case, at), outcome=outcome, reason=reason))
    ctx.log("case.closed", case_reference=case.case_reference, outcome=outcome, reason=reason)


def _unknown_case(ctx: MessageContext, what: str) -> None:
    ctx.dead_letter(
        reason="unknown_case", error=f"{what} for case {ctx.case_id}, which was never opened here"
    )


def _about(case: Case, at: datetime) -> dict[str, Any]:
    """The fields every lifecycle event carries."""
    return {
        "case_id": UUID(case.case_id),
        "case_reference": case.case_reference,
        "site_id": case.site_id,
        "occurred_at": at,
    }


def _referral_event(
    case: Case, referral: Referral, change: StatusChange, at: datetime
) -> ReferralEvent:
    """The public event of a referral's status, with its outcome or reason code."""
    fields: dict[str, Any] = {
        **_about(case, at),
        "referral_id": UUID(referral.referral_id),
        "partner_id": referral.partner_id,
    }
    if change.status == "completed":
        fields["outcome"] = change.outcome
    elif change.status in {"rejected", "cancelled", "delivery_failed"}:
        fields["reason"] = change.reason
    elif change.status == "on_hold":
        fields["reason"] = change.reason
        fields["missing_documents"] = change.missing_documents
    return REFERRAL_EVENT_BY_STATUS[change.status](**fields)


def _tell(ctx: MessageContext, case: Case, event: Event) -> None:
    """Publish a lifecycle event on pimms.cases.v1, keyed by case id (one case stays ordered)."""
    status = getattr(event, "status", None)
    partner = getattr(event, "partner_id", None)
    ctx.emit(
        event,
        topic=topics.CASES,
        key=case.case_id,
        detail=f"{partner}: {status}" if partner else status,
    )
