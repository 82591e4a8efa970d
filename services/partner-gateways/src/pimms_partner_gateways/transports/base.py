"""The plugin interface of a transport: hand a partner message over, inside the transaction."""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pimms_servicekit.pipeline import MessageContext

TransportKind = Literal["kafka", "file_drop", "webhook"]


class PartnerTransport(Protocol):
    """Queues a partner's message so it leaves once the transaction commits.

    `on_sent` is the hook data to run once the partner's side has the message (Kafka acked it, a
    file was renamed into place, a webhook answered 2xx): that is when the referral is transmitted.
    """

    @property
    def kind(self) -> TransportKind:
        """The kind, as PartnerDelivered reports it."""
        ...

    def send(
        self,
        ctx: MessageContext,
        *,
        key: str,
        payload: bytes,
        event_type: str,
        detail: str,
        on_sent: dict[str, Any],
    ) -> None:
        """Queue `payload` for the partner."""
        ...
