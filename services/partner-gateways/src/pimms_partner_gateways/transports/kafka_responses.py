"""Reading a Kafka partner's responses topic: its payload alone, no CloudEvents headers.

Decoding is the adapter's pure parsing: a bad message is dead-lettered by the pipeline with the
adapter's reason, and nothing is applied. A good one becomes `PartnerAnswerReceived`, which keeps
the record exactly as read so that it can still be dead-lettered if referrals refuses the report.
"""

from __future__ import annotations

from dataclasses import dataclass

from pimms_servicekit.dead_letters import Original
from pimms_servicekit.messages import Incoming
from pimms_servicekit.routing import Decoded
from pimms_servicekit.unit_of_work import original_of

from pimms_partner_gateways.adapters.base import PartnerAdapter
from pimms_partner_gateways.domain.model import PartnerAnswer


@dataclass(frozen=True, slots=True)
class PartnerAnswerReceived:
    """A partner's answer, in platform words, and the record it came in."""

    partner_id: str
    answer: PartnerAnswer
    original: Original
    unknown_fields: frozenset[str] = frozenset()


class PartnerResponsesDecoder:
    """A partner's responses topic."""

    def __init__(self, *, partner_id: str, adapter: PartnerAdapter) -> None:
        self.partner_id = partner_id
        self.adapter = adapter

    def __call__(self, incoming: Incoming) -> Decoded[PartnerAnswerReceived]:
        """The partner's answer (BadPartnerMessage if it cannot be read)."""
        read = self.adapter.read_response(incoming.value)
        return Decoded(
            payload=PartnerAnswerReceived(
                partner_id=self.partner_id,
                answer=read.answer,
                original=original_of(incoming),
                unknown_fields=read.unknown_fields,
            ),
            event_type=f"partner.{self.partner_id}.response",
        )
