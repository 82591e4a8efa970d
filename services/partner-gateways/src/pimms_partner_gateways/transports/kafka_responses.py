"""Reading a Kafka partner's responses topic: its payload alone, no CloudEvents headers.

Decoding is the adapter's pure parsing (a bad message is dead-lettered by the pipeline with the
adapter's reason, and nothing is applied); handling looks the referral up and reports the status.
"""

from __future__ import annotations

from typing import Any

from pimms_servicekit.messages import Incoming
from pimms_servicekit.pipeline import Decoded, MessageContext

from pimms_partner_gateways import handlers
from pimms_partner_gateways.adapters.base import PartnerAdapter
from pimms_partner_gateways.domain.model import PartnerAnswer


class PartnerResponsesRoute:
    """A partner's responses topic."""

    def __init__(self, *, partner_id: str, adapter: PartnerAdapter) -> None:
        self.partner_id = partner_id
        self.adapter = adapter

    def decode(self, incoming: Incoming) -> Decoded[PartnerAnswer]:
        """The partner's answer in platform words (BadPartnerMessage if it cannot be read)."""
        return Decoded(
            payload=self.adapter.from_response(incoming.value),
            event_type=f"partner.{self.partner_id}.response",
        )

    async def handle(self, message: Decoded[Any], ctx: MessageContext) -> None:
        """Report the status to referrals."""
        await handlers.report_partner_status(message.payload, ctx, partner_id=self.partner_id)
