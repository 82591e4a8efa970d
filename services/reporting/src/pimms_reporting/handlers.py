"""Reporting use cases: each event the review counts becomes a fact (codes and times only)."""

from __future__ import annotations

from pimms_contracts.v1.assessments import AssessmentRecorded
from pimms_contracts.v1.lifecycle import (
    REFERRAL_EVENT_BY_STATUS,
    ReferralEscalated,
    ReferralEvent,
    ReferralReminded,
)
from pimms_contracts.v1.notifications import NotificationFailed, NotificationSent
from pimms_servicekit.routing import Handlers
from pimms_servicekit.unit_of_work import UnitOfWork

from pimms_reporting.adapters.decoders import OpenedCase
from pimms_reporting.adapters.repository import ReportingRepos
from pimms_reporting.domain.facts import (
    AssessmentFact,
    CaseFacts,
    NotificationFact,
    ReferralChange,
    SlaSignal,
    apply_change,
)

Uow = UnitOfWork[ReportingRepos]
handles: Handlers[ReportingRepos] = Handlers()


@handles(OpenedCase)
async def count_need(opened: OpenedCase, uow: Uow) -> None:
    """A case opened: a need of this category, at this site, through this channel."""
    event = opened.event
    uow.repos.put_case(
        CaseFacts(
            case_id=str(event.case_id),
            site_id=event.site_id,
            category=event.category,
            channel=opened.channel,
            opened_at=event.occurred_at,
        )
    )


@handles(*REFERRAL_EVENT_BY_STATUS.values())
async def follow_referral(event: ReferralEvent, uow: Uow) -> None:
    """A referral moved: fold the move into its facts."""
    repo = uow.repos
    referral_id = str(event.referral_id)
    change = ReferralChange(
        referral_id=referral_id,
        case_id=str(event.case_id),
        site_id=event.site_id,
        partner_id=event.partner_id,
        status=str(type(event).model_fields["status"].default),
        at=event.occurred_at,
        reason=getattr(event, "reason", None),
        outcome=getattr(event, "outcome", None),
    )
    repo.put_referral(apply_change(await repo.referral(referral_id), change))


@handles(ReferralReminded, ReferralEscalated)
async def count_sla_step(event: ReferralReminded | ReferralEscalated, uow: Uow) -> None:
    """A silent partner was reminded, or the mediator was told to step in."""
    uow.repos.add_signal(
        SlaSignal(
            signal_id=uow.message_id,
            referral_id=str(event.referral_id),
            case_id=str(event.case_id),
            site_id=event.site_id,
            partner_id=event.partner_id,
            kind="reminder" if isinstance(event, ReferralReminded) else "escalation",
            at=event.occurred_at,
        )
    )


@handles(NotificationSent, NotificationFailed)
async def count_notification(event: NotificationSent | NotificationFailed, uow: Uow) -> None:
    """A message went out to a visitor or a mediator, or could not."""
    sent = isinstance(event, NotificationSent)
    uow.repos.put_notification(
        NotificationFact(
            notification_id=str(event.notification_id),
            case_id=str(event.case_id),
            referral_id=str(event.referral_id) if event.referral_id else None,
            audience=event.audience,
            channel=event.channel,
            delivered=sent,
            reason=None if isinstance(event, NotificationSent) else event.reason[:60],
            at=event.sent_at if isinstance(event, NotificationSent) else event.failed_at,
        )
    )


@handles(AssessmentRecorded)
async def keep_assessment(event: AssessmentRecorded, uow: Uow) -> None:
    """A mediator assessed a referral: it replaces any earlier assessment of it."""
    uow.repos.put_assessment(
        AssessmentFact(
            referral_id=str(event.referral_id),
            case_id=str(event.case_id),
            site_id=event.site_id,
            partner_id=event.partner_id,
            rating=event.rating,
            tags=event.tags,
            comment=event.comment,
            assessed_at=event.assessed_at,
        )
    )
