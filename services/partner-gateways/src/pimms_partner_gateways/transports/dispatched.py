"""Transports delivered by a dispatcher after the commit (file drops, signed webhooks).

The message becomes an effect row named `partner:<id>`; the partner's `Destination` (registered
with `runtime.deliver_to`) writes the file or calls the endpoint outside any transaction, retries
with its own policy, and the same delivery hook runs: delivered, or failed for good.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pimms_servicekit.hooks import Hook

from pimms_partner_gateways.transports.base import PartnerMessage, Postbox

DESTINATION_PREFIX = "partner:"


def partner_destination(partner_id: str) -> str:
    """The destination name of a partner's dispatcher."""
    return f"{DESTINATION_PREFIX}{partner_id}"


def destination_partner(name: str) -> str | None:
    """The partner a destination name is for, or None when it is not a partner's."""
    return name.removeprefix(DESTINATION_PREFIX) if name.startswith(DESTINATION_PREFIX) else None


@dataclass(frozen=True)
class DispatchedTransport:
    """A partner reached through its dispatcher."""

    partner_id: str
    kind: Literal["file_drop", "webhook"]

    def send(self, postbox: Postbox, message: PartnerMessage, *, hook: Hook) -> None:
        """Queue the payload as an effect for the partner's destination."""
        postbox.dispatch(
            destination=partner_destination(self.partner_id),
            idempotency_key=message.idempotency_key,
            payload=message.payload,
            detail=message.detail,
            hook=hook,
        )
