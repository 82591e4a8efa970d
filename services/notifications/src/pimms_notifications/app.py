"""Composition root of notifications: `create_app(settings=None) -> FastStream`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from faststream import FastStream
from pimms_contracts import topics
from pimms_contracts.partners.directory import PartnerDirectory, load_directory
from pimms_contracts.v1.internal import IntakeCaseOpened, PartnerReportRefused
from pimms_contracts.v1.lifecycle import LIFECYCLE_EVENTS
from pimms_servicekit.clock import Clock
from pimms_servicekit.effects import Destination
from pimms_servicekit.routing import EventDecoder
from pimms_servicekit.runtime import ServiceRuntime
from pimms_servicekit.settings import SettingsError

from pimms_notifications import handlers
from pimms_notifications.adapters.destinations import ChannelDestination
from pimms_notifications.adapters.repository import NotificationsRepos
from pimms_notifications.adapters.templates import TemplateLibrary
from pimms_notifications.channels.files import (
    FileEmailChannel,
    FileMediatorInbox,
    FileSmsChannel,
)
from pimms_notifications.domain.notices import TOLD_EVENTS
from pimms_notifications.settings import NotificationsSettings

MIGRATIONS = Path(__file__).with_name("migrations")


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


def partner_directory(settings: NotificationsSettings) -> PartnerDirectory:
    """The partner directory, checked now so that a bad file stops the start."""
    try:
        return load_directory(settings.partner_directory)
    except ValueError as exc:
        raise SettingsError(f"PIMMS_NOTIFICATIONS_PARTNER_DIRECTORY: {exc}") from None


def build_runtime(
    settings: NotificationsSettings | None = None,
    *,
    clock: Clock | None = None,
    destinations: Sequence[Destination] | None = None,
) -> ServiceRuntime[NotificationsRepos]:
    """Notifications' runtime: what it reads, and one dispatcher per channel (tests use it)."""
    settings = settings or NotificationsSettings.load()
    templates = TemplateLibrary.load()
    directory = partner_directory(settings)
    runtime = ServiceRuntime(
        settings=settings,
        migrations_dir=MIGRATIONS,
        handlers=handlers.handles,
        repositories=lambda session: NotificationsRepos(
            session, templates=templates, directory=directory
        ),
        hooks=handlers.hooks,
        clock=clock,
        produces=[topics.NOTIFICATIONS],
    )
    runtime.consume(topics.INTAKE_CASES, EventDecoder(IntakeCaseOpened))
    runtime.consume(topics.CASES, EventDecoder(*(e for e in LIFECYCLE_EVENTS if e in TOLD_EVENTS)))
    runtime.consume(topics.REFERRAL_ALERTS, EventDecoder(PartnerReportRefused))
    for destination in file_destinations(settings) if destinations is None else destinations:
        runtime.deliver_to(destination)
    return runtime


def create_app(settings: NotificationsSettings | None = None) -> FastStream:
    """The notifications application."""
    return build_runtime(settings).build_app()
