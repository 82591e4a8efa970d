"""Composition root of referrals: `create_app(settings=None) -> FastStream`.

What runs: the pipeline (intake's cases, partner-gateways' reports), the SLA scheduler, and the
partner directory file (`PIMMS_PARTNER_DIRECTORY`), reloaded when it changes: each batch routes
with the directory of its start. A new version that fails validation is refused with a warning
naming the partner and the field, and the last good one stays. A referral keeps the delays
(`ack_within`, `resolve_within`) of the directory it was routed with: a change applies to the
referrals routed after it.
"""

from __future__ import annotations

from pathlib import Path

from faststream import FastStream
from pimms_contracts import topics
from pimms_contracts.partners import PartnerDirectory, load_directory
from pimms_contracts.v1.internal import (
    IntakeCaseOpened,
    IntakeCaseWithdrawn,
    IntakeDocumentsAdded,
    PartnerDelivered,
    PartnerDeliveryFailed,
    PartnerStatusReported,
)
from pimms_servicekit.clock import Clock
from pimms_servicekit.directory_watch import WatchedFile
from pimms_servicekit.routing import EventDecoder
from pimms_servicekit.runtime import ServiceRuntime
from sqlalchemy.ext.asyncio import AsyncSession

from pimms_referrals import handlers
from pimms_referrals.adapters.repository import ReferralsRepos
from pimms_referrals.scheduler import run_scheduler
from pimms_referrals.settings import ReferralsSettings

MIGRATIONS = Path(__file__).with_name("migrations")


def partner_directory(settings: ReferralsSettings) -> WatchedFile[PartnerDirectory]:
    """The directory file, read now (a broken first version stops the start), watched later."""
    return WatchedFile(settings.partner_directory, load=load_directory, what="partner directory")


def build_runtime(
    settings: ReferralsSettings | None = None,
    *,
    clock: Clock | None = None,
    directory: WatchedFile[PartnerDirectory] | None = None,
) -> ServiceRuntime[ReferralsRepos]:
    """Referrals' runtime with what it reads (tests use it directly).

    `directory`: the watched directory file to use (tests keep it to check it at once);
    default the settings' file.
    """
    settings = settings or ReferralsSettings.load()
    watched = directory or partner_directory(settings)

    def repositories(session: AsyncSession) -> ReferralsRepos:
        return ReferralsRepos(session, directory=watched.current)

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
    runtime.background(
        "partner-directory", lambda: watched.watch(interval=settings.directory_poll_interval_s)
    )
    return runtime


def create_app(settings: ReferralsSettings | None = None) -> FastStream:
    """The referrals application."""
    return build_runtime(settings).build_app()
