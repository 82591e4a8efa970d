"""Which partners the gateway can reach: the directory's data joined with adapters and transports.

Adding a partner: its format module under adapters/, one line in `build_adapter`, its entry in the
directory file, and its golden-file tests; a `mapped-json` partner needs only its directory entry.
A partner whose format or transport has no plugin is known but unreachable: its referrals fail
with `no_adapter` rather than being guessed.

A Kafka partner is reached through its feed; a file-drop or webhook partner once its dispatcher
(a `Destination` named `partner:<id>`) is registered: `PartnerNetwork(directory,
dispatched={"sncf"})`.
The gateway serves every format (`servable_adapter`), except partners with a document checklist
while `REFERRALS_HOLDS_INCOMPLETE_FILES` is False (the one-line switch below).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Literal

from pimms_contracts.partners import FileDropTransport, KafkaTransport, Partner, PartnerDirectory

from pimms_partner_gateways.adapters import eau_grand_lyon, edf, la_poste, prefecture, sncf
from pimms_partner_gateways.adapters.base import PartnerAdapter
from pimms_partner_gateways.adapters.mapped_json import MAPPED_JSON, MappedJsonAdapter
from pimms_partner_gateways.transports.base import PartnerTransport
from pimms_partner_gateways.transports.dispatched import DispatchedTransport
from pimms_partner_gateways.transports.kafka import KafkaFeed

FORMATS: Mapping[str, PartnerAdapter] = {
    adapter.format: adapter for adapter in (edf.ADAPTER, la_poste.ADAPTER)
}
FIXED_FORMATS: Mapping[str, PartnerAdapter] = {
    adapter.format: adapter
    for adapter in (edf.ADAPTER, la_poste.ADAPTER, eau_grand_lyon.ADAPTER, sncf.ADAPTER)
}


def build_adapter(partner: Partner) -> PartnerAdapter | None:
    """The format plugin for a directory entry, configured by its data; None if there is none."""
    if partner.format == MAPPED_JSON and partner.mapping is not None:
        return MappedJsonAdapter(partner_id=partner.id, mapping=partner.mapping)
    if partner.format == prefecture.ADAPTER.format:
        return prefecture.PrefectureAdapter(
            checklist=partner.required_documents or prefecture.CHECKLIST
        )
    return FIXED_FORMATS.get(partner.format)


# THE SWITCH: set to True once referrals holds incomplete files (specs/partners.md, prefecture-69:
# "An incomplete file is not sent"). Until then a partner with a document checklist gets nothing,
# its referrals fail with `no_adapter` and the mediator is told.
REFERRALS_HOLDS_INCOMPLETE_FILES = True


def servable_adapter(partner: Partner) -> PartnerAdapter | None:
    """`build_adapter`, except for a partner with a document checklist while referrals does not
    hold incomplete files (`REFERRALS_HOLDS_INCOMPLETE_FILES`)."""
    if partner.required_documents and not REFERRALS_HOLDS_INCOMPLETE_FILES:
        return None
    return build_adapter(partner)


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
        adapter_for: Callable[[Partner], PartnerAdapter | None] | None = None,
        dispatched: Collection[str] = (),
    ) -> None:
        self.directory = directory
        self.formats = formats
        self._adapter_for = adapter_for or (lambda partner: formats.get(partner.format))
        self._adapters = {p.id: self._adapter_for(p) for p in directory.partners}
        self.dispatched = frozenset(dispatched)

    def reach(self, partner_id: str) -> PartnerLink | Unreachable:
        """How to talk to this partner, or why the gateway cannot."""
        partner = self.directory.get(partner_id)
        if partner is None:
            return "unknown_partner"
        adapter = self._adapters.get(partner_id)
        transport = _transport(partner, dispatched=self.dispatched)
        if adapter is None or transport is None:
            return "no_adapter"
        return PartnerLink(partner=partner, adapter=adapter, transport=transport)

    def adapter(self, partner_id: str) -> PartnerAdapter | None:
        """The format plugin of a partner, if the gateway has one."""
        return self._adapters.get(partner_id)

    def partners_on(self, kind: str) -> list[Partner]:
        """The directory's partners on a transport kind (`webhook`, `file_drop`, `kafka`)."""
        return [p for p in self.directory.partners if p.transport.kind == kind]

    def kafka_partners(self) -> list[KafkaPartner]:
        """Partners on a Kafka feed with a format adapter: their topics are read and written."""
        found = []
        for partner in self.directory.partners:
            adapter = self._adapters.get(partner.id)
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
        every = transport.export_every if isinstance(transport, FileDropTransport) else None
        return DispatchedTransport(partner_id=partner.id, kind=transport.kind, export_every=every)
    return None
