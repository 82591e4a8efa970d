"""Notifications use cases: one async function each, reading like the contract's sentences."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from uuid import UUID

from pimms_contracts import topics
from pimms_contracts.partners.directory import PartnerDirectory
from pimms_contracts.v1.internal import IntakeCaseOpened
from pimms_contracts.v1.notifications import (
    NotificationChannel,
    NotificationFailed,
    NotificationSent,
)
from pimms_servicekit.pipeline import MessageContext

from pimms_notifications.adapters.repository import (
    NotificationRecord,
    NotificationsRepository,
    NotificationStatus,
)
from pimms_notifications.adapters.templates import TemplateLibrary
from pimms_notifications.channels import Channel, OutgoingMessage
from pimms_notifications.domain.contacts import ContactProfile, visitor_channel
from pimms_notifications.domain.notices import (
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


@dataclass(frozen=True)
class Outlets:
    """What messages are made of and sent through: templates, channels, partner names."""

    templates: TemplateLibrary
    channels: Mapping[NotificationChannel, Channel]
    directory: PartnerDirectory

    def partner_name(self, partner_id: str | None) -> str | None:
        """The operator's name ("EDF", "La Poste"), never its id; None when unknown."""
        partner = self.directory.get(partner_id) if partner_id else None
        return partner.operator if partner else None


async def store_contact_profile(
    event: IntakeCaseOpened, ctx: MessageContext, *, outlets: Outlets
) -> None:
    """A case opened: keep how to reach its people, tell the visitor, then what was waiting."""
    repo = NotificationsRepository(ctx.session)
    case_id = str(event.case_id)
    profile = await repo.add_profile(event, at=ctx.now())
    if profile is not None:
        ctx.log(
            "profile.stored",
            case_reference=event.case_reference,
            reachable_by_sms=profile.consent_sms and profile.phone is not None,
            reachable_by_email=profile.consent_email and profile.email is not None,
            language=profile.language,
        )
        await _tell(ctx, outlets, repo, profile, (case_opened_notice(),))
    else:
        ctx.log("profile.already_known", case_reference=event.case_reference)
    await ctx.replay(await ctx.unpark(key=case_id))


async def notify_case_event(event: Told, ctx: MessageContext, *, outlets: Outlets) -> None:
    """A case or referral moved: tell the visitor and the mediator what the contract says."""
    notices = who_is_told(event)
    if not notices:
        return
    case_id = str(event.case_id)
    repo = NotificationsRepository(ctx.session)
    profile = await repo.profile(case_id)
    if profile is None:
        await ctx.park(key=case_id, reason=WAITING_FOR_PROFILE)
        return
    # Another instance may have parked a message of this case while the profile was being
    # stored (no cross-topic ordering): it goes first, in order.
    await ctx.replay(await ctx.unpark(key=case_id))
    profile = await repo.profile(case_id) or profile
    await _tell(ctx, outlets, repo, profile, notices)


async def _tell(
    ctx: MessageContext,
    outlets: Outlets,
    repo: NotificationsRepository,
    profile: ContactProfile,
    notices: tuple[Notice, ...],
) -> None:
    for notice in notices:
        if notice.audience == "mediator":
            await _tell_mediator(ctx, outlets, repo, profile, notice)
            continue
        reach = visitor_channel(profile)
        if reach is not None:
            await _send(
                ctx, outlets, repo, profile, notice, channel=reach.channel, to=reach.address
            )
            continue
        profile = await _visitor_unreachable(ctx, outlets, repo, profile, notice)


