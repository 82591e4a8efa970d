"""Transports delivered by a dispatcher after the commit (file drops, signed webhooks).

The message becomes an effect row named `partner:<id>`; the partner's `Destination` (registered
with `runtime.deliver_to`) writes the file or calls the endpoint outside any transaction, retries
with its own policy, and the same delivery hook runs: delivered, or failed for good.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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


_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def export_slot(now: datetime, *, every: timedelta) -> datetime:
    """The next export time after `now`: exports happen on multiples of `every` (platform time)."""
    step = every.total_seconds()
    if step <= 0:
        return now
    elapsed = (now - _EPOCH).total_seconds()
    return _EPOCH + timedelta(seconds=(elapsed // step + 1) * step)


@dataclass(frozen=True)
class DispatchedTransport:
    """A partner reached through its dispatcher (a file drop's lines wait for the next export)."""

    partner_id: str
    kind: Literal["file_drop", "webhook"]
    export_every: timedelta | None = None

    def send(self, postbox: Postbox, message: PartnerMessage, *, hook: Hook) -> None:
        """Queue the payload as an effect for the partner's destination."""
        postbox.dispatch(
            destination=partner_destination(self.partner_id),
            idempotency_key=message.idempotency_key,
            payload=message.payload,
            detail=message.detail,
            hook=hook,
            not_before=(
                export_slot(postbox.now(), every=self.export_every)
                if self.export_every is not None
                else None
            ),
        )
