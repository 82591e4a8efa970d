"""Notifications use cases: one async function each, reading like the contract's sentences.

An event tells people things (`who_is_told`): each notice waits, durably, until its moment is over
(`moment_window` of platform time), so that what reaches one person of one case together is said
in one message (`dispatch_moments`). A message to send is an effect: its rendered text goes into
the outbox with the commit, and the dispatcher of its channel delivers it afterwards. Whether it
was sent or failed is known only then (or later, from a delivery report or a bounce): the hooks
below record it, announce it, and fall back to the visitor's next channel, then to the mediator.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import ClassVar
from uuid import UUID

from pimms_contracts import topics
from pimms_contracts.v1.internal import (
    IntakeCaseOpened,
    IntakeCaseWithdrawn,
    IntakeDocumentsAdded,
    PartnerReportRefused,
)
from pimms_contracts.v1.lifecycle import (
    LIFECYCLE_EVENTS,
    ReferralDocumentsForwarded,
    ReferralOnHold,
)
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
    WaitingCase,
)
from pimms_notifications.adapters.templates import Part
from pimms_notifications.channels import OutgoingMessage
from pimms_notifications.channels.bounces import EmailBounce
from pimms_notifications.channels.brevo import SmsDeliveryReport
from pimms_notifications.domain.contacts import ContactProfile, VisitorChannel, VisitorReach
from pimms_notifications.domain.fallbacks import next_visitor_reach
from pimms_notifications.domain.moments import Moment, PendingNotice, group_moments, ready
from pimms_notifications.domain.notices import (
    Notice,
    Told,
    case_opened_notice,
    notification_id,
    visitor_undelivered_notice,
    visitor_unreachable_notice,
    who_is_told,
)
from pimms_notifications.domain.quiet_hours import sms_send_time
from pimms_notifications.domain.reminders import (
    MAX_VISITOR_REMINDERS,
    HoldEvent,
    hold_after,
    hold_from_forwarded,
    hold_started,
    reminded,
    reminder_due,
    reminder_notification_id,
)
from pimms_notifications.domain.wording import (
    MEDIATOR_LANGUAGE,
    template_variables,
    visitor_language,
)

WAITING_FOR_PROFILE = "waiting for the contact profile"
NO_REACHABLE_CHANNEL = "no_reachable_channel"
CHANNEL_ERROR = "channel_error"

# Fixed: the id of a moment's message re-sent on another channel is uuid5(this, "<id>:<channel>").
_FALLBACK_NAMESPACE = UUID("0e7c2b1a-5d3f-4a8e-9c6b-2f1d8e7a4b90")

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
    moment_id: UUID | None = None
    """The moment the message says: its notices are kept, to say them again on another channel."""
    tried: tuple[VisitorChannel, ...] = ()
    """The channels that failed for good before this one."""


# -- events ------------------------------------------------------------------------------------


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
        _tell(uow, case_id, (case_opened_notice(),))
    else:
        uow.log("profile.already_known", case_reference=event.case_reference)
    await _release_waiting(uow, case_id)


@handles(IntakeDocumentsAdded, IntakeCaseWithdrawn)
async def visitor_acted(event: IntakeDocumentsAdded | IntakeCaseWithdrawn, uow: Uow) -> None:
    """The visitor brought documents or withdrew: no more reminders for their held referrals."""
    _follow_holds(uow, event)


@handles(*LIFECYCLE_EVENTS, PartnerReportRefused)
async def notify_case_event(event: Told, uow: Uow) -> None:
    """A case or referral moved: tell the visitor and the mediator what the contract says."""
    notices = who_is_told(event)
    if not notices:
        _follow_holds(uow, event)  # nobody is told, but a held referral may have moved on
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
    _follow_holds(uow, event)
    _tell(uow, case_id, notices)


def _tell(uow: Uow, case_id: str, notices: Sequence[Notice]) -> None:
    """The notices wait for the end of their moment (see `dispatch_moments`)."""
    now = uow.now()
    uow.repos.wait_for_moment(
        case_id,
        [
            PendingNotice(
                notification_id=notification_id(
                    message_id=uow.message_id, audience=notice.audience, template=notice.template
                ),
                notice=notice,
                at=now,
            )
            for notice in notices
        ],
        correlation_id=uow.correlation_id,
        causation_id=uow.message_id or None,
    )


def _follow_holds(uow: Uow, event: HoldEvent | Told) -> None:
    """Start, restart or end the visitor reminders of the case's held referrals."""
    if isinstance(event, PartnerReportRefused):
        return
    repo = uow.repos
    held = {str(h.referral_id): h for h in repo.open_holds(str(event.case_id))}
    for hold in held.values():
        after = hold_after(hold, event)
        if after != hold:
            repo.save_hold(after)
    started = None
    if isinstance(event, ReferralOnHold):
        started = hold_started(event)
    elif isinstance(event, ReferralDocumentsForwarded):
        started = hold_from_forwarded(event)
    if started is not None and str(started.referral_id) not in held:
        repo.save_hold(started)


