"""Composition root of partner-gateways: `create_app(settings=None) -> FastStream`.

What runs: the pipeline (intake's dossiers, referrals' requests, cancellations, reminders and
forwarded documents, Kafka partners' answers, refused reports); one dispatcher per file-drop or
webhook partner; on the HTTP server, `POST /partners/<id>/responses` for webhook partners; in the
background, the inbound folders of file-drop partners and the partner directory file, reloaded
when it changes (a bad new version is refused, the last good one stays).

Reloading applies to what partners are, serve and agree to (categories, territory, SLAs, URLs,
folders, mappings, secrets' variable names). A file-drop or webhook partner the file gains gets its
dispatcher at once (its folders and endpoint are read from the directory already). A partner on a
new Kafka topic needs a restart for its answers' topic to be read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from faststream import FastStream
from pimms_contracts import topics
from pimms_contracts.partners import Partner, PartnerDirectory, load_directory
from pimms_contracts.v1.internal import IntakeCaseOpened, IntakeDocumentsAdded
from pimms_contracts.v1.lifecycle import (
    ReferralCancelled,
    ReferralDocumentsForwarded,
    ReferralReminded,
    ReferralRequested,
)
from pimms_servicekit.batch_effects import deliver_batches_to
from pimms_servicekit.clock import Clock
from pimms_servicekit.directory_watch import WatchedFile
from pimms_servicekit.effects import Destination
from pimms_servicekit.logging import get_logger
from pimms_servicekit.routing import EventDecoder
from pimms_servicekit.runtime import ServiceRuntime

from pimms_partner_gateways import handlers
from pimms_partner_gateways.adapters.registry import PartnerNetwork, servable_adapter
from pimms_partner_gateways.adapters.repository import GatewayRepos
from pimms_partner_gateways.domain.model import UnknownFieldNames
from pimms_partner_gateways.inputs import InboundFolders, webhook_applier
from pimms_partner_gateways.settings import GatewaySettings
from pimms_partner_gateways.transports.dispatched import destination_partner
from pimms_partner_gateways.transports.file_drop import FileDropDestination
from pimms_partner_gateways.transports.kafka_responses import PartnerResponsesDecoder
from pimms_partner_gateways.transports.refusals import RefusalsDecoder
from pimms_partner_gateways.transports.webhook import WebhookDestination
from pimms_partner_gateways.transports.webhook_inbound import RESPONSES_PATH, WebhookResponses

MIGRATIONS = Path(__file__).with_name("migrations")
log = get_logger("pimms.partner_gateways")


@dataclass
class Partners:
    """The partner network of the current directory (rebuilt when the file changes)."""

    dispatched: set[str]
    network: PartnerNetwork = field(init=False)
    unknown_fields: UnknownFieldNames = field(default_factory=UnknownFieldNames)

    def use(self, directory: PartnerDirectory) -> None:
        """Serve this directory from now on."""
        self.network = PartnerNetwork(
            directory, dispatched=self.dispatched, adapter_for=servable_adapter
        )

    def current(self) -> PartnerNetwork:
        """The network now."""
        return self.network

    def directory(self) -> PartnerDirectory:
        """The directory now."""
        return self.network.directory


@dataclass
class Gateway:
    """The gateway's runtime and the parts tests and tools reach: partners, folders, webhooks."""

    runtime: ServiceRuntime[GatewayRepos]
    partners: Partners
    directory: WatchedFile[PartnerDirectory]
    inbound: InboundFolders
    webhooks: WebhookResponses
    destinations: dict[str, Destination]


