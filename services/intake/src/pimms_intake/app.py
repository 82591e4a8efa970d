"""Composition root of intake: `create_app(settings=None) -> FastStream`."""

from __future__ import annotations

from pathlib import Path

from faststream import FastStream
from pimms_contracts import topics
from pimms_contracts.v1.lifecycle import REFERRAL_EVENT_BY_STATUS, CaseClosed
from pimms_servicekit.clock import Clock
from pimms_servicekit.routing import EventDecoder
from pimms_servicekit.runtime import ServiceRuntime

from pimms_intake import handlers
from pimms_intake.adapters.frontoffice import FrontOfficeDecoder
from pimms_intake.adapters.repository import IntakeRepository
from pimms_intake.settings import IntakeSettings

MIGRATIONS = Path(__file__).with_name("migrations")


def build_runtime(
    settings: IntakeSettings | None = None, *, clock: Clock | None = None
) -> ServiceRuntime[IntakeRepository]:
    """Intake's runtime with what it reads (tests use it directly)."""
    runtime = ServiceRuntime(
        settings=settings or IntakeSettings.load(),
        migrations_dir=MIGRATIONS,
        handlers=handlers.handles,
        repositories=IntakeRepository,
        clock=clock,
        produces=[topics.INTAKE_FEEDBACK, topics.INTAKE_CASES, topics.INTAKE_ASSESSMENTS],
    )
    runtime.consume(topics.INTAKE_NEEDS, FrontOfficeDecoder())
    # Case closure (no more documents) and each referral's status (what may be assessed).
    runtime.consume(topics.CASES, EventDecoder(CaseClosed, *REFERRAL_EVENT_BY_STATUS.values()))
    return runtime


def create_app(settings: IntakeSettings | None = None) -> FastStream:
    """The intake application."""
    return build_runtime(settings).build_app()
