"""Referrals use cases: one async function each, reading like the issue's sentences.

Each receives its event and the batch's unit of work (`uow.repos` holds the batch's cases and
referrals, prefetched). Every lifecycle event carries `occurred_at = uow.now()`: the time the
platform learned of the change, also for statuses a partner reports (the partner's own
`reported_at` is its clock, not ours; keeping one clock keeps the events of a case in order).
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
    ReferralEvent,
    ReferralUnroutable,
)
from pimms_servicekit.routing import Handlers
from pimms_servicekit.unit_of_work import UnitOfWork

from pimms_referrals.adapters.repository import HistorySource, ReferralsRepos
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

handles: Handlers[ReferralsRepos] = Handlers()
Uow = UnitOfWork[ReferralsRepos]

# What partner-gateways tells about one referral of a case.
GatewayEvent = PartnerDelivered | PartnerDeliveryFailed | PartnerStatusReported

# Who caused a status, in the referral's history.
BY_ROUTING: HistorySource = "routing"
BY_GATEWAY: HistorySource = "gateway"
BY_PARTNER: HistorySource = "partner"
BY_WITHDRAWAL: HistorySource = "withdrawal"


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
    )
    repo.add_case(case)
    uow.alias(case.case_reference)
    opened = CaseOpened(**_about(case, now), category=case.category, urgency=case.urgency)
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
        repo.add_referral(referral, source=BY_ROUTING)
        uow.alias(referral.referral_id)
        _tell_referral(uow, case, referral, StatusChange(status="requested"), at=now)
        uow.log(
            "referral.requested", partner_id=referral.partner_id, referral_id=referral.referral_id
        )


@handles(IntakeDocumentsAdded)
async def add_documents(event: IntakeDocumentsAdded, uow: Uow) -> None:
    """The visitor brought more documents: record the set now held."""
    case = await _known_case(uow, str(event.case_id), what="documents added")
    if case is None:
        return
    uow.repos.set_documents(case, event.documents)
    # Later issue (prefecture hold) goes HERE: referrals held on_hold for missing documents are
    # released once `event.documents` covers the checklist. Releasing one that was never
    # transmitted (transmitted_at is None) is a platform-only move the state machine does not
    # allow yet (on_hold -> requested is "backward"): add it to domain/lifecycle.py then.
    uow.log("case.documents_recorded", added=list(event.added), held=len(event.documents))


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
    cancel = StatusChange(status="cancelled", reason=event.reason)
    for referral in await uow.repos.referrals_of(case.case_id):
        if referral.final:
            continue
        result = apply_status(referral, cancel, at=now)
        if isinstance(result, Applied):
            _record(uow, case, result, source=BY_WITHDRAWAL, at=now)
    _close(uow, case, outcome="withdrawn", reason=event.reason, at=now)


@handles(PartnerDelivered)
async def record_delivery(event: PartnerDelivered, uow: Uow) -> None:
    """The partner's transport took a message: a referral is now transmitted."""
    found = await _known_referral(uow, event)
    if found is None:
        return
    case, referral = found
    if event.kind != "referral":
        # Cancellations and reminders change nothing in the lifecycle; the SLA timers of a later
        # issue will note reminders here.
        uow.log(
            f"referral.{event.kind}_delivered",
            partner_id=referral.partner_id,
            referral_id=referral.referral_id,
            status=referral.status,
        )
        return
    now = uow.now()
    result = apply_status(referral, StatusChange(status="transmitted"), at=now)
    if isinstance(result, Applied):
        _record(uow, case, result, source=BY_GATEWAY, at=now)
    else:  # the partner already answered, or the referral is final: nothing to add
        uow.log(
            "referral.delivery_noted",
            partner_id=referral.partner_id,
            referral_id=referral.referral_id,
            status=referral.status,
        )


@handles(PartnerDeliveryFailed)
async def record_delivery_failure(event: PartnerDeliveryFailed, uow: Uow) -> None:
    """The referral could not be delivered: it fails for good, unless it is already final."""
    found = await _known_referral(uow, event)
    if found is None:
        return
    case, referral = found
    now = uow.now()
    failed = StatusChange(status="delivery_failed", reason=event.reason[:200])
    result = None if referral.final else apply_status(referral, failed, at=now)
    if not isinstance(result, Applied):
        uow.log(
            "referral.delivery_failure_ignored",
            partner_id=referral.partner_id,
            referral_id=referral.referral_id,
            status=referral.status,
        )
        return
    _record(uow, case, result, source=BY_GATEWAY, at=now)
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
    result = apply_partner_status(referral, change, at=now)
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
    _record(uow, case, result, source=BY_PARTNER, at=now)
    if result.referral.final:
        await _close_if_done(uow, case, at=now)


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


def _record(uow: Uow, case: Case, result: Applied, *, source: HistorySource, at: datetime) -> None:
    """Save a referral's new status with its history line, and publish the matching event."""
    referral = result.referral
    uow.repos.save_status(referral, source=source)
    _tell_referral(uow, case, referral, result.change, at=at)
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
