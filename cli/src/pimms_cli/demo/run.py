"""`pimms demo`: plays the morning on a running platform (or one it starts), prints the table.

Partners on Kafka read their feeds through the tail; SNCF and La Banque Postale are small HTTP
servers; Eau du Grand Lyon watches its folders. When the demo starts its own platform, it gives
it a copy of the partner directory (`<data dir>/demo/partner-directory.toml`, named by
`PIMMS_PARTNER_DIRECTORY`) whose webhook URLs point at these servers and whose file drop exports
every 2 seconds, and development webhook secrets (unless already set in the environment).

Platform time (`clock.py`): the platform the demo starts runs 43,200 times faster, so that a
partner that never answers is chased to expiry within the demo. On a platform already running on
real time (`pimms dev` without `--time-scale`), that story is left out, and the demo says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pimms_contracts import topics
from pimms_contracts.partners import (
    DEFAULT_DIRECTORY_PATH,
    DIRECTORY_ENV,
    PartnerDirectory,
    directory_path,
    load_directory,
)
from pimms_servicekit.kafka import broker_reachable
from pimms_servicekit.tansu import free_port

from pimms_cli.config import DEFAULT_BOOTSTRAP, configured_bootstrap, data_dir
from pimms_cli.demo.checks import problems
from pimms_cli.demo.clock import (
    DEMO_TIME_SCALE,
    PlatformTime,
    ladder_fits,
    own_platform_time,
    platform_time_of,
    running_platform_time,
)
from pimms_cli.demo.frontdesk import Message
from pimms_cli.demo.observer import Observer
from pimms_cli.demo.partners import SIMULATORS, EauGrandLyon, PartnerSimulator
from pimms_cli.demo.report import report
from pimms_cli.demo.scenario import morning
from pimms_cli.demo.story import Closes, Story
from pimms_cli.demo.transports import (
    FileDropPartner,
    GatewayWebhooks,
    WebhookPartner,
    demo_directory,
    file_drop_folders,
    webhook_port,
)
from pimms_cli.demo.yearly import (
    SETTLE_TIMEOUT_S,
    demo_year,
    running_endpoints,
    settle,
    write_review,
)
from pimms_cli.kafkatail import KafkaTail, Producer
from pimms_cli.platform import Platform, platform_is_running
from pimms_cli.terminal import console

# Development secrets: the directory names the variables, the demo sets them if they are not set.
DEMO_SECRETS = {
    "PIMMS_SNCF_WEBHOOK_SECRET": "demo-sncf-secret",
    "PIMMS_BANQUE_POSTALE_WEBHOOK_SECRET": "demo-banque-postale-secret",
}
READY_TIMEOUT_S = 180.0  # four services migrating and subscribing on a busy machine
# Every service reads the one directory (the per-service variables override it: set them too).
DIRECTORY_VARIABLES = (
    DIRECTORY_ENV,
    "PIMMS_GATEWAYS_PARTNER_DIRECTORY",
    "PIMMS_REFERRALS_PARTNER_DIRECTORY",
    "PIMMS_NOTIFICATIONS_PARTNER_DIRECTORY",
)


@dataclass
class Outside:
    """The partners outside Kafka: their HTTP servers, their folders, the gateway's endpoint."""

    webhooks: dict[str, WebhookPartner] = field(default_factory=dict)
    files: dict[str, FileDropPartner] = field(default_factory=dict)
    gateway: GatewayWebhooks | None = None

    async def stop(self) -> None:
        """Stop the servers and the client."""
        for server in self.webhooks.values():
            await server.stop()
        if self.gateway is not None:
            await self.gateway.aclose()


