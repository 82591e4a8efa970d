"""Where messages go: one adapter per channel behind the `DeliveryChannel` protocol.

A channel is called by the dispatcher of its destination after the database commit. It never
raises for a delivery problem: it answers `Delivered`, `TransientFailure` (try again later) or
`PermanentFailure` (this message will never go through this channel; fall back). Delivering the
same notification id twice is harmless: the file is rewritten, the SMS provider receives the same
`tag`, the e-mail the same `Message-ID`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from uuid import UUID


@dataclass(frozen=True)
class OutgoingMessage:
    """One message for one person. It holds an address and a text: never log it."""

    notification_id: UUID
    to: str
    """A phone number (sms), an e-mail address (email) or a mediator id (mediator_inbox)."""
    site_id: str
    subject: str | None
    body: str
    sent_at: datetime
    language: str

    def __repr__(self) -> str:
        return f"OutgoingMessage(notification_id={self.notification_id})"


@dataclass(frozen=True)
class Delivered:
    """The channel took the message; the provider's id when it gives one (for its reports)."""

    provider_message_id: str | None = None


@dataclass(frozen=True)
class TransientFailure:
    """Not now (5xx, timeout, refused connection, rate limit): deliver again later."""

    reason: str
    retry_after: timedelta | None = None
    """The provider's own wait (`Retry-After`), when it said one."""


@dataclass(frozen=True)
class PermanentFailure:
    """Never on this channel (the provider refused this message): fall back, do not retry."""

    reason: str


DeliveryResult = Delivered | TransientFailure | PermanentFailure


class DeliveryChannel(Protocol):
    """Delivers messages on one channel, after the commit; never raises for a delivery problem."""

    async def deliver(self, message: OutgoingMessage) -> DeliveryResult:
        """Deliver one message; the same notification_id again never makes a second message."""
        ...


class Channel(Protocol):
    """The former interface (raises OSError when it cannot); kept until the dispatcher lands."""

    async def send(self, message: OutgoingMessage) -> None:
        """Send one message. Sending the same notification_id again must not add a second one."""
        ...
