"""Composition root of reporting: `create_app(settings=None) -> FastStream`."""

from __future__ import annotations

from pathlib import Path

from faststream import FastStream
from pimms_contracts import topics
from pimms_contracts.v1.assessments import AssessmentRecorded
from pimms_contracts.v1.notifications import NotificationFailed, NotificationSent
from pimms_servicekit.clock import Clock
from pimms_servicekit.routing import EventDecoder
from pimms_servicekit.runtime import ServiceRuntime

from pimms_reporting import handlers
from pimms_reporting.adapters.decoders import CasesDecoder
from pimms_reporting.adapters.repository import ReportingRepos
from pimms_reporting.settings import ReportingSettings

MIGRATIONS = Path(__file__).with_name("migrations")
TOPICS = (topics.CASES, topics.NOTIFICATIONS, topics.INTAKE_ASSESSMENTS)


def build_runtime(
    settings: ReportingSettings | None = None, *, clock: Clock | None = None
) -> ServiceRuntime[ReportingRepos]:
    """Reporting's runtime with what it reads (tests and the rebuild use it directly)."""
    runtime = ServiceRuntime(
        settings=settings or ReportingSettings.load(),
        migrations_dir=MIGRATIONS,
        handlers=handlers.handles,
        repositories=ReportingRepos,
        clock=clock,
    )
    runtime.consume(topics.CASES, CasesDecoder())
    runtime.consume(topics.NOTIFICATIONS, EventDecoder(NotificationSent, NotificationFailed))
    runtime.consume(topics.INTAKE_ASSESSMENTS, EventDecoder(AssessmentRecorded))
    return runtime


def create_app(settings: ReportingSettings | None = None) -> FastStream:
    """The reporting application."""
    return build_runtime(settings).build_app()
