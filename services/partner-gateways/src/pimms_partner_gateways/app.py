"""Composition root of partner-gateways: `create_app(settings=None) -> FastStream`."""

from __future__ import annotations

import functools
from pathlib import Path

from faststream import FastStream
from pimms_contracts import topics
from pimms_contracts.partners import load_directory
from pimms_contracts.v1.internal import IntakeCaseOpened, IntakeDocumentsAdded
from pimms_contracts.v1.lifecycle import ReferralCancelled, ReferralRequested
from pimms_servicekit.clock import Clock
from pimms_servicekit.pipeline import EventRoute
from pimms_servicekit.runtime import ServiceRuntime

from pimms_partner_gateways import handlers
from pimms_partner_gateways.adapters.registry import PartnerNetwork
from pimms_partner_gateways.settings import GatewaySettings
from pimms_partner_gateways.transports.kafka_responses import PartnerResponsesRoute

MIGRATIONS = Path(__file__).with_name("migrations")


def build_runtime(
    settings: GatewaySettings | None = None, *, clock: Clock | None = None
) -> ServiceRuntime:
    """The gateway's runtime with its routes and its delivery hook (tests use it directly)."""
    settings = settings or GatewaySettings.load()
    partners = PartnerNetwork(load_directory(settings.partner_directory))
    kafka_partners = partners.kafka_partners()
    runtime = ServiceRuntime(
        settings=settings,
        migrations_dir=MIGRATIONS,
        clock=clock,
        produces=[topics.PARTNER_REPORTS, *(p.referrals_topic for p in kafka_partners)],
    )
    runtime.pipeline.route(
        topics.INTAKE_CASES,
        EventRoute(
            {
                IntakeCaseOpened: handlers.store_dossier,
                IntakeDocumentsAdded: handlers.update_documents,
            }
        ),
    )
    runtime.pipeline.route(
        topics.CASES,
        EventRoute(
            {
                ReferralRequested: functools.partial(handlers.request_referral, partners=partners),
                ReferralCancelled: functools.partial(handlers.cancel_referral, partners=partners),
            }
        ),
    )
    for partner in kafka_partners:
        runtime.pipeline.route(
            partner.responses_topic,
            PartnerResponsesRoute(partner_id=partner.partner_id, adapter=partner.adapter),
        )
    runtime.on_sent(handlers.DELIVERY_HOOK, handlers.partner_delivered)
    return runtime


def create_app(settings: GatewaySettings | None = None) -> FastStream:
    """The partner-gateways application."""
    return build_runtime(settings).build_app()
