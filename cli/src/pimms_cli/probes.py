"""What a running service says over HTTP: `/health/live`, `/health/ready`, `/metrics`.

`pimms dev` reads them to know a service is up and, at Ctrl-C, how much work is still in flight.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# One sample line of Prometheus text format: name{labels} value
_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})?\s+(?P<value>\S+)")


@dataclass(frozen=True)
class InFlight:
    """Work a service has not finished: outbox rows to publish, records to consume, effects."""

    outbox: int = 0
    lag: int = 0
    effects: int = 0
    unknown: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        """Messages still in flight."""
        return self.outbox + self.lag + self.effects

    @property
    def drained(self) -> bool:
        """True when nothing is in flight and every service answered."""
        return self.total == 0 and not self.unknown

    def __add__(self, other: InFlight) -> InFlight:
        return InFlight(
            outbox=self.outbox + other.outbox,
            lag=self.lag + other.lag,
            effects=self.effects + other.effects,
            unknown=self.unknown + other.unknown,
        )

    def describe(self) -> str:
        """`12 messages (outbox 3, consumer lag 9, effects 0)`."""
        text = (
            f"{self.total} message{'' if self.total == 1 else 's'} (outbox {self.outbox}, "
            f"consumer lag {self.lag}, effects {self.effects})"
        )
        if self.unknown:
            text += f"; no answer from {', '.join(self.unknown)}"
        return text


def metric_sum(text: str, name: str) -> float:
    """The sum of every sample of `name` (all label sets) in Prometheus text."""
    total = 0.0
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and match.group("name") == name:
            total += float(match.group("value"))
    return total


def in_flight_of(*, ready: dict[str, Any], metrics: str) -> InFlight:
    """One service's work in flight, from its `/health/ready` body and its `/metrics` text."""
    backlog = ready.get("checks", {}).get("outbox", {}).get("backlog")
    if backlog is None:
        backlog = metric_sum(metrics, "pimms_outbox_backlog")
    outbox = int(backlog)
    return InFlight(
        outbox=outbox,
        lag=int(metric_sum(metrics, "pimms_consumer_lag")),
        effects=int(metric_sum(metrics, "pimms_effects_backlog")),
    )


def get(url: str, *, timeout: float = 2.0) -> tuple[int, str]:
    """GET `url`: (status, body); status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our own URL
            return int(response.status), response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode("utf-8", "replace")
    except (OSError, ValueError):
        return 0, ""


async def fetch(url: str, *, timeout: float = 2.0) -> tuple[int, str]:
    """`get` without blocking the event loop."""
    return await asyncio.to_thread(get, url, timeout=timeout)


async def service_in_flight(name: str, base_url: str) -> InFlight:
    """Ask one service (by its HTTP base URL) what it still has in flight."""
    (ready_status, ready_body), (metrics_status, metrics_body) = await asyncio.gather(
        fetch(f"{base_url}/health/ready"), fetch(f"{base_url}/metrics")
    )
    if ready_status == 0 or metrics_status != 200:
        return InFlight(unknown=(name,))
    try:
        ready = json.loads(ready_body)
    except ValueError:
        ready = {}
    return in_flight_of(ready=ready if isinstance(ready, dict) else {}, metrics=metrics_body)


async def platform_in_flight(endpoints: Iterable[tuple[str, str]]) -> InFlight:
    """The sum over (name, base URL) of what every service still has in flight."""
    parts = await asyncio.gather(*(service_in_flight(n, u) for n, u in endpoints))
    total = InFlight()
    for part in parts:
        total = total + part
    return total