async def _release_waiting(uow: Uow, case_id: str) -> None:
    """Process now the messages of this case that waited for its profile, if any."""
    if uow.repos.take_waiting(case_id):
        await uow.release(key=case_id)


# -- background work: moments and reminders ---------------------------------------------------


async def dispatch_moments(uow: Uow) -> int:
    """Send every moment whose window is over: one message per person; return how many.

    The visitor's moments go first: what could not reach them is news for the mediator, and it
    joins the mediator's message of the same moment rather than following it as another.
    """
    repo = uow.repos
    now = uow.now()
    window = repo.rules.moment_window
    sent = 0
    due = await repo.waiting_cases(now=now)
    await repo.load_profiles([waiting.case_id for waiting in due])
    for waiting in due:
        profile = await repo.profile(waiting.case_id)
        if profile is None:  # notices are kept only once the profile is known
            continue
        told: list[PendingNotice] = []
        for moment in ready(group_moments(waiting.notices, window=window), now=now):
            if moment.audience == "visitor":
                told += _say_moment(uow, waiting, profile, moment)
                sent += 1
        notices = (*waiting.notices, *told)
        for moment in ready(group_moments(notices, window=window), now=now):
            if moment.audience == "mediator":
                _say_moment(uow, waiting, profile, moment)
                sent += 1
    return sent


def _say_moment(
    uow: Uow, waiting: WaitingCase, profile: ContactProfile, moment: Moment
) -> tuple[PendingNotice, ...]:
    """Say one due moment; return what it queued for the mediator (see `_say`)."""
    # What the message causes (its outcome's event) belongs to the case's journey.
    cause = waiting.causes.get(moment.notification_id)
    uow.begin_hook(
        case_id=waiting.case_id, correlation_id=waiting.correlation_id, causation_id=cause
    )
    try:
        uow.repos.said(
            [part.notification_id for part in moment.parts], moment_id=moment.notification_id
        )
        told = _say(uow, profile, moment, cause=cause)
    finally:
        uow.end_message()
    for item in told:
        waiting.causes[item.notification_id] = cause
    return told


async def remind_visitors(uow: Uow) -> int:
    """Remind visitors of the documents their held referrals wait for; return how many."""
    repo = uow.repos
    now = uow.now()
    delay = repo.rules.reminder_delay
    count = 0
    for hold in await repo.holds_due(before=now - delay):
        notice = reminder_due(hold, now=now, delay=delay)
        if notice is None:
            repo.save_hold(replace(hold, ended=True))  # no reminder left: look no more
            continue
        number = hold.reminders_sent + 1
        item = PendingNotice(reminder_notification_id(hold, reminder=number), notice, now)
        repo.wait_for_moment(str(hold.case_id), [item], correlation_id=None)
        after = reminded(hold, at=now)
        repo.save_hold(replace(after, ended=after.reminders_sent >= MAX_VISITOR_REMINDERS))
        uow.log("reminder.queued", case_id=str(hold.case_id), reminder=number)
        count += 1
    return count


# -- delivery outcomes: hooks, provider reports, bounces ---------------------------------------


@hooks.before_delivered(NotificationHook)
async def notifications_round_sent(items: list[tuple[NotificationHook, Outcome]], uow: Uow) -> None:
    """The SMS of a round are read together (see `notification_sent`)."""
    await uow.repos.load_notifications([d.notification_id for d, _ in items if d.channel == "sms"])