class Morning:
    """Sends what the observer says, feeds it what the topics, servers and folders say, until
    every story is done."""

    def __init__(
        self,
        bootstrap: str,
        stories: Sequence[Story],
        simulators: Mapping[str, PartnerSimulator] = SIMULATORS,
        outside: Outside | None = None,
    ) -> None:
        self.observer = Observer(stories, simulators)
        self.simulators = simulators
        self.outside = outside or Outside()
        self.producer = Producer(bootstrap)
        self.tail = KafkaTail(bootstrap, self.observer.topics())
        self._read = 0

    def unfinished(self) -> list[int]:
        """The stories not yet where they should be."""
        stories, followed = self.observer.stories, self.observer.followed
        return [i for i in range(len(stories)) if problems(i, stories=stories, followed=followed)]

    async def play(self, timeout: float) -> bool:
        """True when every story reached its expected state within `timeout` seconds."""
        await self.producer.start()
        await self.tail.start()
        try:
            await self._send(self.observer.opening())
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                self.tail.changed.clear()
                await self._absorb()
                if not self.unfinished():
                    return True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.tail.changed.wait(), timeout=0.25)
            await self._absorb()
            return not self.unfinished()
        finally:
            await self.tail.stop()
            await self.producer.stop()

    async def _absorb(self) -> None:
        new = self.tail.records[self._read :]
        self._read += len(new)
        await self._send(self.observer.observe(new))
        for partner_id, server in self.outside.webhooks.items():
            for body in server.take():
                await self._send(self.observer.received(partner_id, body))
        for partner_id, folder in self.outside.files.items():
            for line in await asyncio.to_thread(folder.take):
                await self._send(self.observer.received(partner_id, line))

    async def _send(self, messages: Sequence[Message]) -> None:
        lines: dict[str, list[bytes]] = {}
        for message in messages:
            partner_id = self._outside_partner(message.topic)
            if partner_id in self.outside.files:
                lines.setdefault(partner_id, []).append(message.value)
            elif partner_id in self.outside.webhooks and self.outside.gateway is not None:
                await self.outside.gateway.post(
                    partner_id, message.value, delivery=str(uuid.uuid4())
                )
            else:
                await self.producer.send(
                    message.topic, key=message.key, value=message.value, headers=message.headers
                )
        for partner_id, answered in lines.items():
            await asyncio.to_thread(
                self.outside.files[partner_id].drop, EauGrandLyon.header, answered
            )

    def _outside_partner(self, topic: str) -> str | None:
        return next(
            (
                p
                for p, s in self.simulators.items()
                if s.transport != "kafka" and topics.partner_responses(p) == topic
            ),
            None,
        )


async def start_outside(
    directory: PartnerDirectory, *, data: Path, own_platform: bool
) -> tuple[Outside, PartnerDirectory]:
    """Start the webhook partners' servers; with its own platform, write the demo's directory."""
    secrets = {name: os.environ.get(name) or value for name, value in DEMO_SECRETS.items()}
    outside = Outside()
    by_partner: dict[str, str] = {}
    for partner_id, simulator in SIMULATORS.items():
        partner = directory.get(partner_id)
        if simulator.transport != "webhook" or partner is None:
            continue
        secret_env = getattr(partner.transport, "secret_env", "")
        by_partner[partner_id] = secrets.get(secret_env) or os.environ.get(secret_env, "")
        server = WebhookPartner(
            partner_id=partner_id,
            secret=by_partner[partner_id],
            port=0 if own_platform else webhook_port(directory, partner_id),
        )
        await server.start()
        outside.webhooks[partner_id] = server
    if own_platform:
        for name, value in secrets.items():
            os.environ[name] = value
        source = directory_path(os.environ)
        text = demo_directory(
            source.read_text(encoding="utf-8"),
            urls={p: s.url() for p, s in outside.webhooks.items()},
        )
        path = data / "demo" / "partner-directory.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        directory = load_directory(path)
        for name in DIRECTORY_VARIABLES:
            os.environ[name] = str(path.resolve())
    for partner_id, simulator in SIMULATORS.items():
        folders = file_drop_folders(directory, partner_id, data)
        if simulator.transport == "file_drop" and folders is not None:
            outside.files[partner_id] = FileDropPartner(outbound=folders[0], inbound=folders[1])
    outside.gateway = GatewayWebhooks(data_dir=data, secrets=by_partner)
    return outside, directory


def stories_for(
    stories: Sequence[Story], *, clock: PlatformTime, partners: PartnerDirectory, timeout: float
) -> tuple[list[Story], list[Story]]:
    """The stories to play on this clock, and those left out: a partner's SLA ladder that would
    not end within the timeout (a platform on real time) cannot be shown."""
    kept: list[Story] = []
    left_out: list[Story] = []
    for story in stories:
        fits = True
        if story.runs_the_ladder and isinstance(story.expect, Closes):
            for partner_id in story.expect.chased:
                partner = partners.get(partner_id)
                fits = fits and partner is not None
                if partner is not None:
                    fits = fits and ladder_fits(
                        clock, resolve_within=partner.resolve_within, timeout=timeout
                    )
        (kept if fits else left_out).append(story)
    return kept, left_out


