"""`pimms demo`: plays the morning on a running platform (or one it starts), prints the table."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Mapping, Sequence

from pimms_servicekit.kafka import broker_reachable

from pimms_cli.config import DEFAULT_BOOTSTRAP, configured_bootstrap, data_dir
from pimms_cli.demo.checks import problems
from pimms_cli.demo.frontdesk import Message
from pimms_cli.demo.observer import Observer
from pimms_cli.demo.partners import SIMULATORS, PartnerSimulator
from pimms_cli.demo.report import report
from pimms_cli.demo.scenario import morning
from pimms_cli.demo.story import Story
from pimms_cli.kafkatail import KafkaTail, Producer
from pimms_cli.platform import Platform, platform_is_running
from pimms_cli.terminal import console


class Morning:
    """Sends what the observer says, feeds it what the topics say, until every story is done."""

    def __init__(
        self,
        bootstrap: str,
        stories: Sequence[Story],
        simulators: Mapping[str, PartnerSimulator] = SIMULATORS,
    ) -> None:
        self.observer = Observer(stories, simulators)
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
                    await asyncio.wait_for(self.tail.changed.wait(), timeout=0.5)
            await self._absorb()
            return not self.unfinished()
        finally:
            await self.tail.stop()
            await self.producer.stop()

    async def _absorb(self) -> None:
        new = self.tail.records[self._read :]
        self._read += len(new)
        await self._send(self.observer.observe(new))

    async def _send(self, messages: Sequence[Message]) -> None:
        for message in messages:
            await self.producer.send(
                message.topic, key=message.key, value=message.value, headers=message.headers
            )


async def run_demo(*, timeout: float = 90.0) -> int:
    """Use the running platform, or start one; play the morning; print the table."""
    started = time.monotonic()
    directory = data_dir()
    bootstrap = configured_bootstrap() or DEFAULT_BOOTSTRAP
    platform: Platform | None = None
    if await broker_reachable(bootstrap) and platform_is_running(directory):
        print(f"Using the platform running on {bootstrap} (data in {directory}).", flush=True)
    else:
        print(
            "No platform running: starting one (embedded broker, SQLite in "
            f"{directory}; logs in {directory / 'logs'}).",
            flush=True,
        )
        platform = Platform(data_dir=directory, bootstrap=configured_bootstrap(), echo=False)
        try:
            await platform.start()
            await platform.wait_ready()
        except RuntimeError as exc:
            print(f"pimms demo: {exc}", file=sys.stderr)
            await platform.stop()
            return 1
        bootstrap = platform.bootstrap_servers
        print(
            f"Platform ready in {time.monotonic() - started:.1f} s (Kafka at {bootstrap}).",
            flush=True,
        )
    played = Morning(bootstrap, morning())
    try:
        ok = await played.play(timeout)
    finally:
        if platform is not None:
            await platform.stop()
    stories, followed = played.observer.stories, played.observer.followed
    out = console()
    out.print()
    out.print(report(stories, followed))
    out.print()
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
