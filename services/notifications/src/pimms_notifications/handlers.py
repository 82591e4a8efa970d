"""Notifications use cases: one async function each, reading like the contract's sentences.

A message to send is an effect: its rendered text goes into the outbox with the batch's commit, and
the dispatcher of its channel delivers it afterwards. Whether it was sent or failed is known only
then: the hooks below record it and announce it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar
from uuid import UUID

from pimms_contracts import topics
from pimms_contracts.v1.internal import IntakeCaseOpened
from pimms_contracts.v1.notifications import (
    Audience,
    NotificationChannel,
    NotificationFailed,
    NotificationSent,
)
from pimms_servicekit.hooks import Hook, Hooks, Outcome
from pimms_servicekit.routing import Handlers
from pimms_servicekit.unit_of_work import UnitOfWork

from pimms_notifications.adapters.destinations import encode_message
from pimms_notifications.adapters.repository import (
    NotificationRecord,
    NotificationsRepos,
    NotificationStatus,
)
from pimms_notifications.channels import OutgoingMessage
from pimms_notifications.domain.contacts import ContactProfile, visitor_channel
from pimms_notifications.domain.notices import (
    TOLD_EVENTS,
    Notice,
    Told,
    case_opened_notice,
    notification_id,
    visitor_unreachable_notice,
    who_is_told,
)
from pimms_notifications.domain.wording import (
    MEDIATOR_LANGUAGE,
    template_variables,
    visitor_language,
)

WAITING_FOR_PROFILE = "waiting for the contact profile"
NO_REACHABLE_CHANNEL = "no_reachable_channel"
CHANNEL_ERROR = "channel_error"

Uow = UnitOfWork[NotificationsRepos]
handles: Handlers[NotificationsRepos] = Handlers()
hooks: Hooks[NotificationsRepos] = Hooks()


class NotificationHook(Hook):
    """What the outcome of a message's delivery is recorded and announced with (no text)."""

    name: ClassVar[str] = "notification"
    notification_id: UUID
    case_id: UUID
    referral_id: UUID | None
    audience: Audience
    channel: NotificationChannel
    template: str
    language: str


@handles(IntakeCaseOpened)
async def store_contact_profile(event: IntakeCaseOpened, uow: Uow) -> None:
    """A case opened: keep how to reach its people, tell the visitor, then what was waiting."""
    repo = uow.repos
    case_id = str(event.case_id)
    profile = await repo.add_profile(event, at=uow.now())
    if profile is not None:
        uow.log(
            "profile.stored",
            case_reference=event.case_reference,
            reachable_by_sms=profile.consent_sms and profile.phone is not None,
            reachable_by_email=profile.consent_email and profile.email is not None,
            language=profile.language,
        )
        _tell(uow, profile, (case_opened_notice(),))
    else:
        uow.log("profile.already_known", case_reference=event.case_reference)
    await _release_waiting(uow, case_id)


@handles(*TOLD_EVENTS)
async def notify_case_event(event: Told, uow: Uow) -> None:
    """A case or referral moved: tell the visitor and the mediator what the contract says."""
    notices = who_is_told(event)
    if not notices:
        return
    case_id = str(event.case_id)
    repo = uow.repos
    profile = await repo.profile(case_id)
    if profile is None:
        await uow.park(key=case_id, reason=WAITING_FOR_PROFILE)
        repo.note_parked(case_id)
        return
    # Another instance may have parked a message of this case while the profile was being
    # stored (no cross-topic ordering): it goes first, in order.
    await _release_waiting(uow, case_id)
    _tell(uow, await repo.profile(case_id) or profile, notices)


@hooks.delivered(NotificationHook)
async def notification_sent(data: NotificationHook, outcome: Outcome, uow: Uow) -> None:
    """The channel has the message: record it and announce it (never the text)."""
    uow.repos.set_status(data.notification_id, status="sent")
    uow.emit(
        NotificationSent(
            notification_id=data.notification_id,
            case_id=data.case_id,
            referral_id=data.referral_id,
            audience=data.audience,
            channel=data.channel,
            template=data.template,
            language=data.language,
            sent_at=outcome.at,
        ),
        topic=topics.NOTIFICATIONS,
        key=str(data.case_id),
        detail=f"{data.audience} {data.channel} {data.template}",
    )
    uow.log(
        "notification.sent",
        audience=data.audience,
        channel=data.channel,
        template=data.template,
        language=data.language,
        notification_id=str(data.notification_id),
        attempts=outcome.attempts,
        receipt=outcome.receipt,
    )


@hooks.failed(NotificationHook)
async def notification_failed(data: NotificationHook, outcome: Outcome, uow: Uow) -> None:
    """The channel refused the message or stayed down through every retry: say so."""
    uow.repos.set_status(data.notification_id, status="failed", reason=CHANNEL_ERROR)
    uow.emit(
        NotificationFailed(
            notification_id=data.notification_id,
            case_id=data.case_id,
            referral_id=data.referral_id,
            audience=data.audience,
            channel=data.channel,
            template=data.template,
            language=data.language,
            failed_at=outcome.at,
            reason=CHANNEL_ERROR,
        ),
        topic=topics.NOTIFICATIONS,
        key=str(data.case_id),
        detail=f"{data.audience} {data.channel} {data.template}: {CHANNEL_ERROR}",
    )
    uow.log(
        "notification.failed",
        level="warning",
        audience=data.audience,
        channel=data.channel,
        template=data.template,
        notification_id=str(data.notification_id),
        reason=CHANNEL_ERROR,
        error=outcome.reason,
        attempts=outcome.attempts,
    )


