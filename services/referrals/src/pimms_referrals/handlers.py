"""Referrals use cases: one async function each, reading like the issue's sentences.

Each receives its event and the batch's unit of work (`uow.repos` holds the batch's cases and
referrals, prefetched). Every lifecycle event carries `occurred_at = uow.now()`: the time the
platform learned of the change, also for statuses a partner reports (the partner's own
`reported_at` is its clock, not ours; keeping one clock keeps the events of a case in order).

Every move goes through domain/lifecycle.py and is stored with its history line (time, actor,
source event: the ce_id of the message handled, or the key of the timer that fired). The SLA
ladder's timers are rows the repository keeps equal to `due_timers` of each referral;
`fire_due_timers` is the scheduler's pass over the due ones.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from pimms_contracts import topics
from pimms_contracts.v1.common import WithdrawalReason
from pimms_contracts.v1.internal import (
    IntakeCaseOpened,
    IntakeCaseWithdrawn,
    IntakeDocumentsAdded,
    PartnerDelivered,
    PartnerDeliveryFailed,
    PartnerReportRefused,
    PartnerStatusReported,
)
from pimms_contracts.v1.lifecycle import (
    REFERRAL_EVENT_BY_STATUS,
    CaseClosed,
    CaseOpened,
    CaseOutcome,
    LifecycleEvent,
    ReferralDocumentsForwarded,
    ReferralEscalated,
    ReferralEvent,
    ReferralReminded,
    ReferralUnroutable,
)
from pimms_servicekit.routing import Handlers
from pimms_servicekit.unit_of_work import UnitOfWork

from pimms_referrals.adapters.repository import ReferralsRepos
from pimms_referrals.domain import lifecycle
from pimms_referrals.domain.cases import Case
from pimms_referrals.domain.closure import closing_outcome
from pimms_referrals.domain.lifecycle import (
    Applied,
    Forwarded,
    Impossible,
    IncompleteReport,
    Referral,
    StatusChange,
    Unchanged,
    bring_documents,
    open_referral,
    report_from_partner,
    reported_change,
    withdraw,
)
from pimms_referrals.domain.routing import route_need
from pimms_referrals.domain.sla import Escalate, Expire, Nothing, Remind, fire_timer

handles: Handlers[ReferralsRepos] = Handlers()
Uow = UnitOfWork[ReferralsRepos]

# What partner-gateways tells about one referral of a case.
GatewayEvent = PartnerDelivered | PartnerDeliveryFailed | PartnerStatusReported


@handles(IntakeCaseOpened)
async def open_case(event: IntakeCaseOpened, uow: Uow) -> None:
    """Intake opened a case: keep it, route it to every partner that serves it, and say so."""
    repo = uow.repos
    case_id = str(event.case_id)
    if await repo.case(case_id) is not None:
        uow.log("case.already_routed", case_reference=event.case_reference)
        return
    now = uow.now()
    routing = route_need(
        repo.partners(), category=event.need.category, postal_code=event.visitor.postal_code
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
        correlation_id=uow.correlation_id,
    )
    repo.add_case(case)
    uow.alias(case.case_reference)
    opened = CaseOpened(
        **_about(case, now), category=case.category, urgency=case.urgency, channel=event.channel
    )
    _tell(uow, case, opened, detail=opened.status)
    if routing.unroutable:
        # The case stays open: the mediator handles it by hand and withdraws it when done.
        unroutable = ReferralUnroutable(
            **_about(case, now), category=case.category, departement=routing.departement
        )
        _tell(uow, case, unroutable, detail=unroutable.status)
        uow.log("case.unroutable", category=case.category, departement=routing.departement)
        return
    for position, partner in enumerate(routing.partners):
        # A file lacking documents of its partner's checklist (prefecture-69) is held: announced
        # as referral.on_hold with the missing list, not referral.requested, so nothing is sent.
        opened_referral = open_referral(
            referral_id=str(uuid4()),
            case_id=case_id,
            partner_id=partner.partner_id,
            position=position,
            ack_within=partner.ack_within,
            resolve_within=partner.resolve_within,
            documents=case.documents,
            at=now,
            source_event=uow.message_id,
            checklist=partner.required_documents,
        )
        referral = opened_referral.referral
        repo.add_referral(referral, transition=opened_referral.transition)
        uow.alias(referral.referral_id)
        _tell_referral(uow, case, referral, opened_referral.change, at=now)
        uow.log(
            f"referral.{opened_referral.transition.to_stage}",
            partner_id=referral.partner_id,
            referral_id=referral.referral_id,
            missing_documents=list(referral.missing_documents) or None,
        )


@handles(IntakeDocumentsAdded)
async def add_documents(event: IntakeDocumentsAdded, uow: Uow) -> None:
    """The visitor brought documents: release held files they complete, send on those asked for."""
    case = await _known_case(uow, str(event.case_id), what="documents added")
    if case is None:
        return
    case = uow.repos.set_documents(case, event.documents)
    uow.log("case.documents_recorded", added=list(event.added), held=len(event.documents))
    now = uow.now()
    directory = uow.repos.partners()
    for referral in await uow.repos.referrals_of(case.case_id):
        if referral.final:
            continue
        partner = directory.get(referral.partner_id)  # its checklist as the directory says now
        result = bring_documents(
            referral,
            added=tuple(event.added),
            held=tuple(event.documents),
            at=now,
            source_event=uow.message_id,
            checklist=tuple(partner.required_documents) if partner is not None else None,
        )
        if isinstance(result, Applied):
            # released: referral.requested (the gateway sends it now); else the new missing list
            _record(uow, case, result)
        elif isinstance(result, Forwarded):
            _forward(uow, case, result, at=now)


@handles(IntakeCaseWithdrawn)
async def withdraw_case(event: IntakeCaseWithdrawn, uow: Uow) -> None:
    """The need was withdrawn: cancel every unfinished referral, then close the case."""
    case = await _known_case(uow, str(event.case_id), what="withdrawal")
    if case is None:
        return
    if case.closed:
        uow.log("case.withdrawal_ignored", outcome=case.outcome, reason=event.reason)
        return
    now = uow.now()
    for referral in await uow.repos.referrals_of(case.case_id):
        result = withdraw(referral, reason=event.reason, at=now, source_event=uow.message_id)
        if isinstance(result, Applied):
            _record(uow, case, result)
    _close(uow, case, outcome="withdrawn", reason=event.reason, at=now)


@handles(PartnerDelivered)
async def record_delivery(event: PartnerDelivered, uow: Uow) -> None:
    """The partner's transport took a message: a referral is now transmitted."""
    found = await _known_referral(uow, event)
    if found is None:
        return
    case, referral = found
    if event.kind != "referral":
        # Cancellations and reminders change nothing in the lifecycle (the scheduler counted the
        # reminder when it asked for it).
        uow.log(
            f"referral.{event.kind}_delivered",
            partner_id=referral.partner_id,
            referral_id=referral.referral_id,
            status=referral.status,
        )
        return
    result = lifecycle.record_transmission(referral, at=uow.now(), source_event=uow.message_id)
    if isinstance(result, Applied):
        _record(uow, case, result)  # the SLA ladder starts: its timers are stored with it
    else:  # the partner already answered, or the referral is final: nothing to add
        uow.log(
            "referral.delivery_noted",
            partner_id=referral.partner_id,
            referral_id=referral.referral_id,
            status=referral.status,
        )


