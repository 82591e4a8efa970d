"""Time is injected: SLA timers, reminders and tests never sleep for real days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")


class Clock(Protocol):
    """Something that tells the time."""

    def now(self) -> datetime:
        """The current time, timezone-aware, UTC."""
        ...


class SystemClock:
    """The real time."""

    def now(self) -> datetime:
        """The current time, timezone-aware, UTC."""
        return datetime.now(UTC)


class ManualClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 11, 27, 8, 30, tzinfo=UTC)

    def now(self) -> datetime:
        """The time the test set."""
        return self._now

    def advance(self, delta: timedelta) -> None:
        """Move the time forward."""
        self._now += delta


def paris_time(value: datetime) -> datetime:
    """The same instant, in Europe/Paris time (partners want local times with offset)."""
    return value.astimezone(PARIS)