@hooks.delivered(NotificationHook)
async def notification_sent(data: NotificationHook, outcome: Outcome, uow: Uow) -> None:
    """The channel has the message: record it and announce it (never the text)."""
    repo = uow.repos
    if data.channel == "sms":
        known = await repo.notification(data.notification_id)
        if known is not None and known.status == "failed":
            # The provider's failure report arrived before its answer was recorded.
            repo.set_status(data.notification_id, status="failed", receipt=outcome.receipt)
            return
    repo.set_status(data.notification_id, status="sent", receipt=outcome.receipt)
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
    """The channel refused the message or stayed down through every retry: say so, fall back."""
    await _failed(uow, data, reason=outcome.reason or CHANNEL_ERROR, at=outcome.at)


async def sms_delivery_reported(uow: Uow, report: SmsDeliveryReport) -> None:
    """The SMS provider says what became of an SMS: a failure falls back like a refusal."""
    repo = uow.repos
    record = None
    if report.tag is not None:
        try:
            record = await repo.notification(UUID(report.tag))
        except ValueError:
            record = None
    if record is None and report.message_id is not None:
        record = await repo.notification_by_receipt(report.message_id)
    if record is None or record.channel != "sms":
        uow.log("sms.report_ignored", reason="unknown_message", status=report.status)
        return
    uow.about_case(record.case_id)
    if report.outcome != "failed" or record.status == "failed":
        uow.log("sms.report", notification_id=str(record.notification_id), status=report.status)
        return
    await _failed(uow, _hook_of(record), reason=report.reason or "sms_failed", at=uow.now())


async def email_bounced(uow: Uow, bounce: EmailBounce) -> None:
    """An e-mail came back: it failed; the mediator hears the visitor was not reached."""
    repo = uow.repos
    record = await repo.notification(bounce.notification_id)
    if record is None or record.channel != "email" or record.status == "failed":
        uow.log("email.bounce_ignored", notification_id=str(bounce.notification_id))
        return
    uow.about_case(record.case_id)
    reason = f"{bounce.reason}_{bounce.status}" if bounce.status else bounce.reason
    await _failed(uow, _hook_of(record), reason=reason, at=uow.now())


async def _failed(uow: Uow, data: NotificationHook, *, reason: str, at: datetime) -> None:
    repo = uow.repos
    repo.set_status(data.notification_id, status="failed", reason=reason)
    uow.emit(
        NotificationFailed(
            notification_id=data.notification_id,
            case_id=data.case_id,
            referral_id=data.referral_id,
            audience=data.audience,
            channel=data.channel,
            template=data.template,
            language=data.language,
            failed_at=at,
            reason=reason,
        ),
        topic=topics.NOTIFICATIONS,
        key=str(data.case_id),
        detail=f"{data.audience} {data.channel} {data.template}: {reason}",
    )
    uow.log(
        "notification.failed",
        level="warning",
        audience=data.audience,
        channel=data.channel,
        template=data.template,
        notification_id=str(data.notification_id),
        reason=reason,
    )
    if data.audience != "visitor" or data.moment_id is None or data.channel == "mediator_inbox":
        return
    profile = await repo.profile(str(data.case_id))
    parts = await repo.moment_parts(data.moment_id)
    if profile is None or not parts:
        return
    moment = Moment("visitor", parts, parts[-1].at)
    _say(uow, profile, moment, tried=(*data.tried, data.channel), reason=reason)


def _hook_of(record: NotificationRecord) -> NotificationHook:
    tried = tuple(c for c in (record.tried or "").split(",") if c in ("sms", "email"))
    return NotificationHook(
        notification_id=record.notification_id,
        case_id=UUID(record.case_id),
        referral_id=record.referral_id,
        audience="visitor" if record.audience == "visitor" else "mediator",
        channel=record.channel,  # type: ignore[arg-type]
        template=record.template,
        language=record.language,
        moment_id=record.moment_id,
        tried=tried,  # type: ignore[arg-type]
    )


# -- saying a moment ---------------------------------------------------------------------------


