"""Composition root of notifications: `create_app(settings=None) -> FastStream`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

from faststream import FastStream
from pimms_contracts import topics
from pimms_contracts.partners.directory import PartnerDirectory, load_directory
from pimms_contracts.v1.internal import (
    IntakeCaseOpened,
    IntakeCaseWithdrawn,
    IntakeDocumentsAdded,
    PartnerReportRefused,
)
from pimms_contracts.v1.lifecycle import LIFECYCLE_EVENTS
from pimms_servicekit.clock import Clock
from pimms_servicekit.directory_watch import WatchedFile
from pimms_servicekit.effects import Destination
from pimms_servicekit.logging import get_logger
from pimms_servicekit.routing import EventDecoder
from pimms_servicekit.runtime import ServiceRuntime, finish_at_stop
from pimms_servicekit.settings import SettingsError
from pimms_servicekit.unit_of_work import UnitOfWork

from pimms_notifications import handlers
from pimms_notifications.adapters.destinations import (
    CHANNEL_POLICY,
    FILE_POLICY,
    BatchDeliveryDestination,
    ChannelDestination,
    DeliveryDestination,
)
from pimms_notifications.adapters.reports import delivery_report_endpoint
from pimms_notifications.adapters.repository import NotificationsRepos, Rules
from pimms_notifications.adapters.templates import TemplateLibrary
from pimms_notifications.channels.bounces import EmailBounce, archive_bounce, scan_bounce_folder
from pimms_notifications.channels.brevo import REPORT_PATH, SmsDeliveryReport
from pimms_notifications.channels.email_message import mail_domain
from pimms_notifications.channels.factory import delivery_channels
from pimms_notifications.channels.files import (
    FileEmailChannel,
    FileMediatorInbox,
    FileSmsChannel,
)
from pimms_notifications.domain.moments import moment_window
from pimms_notifications.settings import NotificationsSettings

FILE_CHANNELS = (FileSmsChannel, FileEmailChannel, FileMediatorInbox)

MIGRATIONS = Path(__file__).with_name("migrations")
log = get_logger("pimms.notifications")

Runtime = ServiceRuntime[NotificationsRepos]
ROUND_GRACE_S = 10.0
"""How long a background job's current round may take to finish at shutdown."""


def file_destinations(settings: NotificationsSettings) -> list[ChannelDestination]:
    """The embedded default channels: one file per message under the data directory."""
    root = settings.outbox_dir
    return [
        ChannelDestination(name="sms", channel=FileSmsChannel(root / "sms"), blocking=True),
        ChannelDestination(
            name="email",
            channel=FileEmailChannel(root / "email", sender=settings.email_from),
            blocking=True,
        ),
        ChannelDestination(
            name="mediator_inbox",
            channel=FileMediatorInbox(root / "mediator_inbox"),
            blocking=True,
        ),
    ]


def delivery_destinations(settings: NotificationsSettings) -> list[DeliveryDestination]:
    """The channels the settings ask for (the SMS provider, SMTP; files when unset)."""
    return [
        BatchDeliveryDestination(name=name, channel=channel, policy=FILE_POLICY)
        if isinstance(channel, FILE_CHANNELS)
        else DeliveryDestination(name=name, channel=channel, policy=CHANNEL_POLICY)
        for name, channel in delivery_channels(settings).items()
    ]


def partner_directory(settings: NotificationsSettings) -> WatchedFile[PartnerDirectory]:
    """The partner directory file, checked now so that a bad file stops the start, and watched:
    a changed file is reloaded, a broken new version refused (the last good one stays)."""
    try:
        return WatchedFile(
            settings.partner_directory, load=load_directory, what="partner directory"
        )
    except ValueError as exc:
        raise SettingsError(
            f"PIMMS_NOTIFICATIONS_PARTNER_DIRECTORY (else PIMMS_PARTNER_DIRECTORY): {exc}"
        ) from None


