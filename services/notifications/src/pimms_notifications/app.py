"""Composition root of notifications: `create_app(settings=None) -> FastStream`."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from faststream import FastStream
from pimms_contracts import topics
from pimms_contracts.partners.directory import load_directory
from pimms_contracts.v1.internal import IntakeCaseOpened, PartnerReportRefused
from pimms_contracts.v1.lifecycle import LIFECYCLE_EVENTS
from pimms_contracts.v1.notifications import NotificationChannel
from pimms_servicekit.clock import Clock
from pimms_servicekit.pipeline import EventHandler, EventRoute
from pimms_servicekit.runtime import ServiceRuntime
from pimms_servicekit.settings import SettingsError

from pimms_notifications import handlers
from pimms_notifications.adapters.templates import TemplateLibrary
from pimms_notifications.channels import Channel
from pimms_notifications.channels.files import (
    FileEmailChannel,
    FileMediatorInbox,
    FileSmsChannel,
)
from pimms_notifications.domain.notices import TOLD_EVENTS
from pimms_notifications.settings import NotificationsSettings

MIGRATIONS = Path(__file__).with_name("migrations")


def file_channels(settings: NotificationsSettings) -> dict[NotificationChannel, Channel]:
    """The embedded default channels: one file per message under the data directory."""
    root = settings.outbox_dir
    return {
        "sms": FileSmsChannel(root / "sms"),
        "email": FileEmailChannel(root / "email", sender=settings.email_from),
        "mediator_inbox": FileMediatorInbox(root / "mediator_inbox"),
    }


def build_outlets(
    settings: NotificationsSettings,
    channels: dict[NotificationChannel, Channel] | None = None,
) -> handlers.Outlets:
    """Templates, channels and partner names, checked now so a bad file stops the start."""
    try:
        directory = load_directory(settings.partner_directory)
    except ValueError as exc:
        raise SettingsError(f"PIMMS_NOTIFICATIONS_PARTNER_DIRECTORY: {exc}") from None
    return handlers.Outlets(
        templates=TemplateLibrary.load(),
        channels=channels or file_channels(settings),
        directory=directory,
    )


def build_runtime(
    settings: NotificationsSettings | None = None,
    *,
    clock: Clock | None = None,
    channels: dict[NotificationChannel, Channel] | None = None,
) -> ServiceRuntime:
    """Notifications' runtime with its routes (tests use it directly)."""
    settings = settings or NotificationsSettings.load()
    outlets = build_outlets(settings, channels)
    runtime = ServiceRuntime(
        settings=settings,
        migrations_dir=MIGRATIONS,
        clock=clock,
        produces=[topics.NOTIFICATIONS],
    )
    notify: EventHandler = partial(handlers.notify_case_event, outlets=outlets)
    runtime.pipeline.route(
        topics.INTAKE_CASES,
        EventRoute({IntakeCaseOpened: partial(handlers.store_contact_profile, outlets=outlets)}),
    )
    runtime.pipeline.route(
        topics.CASES,
        EventRoute({event: notify for event in LIFECYCLE_EVENTS if event in TOLD_EVENTS}),
    )
    runtime.pipeline.route(topics.REFERRAL_ALERTS, EventRoute({PartnerReportRefused: notify}))
    return runtime


def create_app(settings: NotificationsSettings | None = None) -> FastStream:
    """The notifications application."""
    return build_runtime(settings).build_app()