@handles(PartnerDeliveryFailed)
async def record_delivery_failure(event: PartnerDeliveryFailed, uow: Uow) -> None:
    """The referral could not be delivered: it fails for good if it was not delivered yet.

    The gateway's failures (`no_adapter`, a webhook refusing it) come while the referral is
    `requested`. Once the partner has it (transmitted, or it answered) a failure — of a reminder,
    say — does not undo that: it is logged and changes nothing.
    """
    found = await _known_referral(uow, event)
    if found is None:
        return
    case, referral = found
    now = uow.now()
    result = lifecycle.record_delivery_failure(
        referral, reason=event.reason[:200], at=now, source_event=uow.message_id
    )
    if not isinstance(result, Applied):
        uow.log(
            "referral.delivery_failure_ignored",
            partner_id=referral.partner_id,
            referral_id=referral.referral_id,
            status=referral.status,
        )
        return
    _record(uow, case, result)
    await _close_if_done(uow, case, at=now)


@handles(PartnerStatusReported)
async def apply_partner_report(event: PartnerStatusReported, uow: Uow) -> None:
    """A partner reports a status: apply it if the lifecycle allows, else refuse and tell."""
    found = await _known_referral(uow, event)
    if found is None:
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
        uow.dead_letter(reason="schema_invalid", error=str(exc))
        return
    now = uow.now()
    # Any valid report acknowledges the referral: its reminder and escalation timers go.
    result = report_from_partner(referral, change, at=now, source_event=uow.message_id)
    if isinstance(result, Unchanged):
        uow.log(
            "referral.report_repeated",
            partner_id=referral.partner_id,
            referral_id=referral.referral_id,
            status=referral.status,
        )
        return
    if isinstance(result, Impossible):
        # Referrals only says why; partner-gateways, which read the partner's record, puts that
        # record in the partner's dead letters when it reads this refusal (ce_causationid is the
        # id of the report refused).
        uow.emit(
            refusal(event, case=case, referral=referral, at=now),
            topic=topics.REFERRAL_ALERTS,
            key=case.case_id,
            detail=result.explanation,
        )
        uow.log(
            "referral.report_refused",
            level="warning",
            partner_id=referral.partner_id,
            referral_id=referral.referral_id,
            reported_status=event.status,
            current_status=referral.status,
        )
        return
    _record(uow, case, result)
    if result.referral.final:
        await _close_if_done(uow, case, at=now)