def build_runtime(
    settings: NotificationsSettings | None = None,
    *,
    clock: Clock | None = None,
    destinations: Sequence[Destination] | None = None,
    directory: WatchedFile[PartnerDirectory] | None = None,
) -> Runtime:
    """Notifications' runtime: what it reads, one dispatcher per channel, its jobs and endpoint.

    `directory`: the watched partner directory to use (tests keep it to check it at once);
    default the settings' file. Each batch names partners with the directory of its start.
    """
    settings = settings or NotificationsSettings.load()
    templates = TemplateLibrary.load()
    watched = directory or partner_directory(settings)
    runtime = ServiceRuntime(
        settings=settings,
        migrations_dir=MIGRATIONS,
        handlers=handlers.handles,
        repositories=lambda session: NotificationsRepos(
            session, templates=templates, directory=watched.current, rules=rules
        ),
        hooks=handlers.hooks,
        clock=clock,
        produces=[topics.NOTIFICATIONS],
    )
    # Known once the runtime has its clock (the repositories above are built later, per batch).
    rules = Rules(
        moment_window=window_on(runtime.clock, settings),
        reminder_delay=settings.visitor_reminder_delay,
        quiet_hours=settings.sms_quiet_hours,
    )
    runtime.consume(
        topics.INTAKE_CASES,
        EventDecoder(IntakeCaseOpened, IntakeDocumentsAdded, IntakeCaseWithdrawn),
    )
    runtime.consume(topics.CASES, EventDecoder(*LIFECYCLE_EVENTS))
    runtime.consume(topics.REFERRAL_ALERTS, EventDecoder(PartnerReportRefused))
    chosen = list(delivery_destinations(settings) if destinations is None else destinations)
    for destination in chosen:
        runtime.deliver_to(destination)
    every = settings.job_interval_s
    runtime.background("moments", partial(_every, every, partial(send_moments, runtime)))
    runtime.background("reminders", partial(_every, every, partial(send_reminders, runtime)))
    if settings.mail_bounce_dir is not None:
        folder, domain = settings.mail_bounce_dir, mail_domain(settings.mail_from)
        job = partial(read_bounces, runtime, folder=folder, domain=domain)
        runtime.background("bounces", partial(_every, every, job))
    runtime.background("channels", partial(_close_at_shutdown, chosen))
    runtime.background(
        "partner-directory", partial(watched.watch, interval=settings.directory_poll_interval_s)
    )
    if settings.sms_report_token is not None:
        endpoint = delivery_report_endpoint(
            token=settings.sms_report_token.get_secret_value(),
            on_report=partial(sms_report, runtime),
        )
        runtime.http_route(REPORT_PATH, endpoint, methods=["POST"])
    return runtime


def window_on(clock: Clock, settings: NotificationsSettings) -> timedelta:
    """The moment window on this clock: a real length even when platform time runs fast."""
    scale = float(getattr(clock, "scale", 1.0))
    window = moment_window(
        settings.moment_window,
        time_scale=scale,
        real_minimum=timedelta(seconds=settings.moment_window_real_min_s),
    )
    if window != settings.moment_window:
        log.info(
            "moments.window_scaled",
            time_scale=scale,
            window_s=window.total_seconds(),
            real_s=round(window.total_seconds() / scale, 3),
        )
    return window


async def send_moments(runtime: Runtime) -> None:
    """Send the moments whose window is over (the `moments` job; tests call it)."""
    await runtime.in_unit_of_work(_discard(handlers.dispatch_moments))


async def send_reminders(runtime: Runtime) -> None:
    """Queue the visitor reminders that are due (the `reminders` job; tests call it)."""
    await runtime.in_unit_of_work(_discard(handlers.remind_visitors))


async def sms_report(runtime: Runtime, report: SmsDeliveryReport) -> None:
    """Apply one delivery report of the SMS provider."""
    await runtime.in_unit_of_work(lambda uow: handlers.sms_delivery_reported(uow, report))


async def read_bounces(runtime: Runtime, *, folder: Path, domain: str) -> None:
    """Mark failed the e-mails the bounce folder reports, then set the files aside."""
    for scanned in await scan_bounce_folder(folder, mail_domain=domain):
        bounce = scanned.bounce
        if bounce is not None:
            await runtime.in_unit_of_work(partial(_bounced, bounce=bounce))
        await archive_bounce(scanned.path)


async def _bounced(uow: UnitOfWork[NotificationsRepos], *, bounce: EmailBounce) -> None:
    await handlers.email_bounced(uow, bounce)


def _discard(
    work: Callable[[UnitOfWork[NotificationsRepos]], Awaitable[Any]],
) -> Callable[[UnitOfWork[NotificationsRepos]], Awaitable[None]]:
    async def run(uow: UnitOfWork[NotificationsRepos]) -> None:
        await work(uow)

    return run


async def _every(seconds: float, job: Callable[[], Awaitable[None]]) -> None:
    """Run `job` every `seconds` until cancelled; a failed round is logged and tried again.

    At shutdown the current round (one unit of work, milliseconds) ends before the job stops: a
    query cancelled half-way leaves its pooled connection unusable for whoever takes it next.
    """
    failing_since: float | None = None
    delay = seconds
    while True:
        try:
            await finish_at_stop(job(), grace_s=ROUND_GRACE_S)
        except Exception as exc:
            # An outage is said once when it starts and once when it ends, and waited out
            # with backoff: not a line a second.
            if failing_since is None:
                failing_since = time.monotonic()
                log.warning("job.failed", error=type(exc).__name__)
            delay = min(delay * 2, 30.0)
        else:
            if failing_since is not None:
                log.info("job.recovered", failed_s=round(time.monotonic() - failing_since, 1))
                failing_since = None
            delay = seconds
        await asyncio.sleep(delay)


async def _close_at_shutdown(destinations: Sequence[Destination]) -> None:
    """Wait for the shutdown, then close the channels' connections (the SMS HTTP client)."""
    try:
        await asyncio.Event().wait()
    finally:
        for destination in destinations:
            close = getattr(destination, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()


def create_app(settings: NotificationsSettings | None = None) -> FastStream:
    """The notifications application."""
    return build_runtime(settings).build_app()