def _say(
    uow: Uow,
    profile: ContactProfile,
    moment: Moment,
    *,
    tried: tuple[VisitorChannel, ...] = (),
    reason: str | None = None,
    cause: str | None = None,
) -> tuple[PendingNotice, ...]:
    """Send a moment on its person's channel, the next one after those `tried`, or tell why not.

    Returns the notice it queued for the mediator (the visitor cannot be reached), if any; its
    message is caused by `cause` (the message the moment's first notice came from).
    """
    if moment.audience == "mediator":
        _send(uow, profile, moment, channel="mediator_inbox", to=profile.mediator_id)
        return ()
    choice = next_visitor_reach(profile, failed=tried, reason=reason or NO_REACHABLE_CHANNEL)
    if isinstance(choice, VisitorReach):
        _send(uow, profile, moment, channel=choice.channel, to=choice.address, tried=tried)
        return ()
    if tried:
        return _undelivered(uow, profile, moment, reason=choice.reason, cause=cause)
    return _unreachable(uow, profile, moment, cause=cause)


def _unreachable(
    uow: Uow, profile: ContactProfile, moment: Moment, *, cause: str | None
) -> tuple[PendingNotice, ...]:
    """Nothing goes to the visitor; the mediator hears of it once per case."""
    repo = uow.repos
    language = visitor_language(profile.language)
    status: NotificationStatus = "skipped" if profile.unreachable_told else "failed"
    record = _record(
        uow,
        profile,
        moment,
        channel=None,
        language=language,
        status=status,
        reason=NO_REACHABLE_CHANNEL,
    )
    repo.record(record)
    _record_merged(uow, profile, moment, channel=None, language=language)
    if profile.unreachable_told:
        uow.log("notification.skipped", audience="visitor", template=moment.template)
        return ()
    uow.emit(
        NotificationFailed(
            notification_id=record.notification_id,
            case_id=UUID(profile.case_id),
            referral_id=record.referral_id,
            audience="visitor",
            channel=None,
            template=moment.template,
            language=language,
            failed_at=record.at,
            reason=NO_REACHABLE_CHANNEL,
        ),
        topic=topics.NOTIFICATIONS,
        key=profile.case_id,
        detail=f"visitor {moment.template}: {NO_REACHABLE_CHANNEL}",
    )
    repo.mark_unreachable_told(profile.case_id, at=record.at)
    uow.log(
        "notification.failed",
        level="warning",
        audience="visitor",
        template=moment.template,
        reason=NO_REACHABLE_CHANNEL,
    )
    notice = visitor_unreachable_notice(
        failed_template=moment.template, referral_id=record.referral_id
    )
    # Found out while the moment is said: the news belongs to the mediator's same moment, after
    # the events it is about (it arose with the moment's last one).
    return (_tell_mediator(uow, profile, moment, notice, at=moment.parts[-1].at, cause=cause),)


def _undelivered(
    uow: Uow, profile: ContactProfile, moment: Moment, *, reason: str, cause: str | None
) -> tuple[PendingNotice, ...]:
    """Every channel the visitor allows failed for this moment: the mediator tells them."""
    notice = visitor_undelivered_notice(
        failed_template=moment.template,
        referral_id=moment.parts[0].notice.referral_id,
        reason=reason,
    )
    uow.log("notification.visitor_undelivered", level="warning", template=moment.template)
    # Found out later (a refusal, a report, a bounce): news of now, with whatever else is.
    return (_tell_mediator(uow, profile, moment, notice, at=uow.now(), cause=cause),)


def _tell_mediator(
    uow: Uow,
    profile: ContactProfile,
    about: Moment,
    notice: Notice,
    *,
    at: datetime,
    cause: str | None,
) -> PendingNotice:
    """A notice about the platform itself waits for its moment like any other.

    Its id comes from the moment it is about: said again (a redelivered report, a replayed
    round), it is the same notice, kept once and sent once.
    """
    key = f"{about.notification_id}:{notice.template}"
    item = PendingNotice(
        notification_id=notification_id(
            message_id=key, audience="mediator", template=notice.template
        ),
        notice=notice,
        at=at,
    )
    uow.repos.wait_for_moment(
        profile.case_id,
        [item],
        correlation_id=uow.correlation_id,
        causation_id=cause or uow.message_id or None,
    )
    return item


