"""The visitor's contact profile and the one channel a visitor notification may go on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

VisitorChannel = Literal["sms", "email"]


@dataclass(frozen=True)
class ContactProfile:
    """What notifications keeps of a case to reach its visitor and its mediator."""

    case_id: str
    case_reference: str
    site_id: str
    mediator_id: str
    first_name: str
    phone: str | None
    email: str | None
    consent_sms: bool
    consent_email: bool
    language: str
    unreachable_told: bool = False


@dataclass(frozen=True)
class VisitorReach:
    """The channel chosen for the visitor and the address on it."""

    channel: VisitorChannel
    address: str


def visitor_channel(profile: ContactProfile) -> VisitorReach | None:
    """SMS if the visitor consented and gave a phone, else e-mail likewise, else None."""
    if profile.consent_sms and profile.phone:
        return VisitorReach(channel="sms", address=profile.phone)
    if profile.consent_email and profile.email:
        return VisitorReach(channel="email", address=profile.email)
    return None
