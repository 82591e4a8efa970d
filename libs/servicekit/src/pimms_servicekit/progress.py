"""Stalls are visible: a consumer that makes no progress while it has work is said, twice.

A watch looks every few seconds at two things: how much work the consumer has (its lag: records
between its position and the end of its partitions, or a batch still in its handler), and whether it
progressed (a batch finished) since it last looked. Work without progress for `stall_after` seconds
is a stall: logged once when it starts (`consumer.stalled`, with its reason and the lag) and once
when it ends (`consumer.recovered`, with its duration), and readiness is false meanwhile.

A lag that cannot be measured (the broker does not answer: frozen, unreachable) counts as work: a
consumer that cannot reach its broker is not idle, it is stuck. An idle consumer (no lag, nothing in
its handler) never stalls, however long nothing arrives.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from pimms_servicekit.logging import get_logger
from pimms_servicekit.settings import SettingsError

log = get_logger("pimms.progress")

STALL_AFTER_S = "PIMMS_STALL_AFTER_S"
DEFAULT_STALL_AFTER_S = 10.0

LagSource = Callable[[], Awaitable[int | None]]

# Why a consumer with no progress has work (the `reason` of its stall).
BROKER_UNREACHABLE = "broker_unreachable"
HANDLER_STUCK = "handler_stuck"
LAGGING = "lagging"


def stall_after_from_env(environ: Mapping[str, str]) -> float:
    """`PIMMS_STALL_AFTER_S` (seconds without progress that make a stall), default 10."""
    raw = environ.get(STALL_AFTER_S)
    if raw is None or raw == "":
        return DEFAULT_STALL_AFTER_S
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise SettingsError(f"{STALL_AFTER_S} must be a positive number of seconds, not {raw!r}")
    return value


@dataclass
class Stalled:
    """An ongoing stall."""

    since: float
    reason: str
    lag: int | None


class ProgressWatch:
    """Watches one consumer: `begin()`/`end()` around each batch, `check()` every `interval`."""

    def __init__(
        self,
        *,
        lag: LagSource,
        name: str = "consumer",
        stall_after: float = DEFAULT_STALL_AFTER_S,
        interval: float = 2.0,
        measure_timeout: float = 3.0,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lag = lag
        self.name = name
        self.stall_after = stall_after
        self.interval = interval
        self.measure_timeout = measure_timeout
        self.now = now
        self._measuring: asyncio.Future[int | None] | None = None
        self.stall: Stalled | None = None
        self.stalls = 0  # how many stalls ended or are going on (tests, metrics)
        self._batches = 0  # batches finished: progress
        self._busy_since: float | None = None
        self._seen_batches = 0
        self._last_progress = now()

    @property
    def healthy(self) -> bool:
        """False while a stall lasts."""
        return self.stall is None

    def describe(self) -> dict[str, object]:
        """What readiness shows."""
        if self.stall is None:
            return {"ok": True}
        return {
            "ok": False,
            "reason": self.stall.reason,
            "lag": self.stall.lag,
            "stalled_s": round(self.now() - self.stall.since, 1),
        }

    def begin(self) -> None:
        """A batch enters the handler."""
        self._busy_since = self.now()

    def end(self) -> None:
        """The batch left the handler (committed, dead-lettered or handed back)."""
        self._busy_since = None
        self._batches += 1

    async def check(self) -> None:
        """Look once: start or end a stall."""
        progressed = self._batches != self._seen_batches
        self._seen_batches = self._batches
        lag = await self._measure()
        now = self.now()
        if self._busy_since is not None:
            reason: str | None = HANDLER_STUCK
        elif lag is None:
            reason = BROKER_UNREACHABLE
        elif lag > 0:
            reason = LAGGING
        else:
            reason = None  # idle: nothing to do is not a stall
        if progressed or reason is None:
            self._last_progress = now
            if self.stall is not None:
                self._recovered(now, lag)
            return
        if self.stall is None and now - self._last_progress >= self.stall_after:
            self.stall = Stalled(since=self._last_progress, reason=reason, lag=lag)
            self.stalls += 1
            log.error(
                f"{self.name}.stalled",
                reason=reason,
                lag=lag,
                stalled_s=round(now - self._last_progress, 1),
            )

    def _recovered(self, now: float, lag: int | None) -> None:
        stall, self.stall = self.stall, None
        assert stall is not None
        log.info(
            f"{self.name}.recovered",
            reason=stall.reason,
            stalled_s=round(now - stall.since, 1),
            lag=lag,
        )

    async def _measure(self) -> int | None:
        """The lag, or None when it cannot be had within `measure_timeout` (a measure that hangs
        is left to finish in the background: the next checks wait for it, never start another)."""
        if self._measuring is None:
            self._measuring = asyncio.ensure_future(self.lag())
        done, _ = await asyncio.wait({self._measuring}, timeout=self.measure_timeout)
        if not done:
            return None
        task, self._measuring = self._measuring, None
        if task.cancelled() or task.exception() is not None:
            return None
        return task.result()

    async def run(self) -> None:
        """Check every `interval` seconds until cancelled."""
        try:
            while True:
                await asyncio.sleep(self.interval)
                await self.check()
        finally:
            if self._measuring is not None:
                self._measuring.cancel()
