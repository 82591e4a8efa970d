"""Composition root of partner-gateways: `create_app(settings=None) -> FastStream`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from faststream import FastStream
from pimms_contracts import topics
from pimms_contracts.partners import load_directory
from pimms_contracts.v1.internal import IntakeCaseOpened, IntakeDocumentsAdded
from pimms_contracts.v1.lifecycle import ReferralCancelled, ReferralRequested
from pimms_servicekit.clock import Clock
from pimms_servicekit.effects import Destination
from pimms_servicekit.routing import EventDecoder
from pimms_servicekit.runtime import ServiceRuntime

from pimms_partner_gateways import handlers
from pimms_partner_gateways.adapters.registry import PartnerNetwork, servable_adapter
from pimms_partner_gateways.adapters.repository import GatewayRepos
from pimms_partner_gateways.settings import GatewaySettings
from pimms_partner_gateways.transports.dispatched import destination_partner
from pimms_partner_gateways.transports.kafka_responses import PartnerResponsesDecoder
from pimms_partner_gateways.transports.refusals import RefusalsDecoder

MIGRATIONS = Path(__file__).with_name("migrations")


def build_runtime(
    settings: GatewaySettings | None = None,
    *,
    clock: Clock | None = None,
    destinations: Sequence[Destination] = (),
) -> ServiceRuntime[GatewayRepos]:
    """The gateway's runtime with what it reads, its partners' dispatchers and its hooks.

    `destinations`: the dispatchers of file-drop and webhook partners, named `partner:<id>`.
    """
    settings = settings or GatewaySettings.load()
    dispatched = {p for d in destinations if (p := destination_partner(d.name)) is not None}
    partners = PartnerNetwork(
        load_directory(settings.partner_directory),
        dispatched=dispatched,
        adapter_for=servable_adapter,
    )
    kafka_partners = partners.kafka_partners()
    runtime = ServiceRuntime(
        settings=settings,
        migrations_dir=MIGRATIONS,
        handlers=handlers.handles,
        repositories=lambda session: GatewayRepos(session, partners=partners),
        hooks=handlers.hooks,
        clock=clock,
        produces=[topics.PARTNER_REPORTS, *(p.referrals_topic for p in kafka_partners)],
    )
    runtime.consume(topics.INTAKE_CASES, EventDecoder(IntakeCaseOpened, IntakeDocumentsAdded))
    runtime.consume(topics.CASES, EventDecoder(ReferralRequested, ReferralCancelled))
    runtime.consume(topics.REFERRAL_ALERTS, RefusalsDecoder())
    for partner in kafka_partners:  # their dead letters (`<responses>.dlt`) are the gateway's
        runtime.consume(
            partner.responses_topic,
            PartnerResponsesDecoder(partner_id=partner.partner_id, adapter=partner.adapter),
        )
    for destination in destinations:
        runtime.deliver_to(destination)
    return runtime


def create_app(settings: GatewaySettings | None = None) -> FastStream:
    """The partner-gateways application."""
    return build_runtime(settings).build_app()
