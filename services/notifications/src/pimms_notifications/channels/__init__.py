"""Where messages go: one adapter per channel behind the `Channel` protocol."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
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


class Channel(Protocol):
    """Sends messages on one channel; raises OSError when it cannot (the caller records it)."""

    async def send(self, message: OutgoingMessage) -> None:
        """Send one message. Sending the same notification_id again must not add a second one."""
        ...