async def run_demo(*, timeout: float = 90.0) -> int:
    """Use the running platform, or start one; play the morning; print the table."""
    started = time.monotonic()
    directory = data_dir()
    bootstrap = configured_bootstrap() or DEFAULT_BOOTSTRAP
    platform: Platform | None = None
    running = await broker_reachable(bootstrap) and platform_is_running(directory)
    partners = load_directory(directory_path(os.environ) if running else DEFAULT_DIRECTORY_PATH)
    outside, _ = await start_outside(partners, data=directory, own_platform=not running)
    clock_env: dict[str, str] = {}
    if running:
        print(f"Using the platform running on {bootstrap} (data in {directory}).", flush=True)
        known = running_platform_time(directory)
        clock = known or PlatformTime()
        print(
            clock.describe()
            if known is not None
            else "platform time: unknown (no `pimms dev` log in the data directory), "
            "taken as real time",
            flush=True,
        )
    else:
        clock_env = own_platform_time(os.environ, now=time.time())
        clock = platform_time_of({k: v for k, v in clock_env.items() if k.startswith("PIMMS_TIME")})
        print(clock.describe(), flush=True)
    stories, left_out = stories_for(morning(), clock=clock, partners=partners, timeout=timeout)
    for story in left_out:
        print(
            f"Left out: {story.label!r}: on this platform's clock its partner's SLA ladder would "
            f"not end within {timeout:g} s (start the platform with `pimms dev --time-scale "
            f"{DEMO_TIME_SCALE:g}`, or let the demo start its own, to see it).",
            flush=True,
        )
    if not running:
        print(
            "No platform running: starting one (embedded broker, SQLite in "
            f"{directory}; logs in {directory / 'logs'}).",
            flush=True,
        )
        # A free port for its own embedded broker: 9092 may be someone else's on a shared machine.
        platform = Platform(
            data_dir=directory,
            bootstrap=configured_bootstrap(),
            echo=False,
            prefer_port=free_port(),
            extra_env=clock_env,
        )
        try:
            await platform.start()
            await platform.wait_ready(timeout=READY_TIMEOUT_S)
        except RuntimeError as exc:
            print(f"pimms demo: {exc}", file=sys.stderr)
            await platform.stop()
            await outside.stop()
            return 1
        bootstrap = platform.bootstrap_servers
        print(
            f"Platform ready in {time.monotonic() - started:.1f} s (Kafka at {bootstrap}).",
            flush=True,
        )
    played = Morning(bootstrap, stories, outside=outside)
    try:
        ok = await played.play(timeout)
        # The yearly review reads the reporting service's tables: let it catch up first.
        if platform is not None:
            settled = (await platform.drain(SETTLE_TIMEOUT_S)).drained
        else:
            settled = await settle(running_endpoints(directory))
    finally:
        await outside.stop()
        if platform is not None:
            await platform.stop()
    stories, followed = played.observer.stories, played.observer.followed
    out = console()
    out.print()
    out.print(report(stories, followed))
    out.print()
    year = demo_year(played.observer.occurred, default=clock.now().year)
    files, error = await write_review(year)
    if files:
        late = "" if settled else " (the reporting service had not caught up: some cases may lack)"
        for path in files:
            print(f"Yearly review {year} (`pimms report --year {year}`): {path}{late}", flush=True)
    else:
        print(f"pimms demo: the yearly review {year} could not be written: {error}", flush=True)
    passed = len(stories) - len(played.unfinished())
    example = next((f.case_reference for f in followed if f.case_reference), "<reference>")
    # A plain print: the last line is read by scripts (and tests), it must not be wrapped.
    print(
        f"{passed}/{len(stories)} cases reached their expected state in "
        f"{time.monotonic() - started:.1f} s. Notifications: {directory / 'notifications'}; "
        f"try `pimms trace {example}`.",
        flush=True,
    )
    return 0 if ok else 1
