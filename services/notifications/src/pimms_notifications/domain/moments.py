"""One message per moment: notices of one case that reach one person together are one message.

The dispatcher holds a person's first notice for a short window (`moment_window`, default 2 s
of platform time); notices of the same case for the same person arriving within that window
join it, and the message says all of it. The last referral's outcome and the case's closure
are thus one SMS, not two.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from pimms_notifications.domain.notices import COMBINED, Audience, Notice

DEFAULT_WINDOW = timedelta(seconds=2)
DEFAULT_REAL_MINIMUM = timedelta(seconds=2)


def moment_window(
    setting: timedelta, *, time_scale: float, real_minimum: timedelta = DEFAULT_REAL_MINIMUM
) -> timedelta:
    """The window in platform time: the setting, but never shorter than `real_minimum` of real
    time when platform time runs `time_scale` times faster (`pimms dev --time-scale`).

    On a fast clock 2 s of platform time is no time at all (46 µs at x43,200): two events of one
    case would never meet, and a visitor would get the outcome and the closure as two messages.
    At real speed (scale 1 or less) the setting alone rules, so tests may shorten it.
    """
    if time_scale <= 1.0:
        return setting
    return max(setting, real_minimum * time_scale)


@dataclass(frozen=True)
class PendingNotice:
    """A notice waiting to be sent, with its notification id and when it arose (platform time)."""

    notification_id: UUID
    notice: Notice
    at: datetime


@dataclass(frozen=True)
class Moment:
    """The notices one person gets in one message, in the order they arose."""

    audience: Audience
    parts: tuple[PendingNotice, ...]
    send_at: datetime
    """The end of the window: nothing may join after it, so the message may go."""

    @property
    def notification_id(self) -> UUID:
        """The first part's id: a redelivery forms the same moment and rewrites, never adds."""
        return self.parts[0].notification_id

    @property
    def template(self) -> str:
        """The part's own template, or COMBINED when the moment says several things."""
        return self.parts[0].notice.template if len(self.parts) == 1 else COMBINED

    @property
    def notices(self) -> tuple[Notice, ...]:
        """The notices said, in order."""
        return tuple(part.notice for part in self.parts)

    @property
    def merged_ids(self) -> tuple[UUID, ...]:
        """The ids said inside this moment's message besides its own (recorded as merged)."""
        return tuple(part.notification_id for part in self.parts[1:])


def group_moments(
    pending: Iterable[PendingNotice], *, window: timedelta = DEFAULT_WINDOW
) -> tuple[Moment, ...]:
    """Group one case's notices into moments per person: each opens a window the next may join.

    A notice joins the open moment of its audience when it arose at most `window` after that
    moment's first notice; a notice id seen twice (a redelivered event) counts once.
    """
    seen: set[UUID] = set()
    unique: list[PendingNotice] = []
    for item in pending:
        if item.notification_id not in seen:
            seen.add(item.notification_id)
            unique.append(item)
    # A stable sort: notices of one instant keep the order the events came in.
    ordered = sorted(unique, key=lambda item: item.at)
    moments: list[Moment] = []
    open_by_audience: dict[Audience, int] = {}
    for item in ordered:
        audience = item.notice.audience
        index = open_by_audience.get(audience)
        if index is not None and item.at <= moments[index].send_at:
            moment = moments[index]
            moments[index] = Moment(audience, (*moment.parts, item), moment.send_at)
            continue
        open_by_audience[audience] = len(moments)
        moments.append(Moment(audience, (item,), item.at + window))
    return tuple(moments)


def ready(moments: Iterable[Moment], *, now: datetime) -> tuple[Moment, ...]:
    """The moments whose window is over at `now`: they may be sent."""
    return tuple(moment for moment in moments if moment.send_at <= now)
