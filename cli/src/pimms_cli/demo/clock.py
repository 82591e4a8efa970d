"""Platform time in the demo: fast enough for a silent partner to be chased to expiry in a minute.

A platform the demo starts runs 43,200 times faster (twelve hours a second, as
`pimms dev --time-scale 43200`): EDF's ladder (reminder at 48 h, escalation at 96 h, expiry 15 days
after transmission) takes half a minute. A platform already running keeps its own clock: the demo
reads it from the start-up warning the services log (`clock.steered`, in `<data dir>/logs`) and
leaves out the stories whose ladder would not end within its timeout.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pimms_servicekit.clock import TIME_SCALE, TIME_START

from pimms_cli.devtime import time_environment

DEMO_TIME_SCALE = 43_200.0
# The scheduler's pass every half real second (6 h of platform time at the demo's scale), so the
# steps of a ladder fire when due rather than together.
TIMER_INTERVAL = {"PIMMS_REFERRALS_TIMER_INTERVAL_S": "0.5"}
# Notifications' moment window (one message per moment) keeps 2 real seconds on a fast clock by
# itself (PIMMS_NOTIFICATIONS_MOMENT_WINDOW_REAL_MIN_S): nothing to set here.
# Real seconds a story's ladder may take at most, out of the demo's timeout: the platform must
# also route, transmit, and tell everybody.
MARGIN_S = 20.0


@dataclass(frozen=True)
class PlatformTime:
    """How fast a platform's time runs (scale 1: real time), and what it is now."""

    scale: float = 1.0
    start: datetime | None = None
    anchor: float | None = None

    @property
    def steered(self) -> bool:
        """True when the platform's time is not the real time."""
        return self.start is not None or self.scale != 1.0

    def now(self, *, real: float | None = None) -> datetime:
        """The platform's time now (the real time when its start is not known)."""
        real = time.time() if real is None else real
        if self.start is None or self.anchor is None:
            return datetime.fromtimestamp(real, UTC)
        return self.start + timedelta(seconds=(real - self.anchor) * self.scale)

    def real_seconds(self, span: timedelta) -> float:
        """How many real seconds `span` of platform time lasts."""
        return span.total_seconds() / self.scale

    def describe(self) -> str:
        """One line for the terminal."""
        if not self.steered:
            return "platform time: real time"
        return (
            f"platform time: {self.scale:g}x faster than real time "
            f"(one real second is {timedelta(seconds=self.scale)} of platform time)"
        )


def own_platform_time(environ: Mapping[str, str], *, now: float) -> dict[str, str]:
    """The PIMMS_TIME_* (and scheduler) variables of the platform the demo starts.

    The demo's scale unless the environment sets one (PIMMS_TIME_SCALE, PIMMS_TIME_START).
    """
    chosen = environ.get(TIME_SCALE, "").strip() or environ.get(TIME_START, "").strip()
    clock = time_environment(
        scale=None if chosen else DEMO_TIME_SCALE, start=None, environ=environ, now=now
    )
    extra = {k: v for k, v in TIMER_INTERVAL.items() if k not in environ}
    return {**clock, **extra}


def platform_time_of(variables: Mapping[str, str]) -> PlatformTime:
    """The PlatformTime the PIMMS_TIME_* variables describe."""
    if not variables:
        return PlatformTime()
    return PlatformTime(
        scale=float(variables[TIME_SCALE]),
        start=datetime.fromisoformat(variables[TIME_START]),
        anchor=float(variables["PIMMS_TIME_ANCHOR"]),
    )


def running_platform_time(data: Path, *, service: str = "referrals") -> PlatformTime | None:
    """The clock of the platform running on this data directory, from its last start's log.

    Every service logs `clock.steered` (scale, start, anchor) just before `service.starting` when
    its clock is steered. None when there is no log to tell (a platform not run by `pimms dev`).
    """
    logs = sorted((data / "logs").glob(f"{service}*.log"))
    if not logs:
        return None
    found: PlatformTime | None = None
    pending = PlatformTime()
    with logs[0].open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if '"clock.steered"' not in line and '"service.starting"' not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") == "clock.steered":
                pending = _steered(entry)
            elif entry.get("event") == "service.starting":
                found, pending = pending, PlatformTime()
    return found


def _steered(entry: Mapping[str, object]) -> PlatformTime:
    """The clock a `clock.steered` line describes. The log's redaction may have masked digits of
    its times (they look like phone numbers to it): the scale is what matters here."""
    try:
        scale = float(str(entry["time_scale"]))
    except (KeyError, ValueError):
        return PlatformTime()
    try:
        start = datetime.fromisoformat(str(entry["time_start"]))
        anchor = datetime.fromisoformat(str(entry["time_anchor"])).timestamp()
    except (KeyError, ValueError):
        return PlatformTime(scale=scale)
    return PlatformTime(scale=scale, start=start, anchor=anchor)


def ladder_fits(clock: PlatformTime, *, resolve_within: timedelta, timeout: float) -> bool:
    """True when a referral transmitted now expires, on this clock, within the demo's timeout."""
    return clock.real_seconds(resolve_within) <= max(0.0, timeout - MARGIN_S)
