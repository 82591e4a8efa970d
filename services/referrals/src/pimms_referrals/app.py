"""Composition root of referrals: `create_app(settings=None) -> FastStream`."""

from __future__ import annotations

from pathlib import Path

from faststream import FastStream
from pimms_contracts import topics
from pimms_contracts.v1.internal import (
    IntakeCaseOpened,
    IntakeCaseWithdrawn,
    IntakeDocumentsAdded,
    PartnerDelivered,
    PartnerDeliveryFailed,
    PartnerStatusReported,
)
from pimms_servicekit.clock import Clock
from pimms_servicekit.routing import EventDecoder
from pimms_servicekit.runtime import ServiceRuntime
from sqlalchemy.ext.asyncio import AsyncSession

from pimms_referrals import handlers
from pimms_referrals.adapters.directory import DirectoryFile
from pimms_referrals.adapters.repository import ReferralsRepos
from pimms_referrals.scheduler import run_scheduler
from pimms_referrals.settings import ReferralsSettings

MIGRATIONS = Path(__file__).with_name("migrations")


def build_runtime(
    settings: ReferralsSettings | None = None, *, clock: Clock | None = None
) -> ServiceRuntime[ReferralsRepos]:
    """Referrals' runtime with what it reads (tests use it directly)."""
    settings = settings or ReferralsSettings.load()
    directory = DirectoryFile(settings.partner_directory)

    def repositories(session: AsyncSession) -> ReferralsRepos:
        return ReferralsRepos(session, directory=directory)

    runtime = ServiceRuntime(
        settings=settings,
        migrations_dir=MIGRATIONS,
        handlers=handlers.handles,
        repositories=repositories,
        clock=clock,
        produces=[topics.CASES, topics.REFERRAL_ALERTS],
    )
    runtime.consume(
        topics.INTAKE_CASES,
        EventDecoder(IntakeCaseOpened, IntakeDocumentsAdded, IntakeCaseWithdrawn),
    )
    runtime.consume(
        topics.PARTNER_REPORTS,
        EventDecoder(PartnerDelivered, PartnerDeliveryFailed, PartnerStatusReported),
    )

    async def sla_timers() -> None:
        await run_scheduler(
            runtime, interval=settings.timer_interval_s, limit=settings.timer_batch_size
        )

    runtime.background("sla-timers", sla_timers)
    return runtime


def create_app(settings: ReferralsSettings | None = None) -> FastStream:
    """The referrals application."""
    return build_runtime(settings).build_app()
