"""Each expectation, checked against what was seen: the differences, in words."""

from __future__ import annotations

from collections.abc import Sequence

from pimms_cli.demo.observer import Followed
from pimms_cli.demo.story import (
    Closes,
    DeadLettered,
    ReferralStatus,
    Rejected,
    SameAnswer,
    SameNeedAs,
    StaysUnroutable,
    Story,
)

MEDIATOR_INBOX = "mediator mediator_inbox"


def problems(index: int, *, stories: Sequence[Story], followed: Sequence[Followed]) -> list[str]:
    """What differs from story `index`'s expectation (empty when the case is where it should be)."""
    story, seen = stories[index], followed[index]
    expect = story.expect
    if isinstance(expect, DeadLettered):
        return [] if seen.dead_lettered else ["not dead-lettered yet"]
    if isinstance(expect, SameAnswer):
        assert isinstance(story.submission, SameNeedAs)
        original = followed[story.submission.story]
        if seen.feedback != ["accepted"] or original.feedback[:1] != ["accepted"]:
            return ["no second need.accepted yet"]
        return []
    if isinstance(expect, Rejected):
        if seen.feedback != ["rejected"]:
            return ["no need.rejected yet"]
        return [] if sorted(set(seen.codes)) == sorted(expect.codes) else [f"codes {seen.codes}"]
    if "accepted" not in seen.feedback:
        return ["no need.accepted yet"]
    if isinstance(expect, StaysUnroutable):
        return _stays_unroutable(seen)
    return _closes(expect, seen)


def _stays_unroutable(seen: Followed) -> list[str]:
    found = []
    if "unroutable" not in seen.statuses:
        found.append("not unroutable yet")
    if seen.closed:
        found.append("closed but should stay open")
    if not seen.notifications.get(MEDIATOR_INBOX):
        found.append("mediator not told")
    return found


def _closes(expect: Closes, seen: Followed) -> list[str]:
    found = []
    if seen.closed != expect.outcome:
        found.append(f"case {seen.closed or 'open'}")
    for partner, status in expect.partners.items():
        if seen.partners.get(partner) != status:
            found.append(f"{partner} {seen.partners.get(partner, 'none')}")
        if status is ReferralStatus.CANCELLED and partner not in seen.cancelled_at:
            found.append(f"{partner} not told of the cancellation")
    visitor_told = any(k.startswith("visitor") for k in seen.notifications)
    if expect.visitor_unreachable:
        if visitor_told or "no_reachable_channel" not in seen.failures:
            found.append("unreachable visitor not reported")
    elif seen.closed and not visitor_told:
        found.append("visitor not notified")
    if seen.closed and not seen.notifications.get(MEDIATOR_INBOX):
        found.append("mediator not notified")
    for reason in expect.partner_dead_letters:
        if reason not in seen.partner_dead_letters:
            found.append(f"no partner dead letter {reason}")
    return found
