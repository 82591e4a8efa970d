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
    for partner in expect.chased:
        found += _chased(partner, seen)
    if expect.held_for:
        found += _held(expect.held_for, seen)
    return found


def told(seen: Followed, audience: str, template: str) -> bool:
    """`audience` got the `template` notification, or one message saying it with more news."""
    return bool(seen.templates[f"{audience} {template}"] or seen.templates[f"{audience} combined"])


def _chased(partner: str, seen: Followed) -> list[str]:
    """The SLA ladder: a reminder in the partner's format, the mediator told, an escalation."""
    found = []
    if not seen.reminders_received[partner]:
        found.append(f"no reminder on {partner}'s feed")
    if f"{partner} reminded 1" not in seen.chased:
        found.append(f"{partner} not reminded")
    if f"{partner} escalated" not in seen.chased:
        found.append(f"{partner} not escalated")
    for template in ("partner_reminded", "referral_escalated", "referral_expired"):
        if not told(seen, "mediator", template):
            found.append(f"mediator not told {template}")
    if not told(seen, "visitor", "referral_expired"):
        found.append("visitor not told of the expiry")
    return found


def _held(documents: tuple[str, ...], seen: Followed) -> list[str]:
    """Held for the missing documents (visitor and mediator told), released once brought."""
    if not seen.held:
        return ["never held"]
    found = []
    if sorted(seen.held[0]) != sorted(documents):
        found.append(f"held for {', '.join(seen.held[0])}")
    for audience in ("visitor", "mediator"):
        if not told(seen, audience, "referral_on_hold_documents"):
            found.append(f"{audience} not told the missing documents")
    if not seen.released:
        found.append("not released")
    return found
