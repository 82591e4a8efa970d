"""Which partners the gateway can reach: the directory's data joined with adapters and transports.

Adding a partner: its format module under adapters/, one line in FORMATS, its entry in the
directory file, and its golden-file tests. A partner whose format or transport has no plugin yet is
known but unreachable: its referrals fail with `no_adapter` rather than being guessed. A file-drop
or webhook partner is reachable once its dispatcher (a `Destination` named `partner:<id>`) is
registered: `PartnerNetwork(directory, dispatched={"sncf"})`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal

from pimms_contracts.partners import KafkaTransport, Partner, PartnerDirectory

from pimms_partner_gateways.adapters import edf, la_poste
from pimms_partner_gateways.adapters.base import PartnerAdapter
from pimms_partner_gateways.transports.base import PartnerTransport
from pimms_partner_gateways.transports.dispatched import DispatchedTransport
from pimms_partner_gateways.transports.kafka import KafkaFeed

FORMATS: Mapping[str, PartnerAdapter] = {
    adapter.format: adapter for adapter in (edf.ADAPTER, la_poste.ADAPTER)
}

Unreachable = Literal["unknown_partner", "no_adapter"]


@dataclass(frozen=True)
class PartnerLink:
    """A partner the gateway can talk to: its format and its transport."""

    partner: Partner
    adapter: PartnerAdapter
    transport: PartnerTransport

    @property
    def partner_id(self) -> str:
        """The partner's id."""
        return self.partner.id


@dataclass(frozen=True)
class KafkaPartner:
    """A partner reached over Kafka, whose answers the gateway reads from its responses topic."""

    partner_id: str
    adapter: PartnerAdapter
    referrals_topic: str
    responses_topic: str


class PartnerNetwork:
    """The partner directory, as far as the gateway has adapters for it."""

    def __init__(
        self,
        directory: PartnerDirectory,
        formats: Mapping[str, PartnerAdapter] = FORMATS,
        *,
        dispatched: Collection[str] = (),
    ) -> None:
        self.directory = directory
        self.formats = formats
        self.dispatched = frozenset(dispatched)

    def reach(self, partner_id: str) -> PartnerLink | Unreachable:
        """How to talk to this partner, or why the gateway cannot."""
        partner = self.directory.get(partner_id)
        if partner is None:
            return "unknown_partner"
        adapter = self.formats.get(partner.format)
        transport = _transport(partner, dispatched=self.dispatched)
        if adapter is None or transport is None:
            return "no_adapter"
        return PartnerLink(partner=partner, adapter=adapter, transport=transport)

    def kafka_partners(self) -> list[KafkaPartner]:
        """Partners on a Kafka feed with a format adapter: their topics are read and written."""
        found = []
        for partner in self.directory.partners:
            adapter = self.formats.get(partner.format)
            if adapter is not None and isinstance(partner.transport, KafkaTransport):
                found.append(
                    KafkaPartner(
                        partner_id=partner.id,
                        adapter=adapter,
                        referrals_topic=partner.transport.referrals_topic,
                        responses_topic=partner.transport.responses_topic,
                    )
                )
        return found


def _transport(partner: Partner, *, dispatched: frozenset[str]) -> PartnerTransport | None:
    """The transport plugin for the partner (file drop and webhook: when it has a dispatcher)."""
    transport = partner.transport
    if isinstance(transport, KafkaTransport):
        return KafkaFeed(topic=transport.referrals_topic)
    if partner.id in dispatched:
        return DispatchedTransport(partner_id=partner.id, kind=transport.kind)
    return None