async def _release_waiting(uow: Uow, case_id: str) -> None:
    """Process now the messages of this case that waited for its profile, if any."""
    if uow.repos.take_waiting(case_id):
        await uow.release(key=case_id)


def _tell(uow: Uow, profile: ContactProfile, notices: tuple[Notice, ...]) -> None:
    for notice in notices:
        if notice.audience == "mediator":
            _tell_mediator(uow, profile, notice)
            continue
        reach = visitor_channel(profile)
        if reach is not None:
            _dispatch(uow, profile, notice, channel=reach.channel, to=reach.address)
            continue
        profile = _visitor_unreachable(uow, profile, notice)


def _visitor_unreachable(uow: Uow, profile: ContactProfile, notice: Notice) -> ContactProfile:
    """Nothing goes to the visitor; the mediator hears of it once per case."""
    repo = uow.repos
    language = visitor_language(profile.language)
    if profile.unreachable_told:
        repo.record(
            _record(
                uow,
                profile,
                notice,
                channel=None,
                language=language,
                status="skipped",
                reason=NO_REACHABLE_CHANNEL,
            )
        )
        uow.log("notification.skipped", audience="visitor", template=notice.template)
        return profile
    record = _record(
        uow,
        profile,
        notice,
        channel=None,
        language=language,
        status="failed",
        reason=NO_REACHABLE_CHANNEL,
    )
    uow.emit(
        NotificationFailed(
            notification_id=record.notification_id,
            case_id=UUID(profile.case_id),
            referral_id=notice.referral_id,
            audience="visitor",
            channel=None,
            template=notice.template,
            language=language,
            failed_at=record.at,
            reason=NO_REACHABLE_CHANNEL,
        ),
        topic=topics.NOTIFICATIONS,
        key=profile.case_id,
        detail=f"visitor {notice.template}: {NO_REACHABLE_CHANNEL}",
    )
    repo.record(record)
    repo.mark_unreachable_told(profile.case_id, at=record.at)
    uow.log(
        "notification.failed",
        level="warning",
        audience="visitor",
        template=notice.template,
        reason=NO_REACHABLE_CHANNEL,
    )
    told = replace(profile, unreachable_told=True)
    mediator_notice = visitor_unreachable_notice(
        failed_template=notice.template, referral_id=notice.referral_id
    )
    _tell_mediator(uow, told, mediator_notice)
    return told


def _tell_mediator(uow: Uow, profile: ContactProfile, notice: Notice) -> None:
    """Mediator notifications always go to the mediator's inbox."""
    _dispatch(uow, profile, notice, channel="mediator_inbox", to=profile.mediator_id)


def _dispatch(
    uow: Uow,
    profile: ContactProfile,
    notice: Notice,
    *,
    channel: NotificationChannel,
    to: str,
) -> None:
    """Render, and hand the message to `channel`'s dispatcher: it leaves after the commit."""
    repo = uow.repos
    visitor = notice.audience == "visitor"
    wanted = visitor_language(profile.language) if visitor else MEDIATOR_LANGUAGE
    variables = template_variables(
        notice,
        language=wanted,
        case_reference=profile.case_reference,
        first_name=profile.first_name if visitor else None,
        partner_name=repo.partner_name(notice.facts.partner_id),
    )
    language, text = repo.templates.render(
        template=notice.template, channel=channel, language=wanted, variables=variables
    )
    record = _record(uow, profile, notice, channel=channel, language=language, status="pending")
    message = OutgoingMessage(
        notification_id=record.notification_id,
        to=to,
        site_id=profile.site_id,
        subject=text.subject,
        body=text.body,
        sent_at=record.at,
        language=language,
    )
    uow.dispatch(
        destination=channel,
        idempotency_key=str(record.notification_id),
        payload=encode_message(message),
        detail=f"{notice.audience} {channel} {notice.template}",
        hook=NotificationHook(
            notification_id=record.notification_id,
            case_id=UUID(profile.case_id),
            referral_id=notice.referral_id,
            audience=notice.audience,
            channel=channel,
            template=notice.template,
            language=language,
        ),
    )
    repo.record(record)  # its outcome is logged by the hooks: one line per notification


def _record(
    uow: Uow,
    profile: ContactProfile,
    notice: Notice,
    *,
    channel: NotificationChannel | None,
    language: str,
    status: NotificationStatus,
    reason: str | None = None,
) -> NotificationRecord:
    return NotificationRecord(
        notification_id=notification_id(
            message_id=uow.message_id, audience=notice.audience, template=notice.template
        ),
        case_id=profile.case_id,
        referral_id=notice.referral_id,
        audience=notice.audience,
        channel=channel,
        template=notice.template,
        language=language,
        at=uow.now(),
        status=status,
        reason=reason,
    )
