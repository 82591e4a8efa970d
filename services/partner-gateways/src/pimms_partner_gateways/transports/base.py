"""The port of a transport: send these bytes, with this key, and say when the partner has them.

A transport never sees a session, a unit of work or a Kafka record: it gets a `Postbox` (publish on
a Kafka topic, or dispatch to a named destination, both after the commit) and the message. The hook
is the typed data run once the partner's side has the message (Kafka acked it, a file was renamed
into place, a webhook answered 2xx) or, for a dispatched message, once delivery failed for good.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from pimms_servicekit.hooks import Hook

TransportKind = Literal["kafka", "file_drop", "webhook"]
MessageKind = Literal["referral", "cancellation", "reminder"]


@dataclass(frozen=True, slots=True)
class PartnerMessage:
    """One message for a partner, already in its format."""

    partner_id: str
    kind: MessageKind
    key: str  # the referral reference: the partner's message key
    payload: bytes

    @property
    def idempotency_key(self) -> str:
        """What the receiver may deduplicate on (a referral is sent once, its cancellation too)."""
        return f"{self.key}:{self.kind}"

    @property
    def event_type(self) -> str:
        """How the outbox and the trace name it."""
        return f"partner.{self.partner_id}.{self.kind}"

    @property
    def detail(self) -> str:
        """A short label for the outbox row (codes only)."""
        return f"{self.partner_id} {self.kind}"


class Postbox(Protocol):
    """What a transport may do: queue bytes that leave after the commit (the unit of work)."""

    def publish(
        self,
        *,
        topic: str,
        key: str,
        value: bytes,
        event_type: str,
        headers: Sequence[tuple[str, bytes]] = (),
        detail: str | None = None,
        hook: Hook | None = None,
    ) -> None:
        """Publish on a Kafka topic."""
        ...

    def dispatch(
        self,
        *,
        destination: str,
        idempotency_key: str,
        payload: bytes,
        detail: str | None = None,
        hook: Hook | None = None,
        not_before: datetime | None = None,
    ) -> None:
        """Deliver to a destination by its dispatcher."""
        ...


class PartnerTransport(Protocol):
    """Queues a partner's message so that it leaves once the transaction commits."""

    @property
    def kind(self) -> TransportKind:
        """The kind, as PartnerDelivered reports it."""
        ...

    def send(self, postbox: Postbox, message: PartnerMessage, *, hook: Hook) -> None:
        """Queue `message` for the partner; `hook` runs when it is delivered (or failed)."""
        ...
