"""When a partner's endpoint is retried (specs/partners.md, `sncf`): pure time arithmetic.

First retry after 1 s, doubling, ±20 % jitter, at most 1 h between two tries, for up to 24 h
from the first try; then the delivery has failed. 2xx is delivered; 5xx, 429, timeouts and
connection errors are retried; any other status fails at once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Literal

FIRST_RETRY = timedelta(seconds=1)
MAX_GAP = timedelta(hours=1)
GIVE_UP_AFTER = timedelta(hours=24)
JITTER = 0.2

Outcome = Literal["delivered", "retry", "failed"]


def classify(status_code: int | None) -> Outcome:
    """What an HTTP answer means for a delivery; None is a timeout or a connection error."""
    if status_code is None or status_code == 429 or 500 <= status_code <= 599:
        return "retry"
    if 200 <= status_code <= 299:
        return "delivered"
    return "failed"


def retry_delay(*, attempt: int, random: Callable[[], float]) -> timedelta:
    """The wait before retry `attempt` (1 = first retry); `random()` is uniform in [0, 1)."""
    if attempt < 1:
        raise ValueError("retries are counted from 1")
    base = FIRST_RETRY * (1 << min(attempt - 1, 32))
    factor = 1 + JITTER * (2 * random() - 1)
    return min(min(base, MAX_GAP) * factor, MAX_GAP)


def next_try_at(
    *, first_tried_at: datetime, failed_at: datetime, attempt: int, random: Callable[[], float]
) -> datetime | None:
    """When to try again after failed try number `attempt`; None once 24 h are spent (failed)."""
    at = failed_at + retry_delay(attempt=attempt, random=random)
    return at if at <= first_tried_at + GIVE_UP_AFTER else None


def schedule(*, first_tried_at: datetime, random: Callable[[], float]) -> list[datetime]:
    """Every retry time if every try fails at once (for tests, and to show the schedule)."""
    times: list[datetime] = []
    at: datetime | None = first_tried_at
    attempt = 1
    while at is not None:
        at = next_try_at(
            first_tried_at=first_tried_at, failed_at=at, attempt=attempt, random=random
        )
        if at is not None:
            times.append(at)
        attempt += 1
    return times