async def fire_due_timers(uow: Uow, *, limit: int) -> int:
    """The SLA ladder's due steps: remind the partner, escalate, expire; return the rows fired.

    Each fired row goes, and the referral's remaining timers are rewritten with it, in this unit
    of work: a restart loses none and fires none twice. A step the partner made pointless by
    acting (or a final referral) fires nothing.
    """
    repo = uow.repos
    now = uow.now()
    due = await repo.claim_due_timers(now=now, limit=limit)
    for case_id, timer in due:
        case = await repo.case(case_id)
        referral = repo.find_referral(case_id, timer.referral_id)
        repo.timer_fired(timer)
        if case is None or referral is None:  # the foreign key makes this impossible
            continue
        uow.about_case(case_id, correlation_id=case.correlation_id)
        fired = fire_timer(referral, timer, at=now)
        if isinstance(fired, Remind):
            repo.save_referral(fired.referral)
            reminded = ReferralReminded(
                **_about_referral(case, fired.referral, now),
                reminder=fired.number,
                due_at=fired.due_at,
            )
            _tell(uow, case, reminded, detail=f"{referral.partner_id}: reminder {fired.number}")
        elif isinstance(fired, Escalate):
            repo.save_referral(fired.referral)
            escalated = ReferralEscalated(
                **_about_referral(case, fired.referral, now), due_at=fired.due_at
            )
            _tell(uow, case, escalated, detail=f"{referral.partner_id}: escalated")
        elif isinstance(fired, Expire):
            _record(uow, case, fired.applied)
            await _close_if_done(uow, case, at=now)
        if isinstance(fired, Nothing):
            uow.log(
                "timer.nothing_to_do",
                kind=timer.kind,
                referral_id=referral.referral_id,
                reason=fired.reason,
            )
        else:
            uow.log(
                f"timer.{timer.kind}_fired",
                partner_id=referral.partner_id,
                referral_id=referral.referral_id,
                due_at=timer.due_at.isoformat(),
            )
    return len(due)


def _forward(uow: Uow, case: Case, result: Forwarded, *, at: datetime) -> None:
    """Documents the partner asked for were brought: the gateway sends them on."""
    referral = result.referral
    uow.repos.save_referral(referral, transition=result.transition)
    forwarded = ReferralDocumentsForwarded(
        **_about(case, at),
        referral_id=UUID(referral.referral_id),
        partner_id=referral.partner_id,
        documents=result.documents,
        missing_documents=referral.missing_documents,
    )
    _tell(uow, case, forwarded, detail=f"{referral.partner_id}: documents forwarded")
    uow.log(
        "referral.documents_forwarded",
        partner_id=referral.partner_id,
        referral_id=referral.referral_id,
        documents=list(result.documents),
        still_missing=list(referral.missing_documents) or None,
    )


def refusal(
    event: PartnerStatusReported, *, case: Case, referral: Referral, at: datetime
) -> PartnerReportRefused:
    """What the mediator and partner-gateways learn of a report the lifecycle forbids."""
    return PartnerReportRefused(
        case_id=event.case_id,
        case_reference=case.case_reference,
        site_id=case.site_id,
        referral_id=event.referral_id,
        partner_id=event.partner_id,
        reported_status=event.status,
        current_status=referral.status,
        reason="impossible_transition",
        occurred_at=at,
        report_id=event.report_id,
    )


