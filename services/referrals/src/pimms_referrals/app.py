"""Composition root of referrals: `create_app(settings=None) -> FastStream`."""

from __future__ import annotations

import functools
from pathlib import Path

from faststream import FastStream
from pimms_contracts import topics
from pimms_contracts.partners import KafkaTransport
from pimms_contracts.v1.internal import (
    IntakeCaseOpened,
    IntakeCaseWithdrawn,
    IntakeDocumentsAdded,
    PartnerDelivered,
    PartnerDeliveryFailed,
    PartnerStatusReported,
)
from pimms_servicekit.clock import Clock
from pimms_servicekit.pipeline import EventRoute
from pimms_servicekit.runtime import ServiceRuntime

from pimms_referrals import handlers
from pimms_referrals.adapters.directory import DirectoryFile
from pimms_referrals.settings import ReferralsSettings

MIGRATIONS = Path(__file__).with_name("migrations")


def build_runtime(
    settings: ReferralsSettings | None = None, *, clock: Clock | None = None
) -> ServiceRuntime:
    """Referrals' runtime with its routes (tests use it directly)."""
    settings = settings or ReferralsSettings.load()
    directory = DirectoryFile(settings.partner_directory)
    # Impossible or unknown partner reports are dead-lettered to the partner's responses topic.
    partner_dead_letters = [
        topics.dead_letters(p.transport.responses_topic)
        for p in directory.current().partners
        if isinstance(p.transport, KafkaTransport)
    ]
    runtime = ServiceRuntime(
        settings=settings,
        migrations_dir=MIGRATIONS,
        clock=clock,
        produces=[topics.CASES, topics.REFERRAL_ALERTS, *partner_dead_letters],
    )
    runtime.pipeline.route(
        topics.INTAKE_CASES,
        EventRoute(
            {
                IntakeCaseOpened: functools.partial(handlers.open_case, directory=directory),
                IntakeDocumentsAdded: handlers.add_documents,
                IntakeCaseWithdrawn: handlers.withdraw_case,
            }
        ),
    )
    runtime.pipeline.route(
        topics.PARTNER_REPORTS,
        EventRoute(
            {
                PartnerDelivered: handlers.record_delivery,
                PartnerDeliveryFailed: handlers.record_delivery_failure,
                PartnerStatusReported: handlers.apply_partner_report,
            }
        ),
    )
    return runtime


def create_app(settings: ReferralsSettings | None = None) -> FastStream:
    """The referrals application."""
    return build_runtime(settings).build_app()