def _send(
    uow: Uow,
    profile: ContactProfile,
    moment: Moment,
    *,
    channel: NotificationChannel,
    to: str,
    tried: tuple[VisitorChannel, ...] = (),
) -> None:
    """Render the moment, and hand it to `channel`'s dispatcher: it leaves after the commit."""
    repo = uow.repos
    visitor = moment.audience == "visitor"
    wanted = visitor_language(profile.language) if visitor else MEDIATOR_LANGUAGE
    parts = [
        Part(
            template=part.notice.template,
            variables=template_variables(
                part.notice,
                language=wanted,
                case_reference=profile.case_reference,
                first_name=profile.first_name if visitor else None,
                partner_name=repo.partner_name(part.notice.facts.partner_id),
            ),
        )
        for part in moment.parts
    ]
    if len(parts) == 1:
        language, text = repo.templates.render(
            template=parts[0].template,
            channel=channel,
            language=wanted,
            variables=parts[0].variables,
        )
    else:
        language, text = repo.templates.render_combined(
            parts=parts, channel=channel, language=wanted
        )
    now = uow.now()
    quiet = repo.rules.quiet_hours
    not_before = (
        sms_send_time(now, start=quiet[0], end=quiet[1]) if channel == "sms" and quiet else now
    )
    record = _record(
        uow,
        profile,
        moment,
        channel=channel,
        language=language,
        status="pending",
        tried=tried,
    )
    message = OutgoingMessage(
        notification_id=record.notification_id,
        to=to,
        site_id=profile.site_id,
        subject=text.subject,
        body=text.body,
        sent_at=not_before,
        language=language,
    )
    uow.dispatch(
        destination=channel,
        idempotency_key=str(record.notification_id),
        payload=encode_message(message),
        detail=f"{moment.audience} {channel} {moment.template}",
        hook=NotificationHook(
            notification_id=record.notification_id,
            case_id=UUID(profile.case_id),
            referral_id=record.referral_id,
            audience=moment.audience,
            channel=channel,
            template=moment.template,
            language=language,
            moment_id=moment.notification_id,
            tried=tried,
        ),
        not_before=not_before if not_before > now else None,
    )
    repo.record(record)  # its outcome is logged by the hooks: one line per notification
    if not tried:
        _record_merged(uow, profile, moment, channel=channel, language=language)
    if not_before > now:
        uow.log(
            "notification.deferred",
            reason="quiet_hours",
            template=moment.template,
            send_at=not_before.isoformat(),
        )


def _record(
    uow: Uow,
    profile: ContactProfile,
    moment: Moment,
    *,
    channel: NotificationChannel | None,
    language: str,
    status: NotificationStatus,
    reason: str | None = None,
    tried: tuple[VisitorChannel, ...] = (),
) -> NotificationRecord:
    """The notifications row of the moment's message (on a fallback channel: an id of its own)."""
    first = moment.notification_id
    own = uuid.uuid5(_FALLBACK_NAMESPACE, f"{first}:{channel}") if tried else first
    return NotificationRecord(
        notification_id=own,
        case_id=profile.case_id,
        referral_id=moment.parts[0].notice.referral_id,
        audience=moment.audience,
        channel=channel,
        template=moment.template,
        language=language,
        at=uow.now(),
        status=status,
        reason=reason,
        moment_id=first,
        tried=",".join(tried) or None,
    )


def _record_merged(
    uow: Uow,
    profile: ContactProfile,
    moment: Moment,
    *,
    channel: NotificationChannel | None,
    language: str,
) -> None:
    """The notices said inside the moment's message besides the first: merged into it."""
    for part in moment.parts[1:]:
        uow.repos.record(
            NotificationRecord(
                notification_id=part.notification_id,
                case_id=profile.case_id,
                referral_id=part.notice.referral_id,
                audience=moment.audience,
                channel=channel,
                template=part.notice.template,
                language=language,
                at=uow.now(),
                status="merged",
                moment_id=moment.notification_id,
            )
        )
