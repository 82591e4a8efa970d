"""Time is injected: SLA timers, reminders and tests never sleep for real days.

Platform time can be steered for the demo, tests and black-box checks: with `PIMMS_TIME_SCALE=N`
it runs N times faster than real time from `PIMMS_TIME_START`, counted from the real Unix time
`PIMMS_TIME_ANCHOR` (set once by `pimms dev` for every service, so all services share one clock).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")

TIME_SCALE = "PIMMS_TIME_SCALE"
TIME_START = "PIMMS_TIME_START"
TIME_ANCHOR = "PIMMS_TIME_ANCHOR"


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


class SteeredClock:
    """Platform time = start + (real now - anchor) x scale: a demo's days pass in minutes."""

    def __init__(
        self,
        start: datetime,
        anchor: float,
        scale: float,
        *,
        real_time: Callable[[], float] = time.time,
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("the start of a steered clock needs a UTC offset")
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError("the scale of a steered clock must be a positive number")
        if not math.isfinite(anchor):
            raise ValueError("the anchor of a steered clock must be a Unix time")
        self.start = start.astimezone(UTC)
        self.anchor = anchor
        self.scale = scale
        self._real_time = real_time

    def now(self) -> datetime:
        """The platform time now, timezone-aware, UTC."""
        return self.start + timedelta(seconds=(self._real_time() - self.anchor) * self.scale)

    def describe(self) -> dict[str, str | float]:
        """What a start-up warning says of this clock (no personal data: times and a factor)."""
        return {
            "time_scale": self.scale,
            "time_start": self.start.isoformat(),
            "time_anchor": datetime.fromtimestamp(self.anchor, UTC).isoformat(),
        }


class ClockSettingError(ValueError):
    """A PIMMS_TIME_* variable holds a value the clock cannot use; the message names it."""


def is_steered(clock: Clock) -> bool:
    """True when the clock is not the real time (a service logs a warning at start)."""
    return isinstance(clock, SteeredClock)


def clock_from_env(environ: Mapping[str, str]) -> Clock:
    """The clock the environment asks for: steered by PIMMS_TIME_*, else the real one.

    With neither `PIMMS_TIME_SCALE` nor `PIMMS_TIME_START` set (or both empty) the clock is the
    system clock, whatever `PIMMS_TIME_ANCHOR` says. The scale defaults to 1, the start to the
    anchor's instant, the anchor to now. ClockSettingError names the variable that is wrong.
    """
    raw_scale = environ.get(TIME_SCALE, "").strip()
    raw_start = environ.get(TIME_START, "").strip()
    raw_anchor = environ.get(TIME_ANCHOR, "").strip()
    if not raw_scale and not raw_start:
        return SystemClock()
    scale = _scale(raw_scale) if raw_scale else 1.0
    anchor = _anchor(raw_anchor) if raw_anchor else time.time()
    start = _start(raw_start) if raw_start else datetime.fromtimestamp(anchor, UTC)
    return SteeredClock(start, anchor, scale)


def _scale(raw: str) -> float:
    try:
        scale = float(raw)
    except ValueError:
        scale = math.nan
    if not (math.isfinite(scale) and scale > 0):
        raise ClockSettingError(
            f"{TIME_SCALE} must be a positive number (how many times faster platform time "
            f"runs), got {raw!r}"
        )
    return scale


def _start(raw: str) -> datetime:
    try:
        start = datetime.fromisoformat(raw)
    except ValueError:
        raise ClockSettingError(
            f"{TIME_START} must be an ISO-8601 time with offset such as "
            f"2026-11-27T09:00:00+01:00, got {raw!r}"
        ) from None
    if start.tzinfo is None:
        raise ClockSettingError(
            f"{TIME_START} needs a UTC offset (+01:00 or Z), got {raw!r}: without one the "
            "platform cannot tell Paris time from UTC"
        )
    return start.astimezone(UTC)


def _anchor(raw: str) -> float:
    try:
        anchor = float(raw)
    except ValueError:
        anchor = math.nan
    if not math.isfinite(anchor) or anchor < 0:
        raise ClockSettingError(
            f"{TIME_ANCHOR} must be a real Unix time in seconds (when platform time equals "
            f"{TIME_START}), got {raw!r}"
        )
    return anchor


def paris_time(value: datetime) -> datetime:
    """The same instant, in Europe/Paris time (partners want local times with offset)."""
    return value.astimezone(PARIS)