def unknown_reference(event: GatewayEvent) -> str:
    """Why a gateway event naming a referral referrals does not know cannot apply."""
    match event:
        case PartnerDelivered():
            return (
                f"delivery of a {event.kind} to {event.partner_id} for referral "
                f"{event.referral_id}, which referrals does not know for this partner"
            )
        case PartnerDeliveryFailed():
            return (
                f"delivery failure to {event.partner_id} for referral {event.referral_id}, "
                "which referrals does not know for this partner"
            )
        case PartnerStatusReported():
            return (
                f"{event.partner_id} reported {event.status} for referral {event.referral_id}, "
                "which was never sent to this partner"
            )


async def _known_case(uow: Uow, case_id: str, *, what: str) -> Case | None:
    """The case, or None when it was never opened here (the message is dead-lettered)."""
    case = await uow.repos.case(case_id)
    if case is None:
        uow.dead_letter(
            reason="unknown_case",
            error=f"{what} for case {uow.case_id}, which was never opened here",
        )
    return case


async def _known_referral(uow: Uow, event: GatewayEvent) -> tuple[Case, Referral] | None:
    """The case and its referral to this partner, or None when referrals does not know them.

    An unknown reference is dead-lettered where referrals read it (the gateway's event).
    """
    repo = uow.repos
    case = await repo.case(str(event.case_id))
    referral = (
        None
        if case is None
        else await repo.referral_of(
            case.case_id, referral_id=str(event.referral_id), partner_id=event.partner_id
        )
    )
    if case is None or referral is None:
        uow.dead_letter(reason="unknown_reference", error=unknown_reference(event))
        return None
    return case, referral


def _record(uow: Uow, case: Case, result: Applied) -> None:
    """Save a referral's new status with its history line, and publish the matching event."""
    referral = result.referral
    uow.repos.save_referral(referral, transition=result.transition)
    _tell_referral(uow, case, referral, result.change, at=result.transition.at)
    uow.log(
        f"referral.{referral.status}",
        partner_id=referral.partner_id,
        referral_id=referral.referral_id,
        code=referral.outcome or referral.reason,
    )


async def _close_if_done(uow: Uow, case: Case, *, at: datetime) -> None:
    """Close the case once every referral of it is final."""
    if case.closed:
        return
    outcome = closing_outcome(await uow.repos.referrals_of(case.case_id))
    if outcome is not None:
        _close(uow, case, outcome=outcome, reason=None, at=at)


def _close(
    uow: Uow,
    case: Case,
    *,
    outcome: CaseOutcome,
    reason: WithdrawalReason | None,
    at: datetime,
) -> None:
    """Close the case and say so, once: a closed case never closes again."""
    if uow.repos.close_case(case, outcome=outcome, reason=reason, at=at) is None:
        return
    closed = CaseClosed(**_about(case, at), outcome=outcome, reason=reason)
    _tell(uow, case, closed, detail=closed.status)
    uow.log("case.closed", case_reference=case.case_reference, outcome=outcome, reason=reason)


def _about(case: Case, at: datetime) -> dict[str, Any]:
    """The fields every lifecycle event carries."""
    return {
        "case_id": UUID(case.case_id),
        "case_reference": case.case_reference,
        "site_id": case.site_id,
        "occurred_at": at,
    }


def _about_referral(case: Case, referral: Referral, at: datetime) -> dict[str, Any]:
    """The fields of a signal about a referral that leaves its status as it is."""
    return {
        **_about(case, at),
        "referral_id": UUID(referral.referral_id),
        "partner_id": referral.partner_id,
        "status": referral.status,
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


def _tell_referral(
    uow: Uow, case: Case, referral: Referral, change: StatusChange, *, at: datetime
) -> None:
    """Publish the event of a referral's new status."""
    event = _referral_event(case, referral, change, at)
    _tell(uow, case, event, detail=f"{referral.partner_id}: {change.status}")


def _tell(uow: Uow, case: Case, event: LifecycleEvent, *, detail: str) -> None:
    """Publish a lifecycle event on pimms.cases.v1, keyed by case id (one case stays ordered)."""
    uow.emit(event, topic=topics.CASES, key=case.case_id, detail=detail)