def build_gateway(
    settings: GatewaySettings | None = None,
    *,
    clock: Clock | None = None,
    destinations: Sequence[Destination] = (),
    environ: Mapping[str, str] | None = None,
) -> Gateway:
    """Everything the gateway runs, wired.

    `destinations`: dispatchers to use instead of the built ones (named `partner:<id>`); every
    other file-drop or webhook partner of the directory gets its `FileDropDestination` or
    `WebhookDestination`. `environ`: where webhook secrets are read (default `os.environ`).
    """
    settings = settings or GatewaySettings.load()
    env = os.environ if environ is None else environ
    first = load_directory(settings.partner_directory)
    given = {d.name: d for d in destinations}
    built = {
        f"partner:{p.id}"
        for p in first.partners
        if p.transport.kind in ("file_drop", "webhook") and f"partner:{p.id}" not in given
    }
    dispatched = {p for name in (*given, *built) if (p := destination_partner(name)) is not None}
    partners = Partners(dispatched=dispatched)
    partners.use(first)

    def on_directory(changed: PartnerDirectory) -> None:
        for partner in changed.partners:  # a partner the file gains gets its dispatcher first
            if _dispatched_kind(partner.transport.kind) and f"partner:{partner.id}" not in wired:
                late.start(wire(partner))
                partners.dispatched.add(partner.id)
                log.info("partner.dispatcher_added", partner_id=partner.id)
        partners.use(changed)

    directory = WatchedFile(
        settings.partner_directory,
        load=load_directory,
        what="partner directory",
        on_change=on_directory,
    )
    kafka_partners = partners.network.kafka_partners()
    others = [p.id for p in first.partners if p.transport.kind != "kafka"]
    runtime = ServiceRuntime(
        settings=settings,
        migrations_dir=MIGRATIONS,
        handlers=handlers.handles,
        repositories=lambda session: GatewayRepos(
            session, partners=partners.network, unknown_fields=partners.unknown_fields
        ),
        hooks=handlers.hooks,
        clock=clock,
        produces=[
            topics.PARTNER_REPORTS,
            *(p.referrals_topic for p in kafka_partners),
            # refused reports of file-drop and webhook partners go to their responses' dead letters
            *(topics.dead_letters(topics.partner_responses(p)) for p in others),
        ],
    )
    # A referral parked for a dossier that never comes fails after the bound; the mediator hears.
    runtime.on_parked_expired = handlers.parked_too_long
    runtime.consume(topics.INTAKE_CASES, EventDecoder(IntakeCaseOpened, IntakeDocumentsAdded))
    runtime.consume(
        topics.CASES,
        EventDecoder(
            ReferralRequested, ReferralCancelled, ReferralReminded, ReferralDocumentsForwarded
        ),
    )
    runtime.consume(topics.REFERRAL_ALERTS, RefusalsDecoder())
    for feed in kafka_partners:  # their dead letters (`<responses>.dlt`) are the gateway's
        runtime.consume(
            feed.responses_topic,
            PartnerResponsesDecoder(partner_id=feed.partner_id, adapter=feed.adapter),
        )
    wired: dict[str, Destination] = dict(given)
    for destination in given.values():
        runtime.deliver_to(destination)

    def wire(partner: Partner) -> str:
        """Build and register the dispatcher of a file-drop or webhook partner; its name."""
        name = f"partner:{partner.id}"
        if partner.transport.kind == "file_drop":
            drop = FileDropDestination(
                partner_id=partner.id,
                directory=partners.directory,
                data_dir=settings.data_dir,
                clock=runtime.clock,
            )
            deliver_batches_to(runtime, drop)
            wired[name] = drop
        else:
            hook = WebhookDestination(
                partner_id=partner.id,
                directory=partners.directory,
                clock=runtime.clock,
                environ=env,
                timeout=settings.webhook_timeout_s,
            )
            runtime.deliver_to(hook)
            wired[name] = hook
        return name

    for partner in first.partners:
        if f"partner:{partner.id}" in built:
            wire(partner)
    late = LateDispatchers(runtime=runtime)
    webhooks = WebhookResponses(
        partners=partners.current,
        apply=webhook_applier(runtime),
        clock=runtime.clock,
        environ=env,
        body_limit=settings.webhook_body_limit,
    )
    runtime.http_route(RESPONSES_PATH, webhooks.endpoint, methods=["POST"])
    inbound = InboundFolders(
        runtime=runtime,
        partners=partners.current,
        data_dir=settings.data_dir,
        lines_per_transaction=settings.inbound_lines_per_transaction,
    )
    runtime.background(
        "partner-directory",
        lambda: directory.watch(interval=settings.directory_poll_interval_s),
    )
    runtime.background(
        "inbound-folders", lambda: inbound.watch(interval=settings.inbound_poll_interval_s)
    )
    runtime.background("late-dispatchers", lambda: late.run(closing=wired.values()))
    return Gateway(
        runtime=runtime,
        partners=partners,
        directory=directory,
        inbound=inbound,
        webhooks=webhooks,
        destinations=wired,
    )


def _dispatched_kind(kind: str) -> bool:
    """Partners on these transports are reached by a dispatcher of their own."""
    return kind in ("file_drop", "webhook")


@dataclass
class LateDispatchers:
    """Dispatchers of partners the directory gained while the gateway runs (the runtime starts
    those of the first directory); at the end, the webhook connection pools are closed."""

    runtime: ServiceRuntime[GatewayRepos]
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    running: bool = False

    def start(self, name: str) -> None:
        """Run the dispatcher registered as `name`: now if the service runs, else at its start."""
        if not self.running:
            self.pending.append(name)
            return
        dispatcher = self.runtime.dispatchers[name]
        self.tasks.append(asyncio.get_running_loop().create_task(dispatcher.run(), name=name))

    async def run(self, *, closing: Iterable[Destination]) -> None:
        """Serve until the service stops; then stop the late dispatchers and close the pools."""
        self.running = True
        pending, self.pending = self.pending, []
        for name in pending:  # gained between the build and the start
            self.start(name)
        try:
            await asyncio.Event().wait()
        finally:
            self.running = False
            for task in self.tasks:
                task.cancel()
            for task in self.tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for destination in list(closing):
                if isinstance(destination, WebhookDestination):
                    await destination.aclose()


def build_runtime(
    settings: GatewaySettings | None = None,
    *,
    clock: Clock | None = None,
    destinations: Sequence[Destination] = (),
    environ: Mapping[str, str] | None = None,
) -> ServiceRuntime[GatewayRepos]:
    """The gateway's runtime (see `build_gateway`)."""
    return build_gateway(settings, clock=clock, destinations=destinations, environ=environ).runtime


def create_app(settings: GatewaySettings | None = None) -> FastStream:
    """The partner-gateways application."""
    return build_runtime(settings).build_app()
