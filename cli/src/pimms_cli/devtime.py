"""Platform time for `pimms dev --time-scale N [--time-start T]`: one clock for every service.

The services read `PIMMS_TIME_SCALE`, `PIMMS_TIME_START` and `PIMMS_TIME_ANCHOR` (servicekit's
`clock_from_env`). `pimms dev` fixes the anchor once, so every service process, and every restart
of one, tells the same platform time.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from pimms_servicekit.clock import (
    TIME_ANCHOR,
    TIME_SCALE,
    TIME_START,
    ClockSettingError,
    SteeredClock,
    clock_from_env,
)


def time_environment(
    *, scale: float | None, start: str | None, environ: Mapping[str, str], now: float
) -> dict[str, str]:
    """The PIMMS_TIME_* variables every service gets; empty when platform time is real time.

    The command-line values win over the environment's; the anchor is `now` unless the
    environment already fixes one. ClockSettingError names what is wrong.
    """
    raw_scale = str(scale) if scale is not None else environ.get(TIME_SCALE, "").strip()
    raw_start = start if start is not None else environ.get(TIME_START, "").strip()
    if not raw_scale and not raw_start:
        return {}
    anchor = environ.get(TIME_ANCHOR, "").strip() or repr(now)
    wanted = {TIME_SCALE: raw_scale or "1", TIME_ANCHOR: anchor}
    if not raw_start:
        wanted[TIME_START] = datetime.fromtimestamp(float(anchor), UTC).isoformat()
    else:
        wanted[TIME_START] = raw_start
    clock = clock_from_env(wanted)  # raises ClockSettingError naming the variable
    assert isinstance(clock, SteeredClock)
    return {
        TIME_SCALE: _number(clock.scale),
        TIME_START: clock.start.isoformat(),
        TIME_ANCHOR: wanted[TIME_ANCHOR],
    }


def describe_time(variables: Mapping[str, str]) -> str:
    """One line for the terminal: where platform time starts and how fast it runs."""
    if not variables:
        return "platform time: real time"
    return (
        f"platform time: starts at {variables[TIME_START]}, runs {variables[TIME_SCALE]}x "
        f"faster ({TIME_SCALE}={variables[TIME_SCALE]} {TIME_START}={variables[TIME_START]} "
        f"{TIME_ANCHOR}={variables[TIME_ANCHOR]})"
    )


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


__all__ = ["ClockSettingError", "describe_time", "time_environment"]
