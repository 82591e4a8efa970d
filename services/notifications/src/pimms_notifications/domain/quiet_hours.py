"""Quiet hours: no SMS between 21:00 and 08:00, Paris time. It waits for 08:00, never dropped.

E-mail and the mediator inbox are not deferred: a phone buzzes, a mailbox does not.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")
QUIET_FROM = time(21, 0)
QUIET_UNTIL = time(8, 0)


def in_quiet_hours(now: datetime, *, start: time = QUIET_FROM, end: time = QUIET_UNTIL) -> bool:
    """Whether `now` (timezone-aware) falls in the quiet hours, Paris time."""
    local = now.astimezone(PARIS).time()
    if start > end:  # over midnight, as 21:00-08:00
        return local >= start or local < end
    return start <= local < end


def sms_send_time(now: datetime, *, start: time = QUIET_FROM, end: time = QUIET_UNTIL) -> datetime:
    """`now` outside the quiet hours, else the next 08:00 Paris time (same zone as `now`)."""
    if now.tzinfo is None:
        raise ValueError("sms_send_time needs a timezone-aware time")
    if not in_quiet_hours(now, start=start, end=end):
        return now
    local = now.astimezone(PARIS)
    day = local.date() if local.time() < end else local.date() + timedelta(days=1)
    # Built from the wall-clock date, so a daylight saving change overnight still gives 08:00.
    return datetime.combine(day, end, tzinfo=PARIS).astimezone(now.tzinfo)
