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
    number: int = 0  # a reminder's number; a referral sent again (more documents): its revision

    @property
    def idempotency_key(self) -> str:
        """What the receiver may deduplicate on: `<reference>:<kind>[:<number>]`."""
        base = f"{self.key}:{self.kind}"
        return f"{base}:{self.number}" if self.number else base

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

    def now(self) -> datetime:
        """The platform time."""
        ...

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


def parse_idempotency_key(key: str) -> tuple[str, MessageKind, int]:
    """(reference, kind, number) of a `PartnerMessage.idempotency_key`."""
    parts = key.split(":")
    number = 0
    if len(parts) >= 3 and parts[-1].isdigit():
        number = int(parts.pop())
    kind = parts.pop() if len(parts) >= 2 else "referral"
    if kind not in ("referral", "cancellation", "reminder"):
        raise ValueError("not a partner message key")
    reference = ":".join(parts)
    return reference, kind, number  # type: ignore[return-value]
