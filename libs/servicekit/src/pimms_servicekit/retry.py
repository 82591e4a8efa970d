"""Retrying what an outage breaks, visibly: backoff, a cap on the delay, and one log line per stall.

A database outage must not drop or dead-letter anything: the batch is retried until the database is
back. But a stall is said: once when it starts to last (`stalled`), once when it ends, with its
duration, and the service's readiness is false meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from pimms_servicekit.errors import ShuttingDown, is_transient
from pimms_servicekit.logging import get_logger, scrub_text

log = get_logger("pimms.retry")

T = TypeVar("T")


@dataclass
class Stall:
    """An ongoing outage seen by one loop (None when all is well)."""

    since: float
    attempts: int
    error: str


class Retrier:
    """Retries transient failures with capped exponential backoff; reports stalls once."""

    def __init__(
        self,
        *,
        name: str,
        stopping: asyncio.Event,
        first_delay: float = 0.1,
        max_delay: float = 10.0,
        stall_after: int = 4,
    ) -> None:
        self.name = name
        self.stopping = stopping
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.stall_after = stall_after
        self.stall: Stall | None = None
        self.transient_failures = 0

    @property
    def healthy(self) -> bool:
        """False while an outage lasts."""
        return self.stall is None or self.stall.attempts < self.stall_after

    async def run(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """`attempt()` until it succeeds or fails for a reason that waiting cannot fix."""
        delay = self.first_delay
        while True:
            try:
                result = await attempt()
            except Exception as exc:
                if not is_transient(exc) or isinstance(exc, ShuttingDown):
                    raise
                self._failed(exc, delay)
                if self.stopping.is_set():
                    raise ShuttingDown(f"{self.name}: stopping during an outage") from exc
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), timeout=delay)
                delay = min(delay * 2, self.max_delay)
                continue
            self._recovered()
            return result

    def _failed(self, exc: BaseException, delay: float) -> None:
        self.transient_failures += 1
        error = type(exc).__name__
        if self.stall is None:
            self.stall = Stall(since=time.monotonic(), attempts=0, error=error)
        self.stall.attempts += 1
        if self.stall.attempts == 1:
            log.warning(
                f"{self.name}.transient_failure",
                error=error,
                detail=scrub_text(str(exc))[:300],
                retry_in_s=round(delay, 2),
            )
        elif self.stall.attempts == self.stall_after:
            log.error(
                f"{self.name}.stalled",
                error=error,
                detail=scrub_text(str(exc))[:300],
                attempts=self.stall.attempts,
                stalled_s=round(time.monotonic() - self.stall.since, 1),
            )

    def _recovered(self) -> None:
        stall, self.stall = self.stall, None
        if stall is not None:
            log.info(
                f"{self.name}.recovered",
                attempts=stall.attempts,
                stalled_s=round(time.monotonic() - stall.since, 1),
            )
