"""Fallbacks: a visitor message that cannot go on its channel tries the next one they allow.

SMS failed for good (provider refusal, failed delivery report) -> e-mail where the visitor
consented and gave an address -> the mediator is told the visitor cannot be reached (once per
case). A transient failure is not a fallback: the dispatcher retries the same channel later.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from pimms_notifications.domain.contacts import ContactProfile, VisitorChannel, VisitorReach

FALLBACK_ORDER: tuple[VisitorChannel, ...] = ("sms", "email")


@dataclass(frozen=True)
class TellMediator:
    """No channel is left for the visitor: the mediator hears it, unless already told."""

    reason: str
    tell: bool
    """False when the mediator was already told for this case (told once per case)."""


def reach_on(profile: ContactProfile, channel: VisitorChannel) -> VisitorReach | None:
    """The visitor's address on `channel` when they consented to it and gave one."""
    if channel == "sms" and profile.consent_sms and profile.phone:
        return VisitorReach(channel="sms", address=profile.phone)
    if channel == "email" and profile.consent_email and profile.email:
        return VisitorReach(channel="email", address=profile.email)
    return None


def next_visitor_reach(
    profile: ContactProfile, *, failed: Collection[VisitorChannel], reason: str
) -> VisitorReach | TellMediator:
    """The next channel after those that `failed` for good, or the mediator with `reason`."""
    for channel in FALLBACK_ORDER:
        if channel in failed:
            continue
        reach = reach_on(profile, channel)
        if reach is not None:
            return reach
    return TellMediator(reason=reason, tell=not profile.unreachable_told)