async def _visitor_unreachable(
    ctx: MessageContext,
    outlets: Outlets,
    repo: NotificationsRepository,
    profile: ContactProfile,
    notice: Notice,
) -> ContactProfile:
    """Nothing goes to the visitor; the mediator hears of it once per case."""
    language = visitor_language(profile.language)
    record = _record(ctx, profile, notice, channel=None, language=language, status="skipped")
    if profile.unreachable_told:
        await repo.record(replace(record, reason="no_reachable_channel"))
        ctx.log("notification.skipped", audience="visitor", template=notice.template)
        return profile
    now = ctx.now()
    ctx.emit(
        NotificationFailed(
            notification_id=record.notification_id,
            case_id=UUID(profile.case_id),
            referral_id=notice.referral_id,
            audience="visitor",
            channel=None,
            template=notice.template,
            language=language,
            failed_at=now,
            reason="no_reachable_channel",
        ),
        topic=topics.NOTIFICATIONS,
        key=profile.case_id,
        detail=f"visitor {notice.template}: no_reachable_channel",
    )
    await repo.record(replace(record, status="failed", reason="no_reachable_channel"))
    await repo.mark_unreachable_told(profile.case_id, at=now)
    ctx.log(
        "notification.failed",
        level="warning",
        audience="visitor",
        template=notice.template,
        reason="no_reachable_channel",
    )
    told = replace(profile, unreachable_told=True)
    mediator_notice = visitor_unreachable_notice(
        failed_template=notice.template, referral_id=notice.referral_id
    )
    await _tell_mediator(ctx, outlets, repo, told, mediator_notice)
    return told


async def _tell_mediator(
    ctx: MessageContext,
    outlets: Outlets,
    repo: NotificationsRepository,
    profile: ContactProfile,
    notice: Notice,
) -> None:
    """Mediator notifications always go to the mediator's inbox."""
    await _send(
        ctx, outlets, repo, profile, notice, channel="mediator_inbox", to=profile.mediator_id
    )


async def _send(
    ctx: MessageContext,
    outlets: Outlets,
    repo: NotificationsRepository,
    profile: ContactProfile,
    notice: Notice,
    *,
    channel: NotificationChannel,
    to: str,
) -> None:
    """Render, send on `channel`, and record and announce the outcome (never the text)."""
    visitor = notice.audience == "visitor"
    wanted = visitor_language(profile.language) if visitor else MEDIATOR_LANGUAGE
    variables = template_variables(
        notice,
        language=wanted,
        case_reference=profile.case_reference,
        first_name=profile.first_name if visitor else None,
        partner_name=outlets.partner_name(notice.facts.partner_id),
    )
    language, text = outlets.templates.render(
        template=notice.template, channel=channel, language=wanted, variables=variables
    )
    record = _record(ctx, profile, notice, channel=channel, language=language, status="sent")
    now = record.at
    message = OutgoingMessage(
        notification_id=record.notification_id,
        to=to,
        site_id=profile.site_id,
        subject=text.subject,
        body=text.body,
        sent_at=now,
        language=language,
    )
    try:
        await outlets.channels[channel].send(message)
    except OSError as exc:
        ctx.emit(
            NotificationFailed(
                notification_id=record.notification_id,
                case_id=UUID(profile.case_id),
                referral_id=notice.referral_id,
                audience=notice.audience,
                channel=channel,
                template=notice.template,
                language=language,
                failed_at=now,
                reason="channel_error",
            ),
            topic=topics.NOTIFICATIONS,
            key=profile.case_id,
            detail=f"{notice.audience} {channel} {notice.template}: channel_error",
        )
        await repo.record(replace(record, status="failed", reason="channel_error"))
        ctx.log(
            "notification.failed",
            level="warning",
            audience=notice.audience,
            channel=channel,
            template=notice.template,
            reason="channel_error",
            error=type(exc).__name__,
            errno=exc.errno,
        )
        return
    ctx.emit(
        NotificationSent(
            notification_id=record.notification_id,
            case_id=UUID(profile.case_id),
            referral_id=notice.referral_id,
            audience=notice.audience,
            channel=channel,
            template=notice.template,
            language=language,
            sent_at=now,
        ),
        topic=topics.NOTIFICATIONS,
        key=profile.case_id,
        detail=f"{notice.audience} {channel} {notice.template}",
    )
    await repo.record(record)
    ctx.log(
        "notification.sent",
        audience=notice.audience,
        channel=channel,
        template=notice.template,
        language=language,
        notification_id=str(record.notification_id),
    )


def _record(
    ctx: MessageContext,
    profile: ContactProfile,
    notice: Notice,
    *,
    channel: NotificationChannel | None,
    language: str,
    status: NotificationStatus,
) -> NotificationRecord:
    return NotificationRecord(
        notification_id=notification_id(
            message_id=ctx.incoming.message_id, audience=notice.audience, template=notice.template
        ),
        case_id=profile.case_id,
        referral_id=notice.referral_id,
        audience=notice.audience,
        channel=channel,
        template=notice.template,
        language=language,
        at=ctx.now(),
        status=status,
    )
