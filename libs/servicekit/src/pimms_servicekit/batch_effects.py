"""Destinations that take their due effects together (a partner's export file of many lines).

A `BatchDestination` is a `Destination` that also has `deliver_batch(effects)`: every effect due
now is handed over in one call (ordered by id) and one result comes back per effect. Rows, leases,
retries and hooks are the `EffectDispatcher`'s, unchanged: a crash after the delivery and before
its recording delivers the same effects again after the lease (receivers deduplicate by key).

    runtime.deliver_to(destination)            # registers a per-effect dispatcher, then:
    deliver_batches_to(runtime, destination)   # replaces it by a batch dispatcher

Effects dispatched with the same `not_before` (an export slot) become due together and make one
batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

from pimms_servicekit.effects import (
    DeliveryResult,
    Destination,
    Effect,
    EffectDispatcher,
    RetryLater,
)
from pimms_servicekit.logging import get_logger, scrub_text

log = get_logger("pimms.effects")

BATCH_LIMIT = 5000


class BatchDestination(Destination, Protocol):
    """A destination that delivers all its due effects at once."""

    async def deliver_batch(self, effects: Sequence[Effect]) -> Sequence[DeliveryResult]:
        """Deliver `effects` together; one result per effect, in the same order."""
        ...


class BatchEffectDispatcher(EffectDispatcher):
    """Claims every due effect of its destination and delivers them in one call."""

    destination: BatchDestination

    async def deliver_due(self, *, limit: int | None = None) -> int:
        """Claim, deliver together and record the effects due now; return how many."""
        batch = await self._claim(limit or BATCH_LIMIT)
        if not batch:
            return 0
        self.stats.in_flight += len(batch)
        try:
            results = await self._attempt_batch(batch)
        finally:
            self.stats.in_flight -= len(batch)
        await self._record(list(zip(batch, results, strict=True)))
        return len(batch)

    async def _attempt_batch(self, batch: Sequence[Effect]) -> Sequence[DeliveryResult]:
        timeout = self.destination.policy.attempt_timeout
        try:
            results = await asyncio.wait_for(self.destination.deliver_batch(batch), timeout)
        except TimeoutError:
            return [RetryLater(reason="timeout")] * len(batch)
        except Exception as exc:  # a bug or an unexpected I/O error: retry them all, say so
            log.error(
                "effects.delivery_error",
                destination=self.name,
                effects=len(batch),
                error=type(exc).__name__,
                detail=scrub_text(str(exc))[:300],
            )
            return [RetryLater(reason=f"error:{type(exc).__name__}")] * len(batch)
        if len(results) != len(batch):
            raise RuntimeError(f"{self.name} answered {len(results)} results for {len(batch)}")
        return results


def deliver_batches_to(runtime: Any, destination: BatchDestination) -> None:
    """Effects named for `destination` are delivered in batches by its own dispatcher."""
    runtime.deliver_to(destination)
    plain = runtime.dispatchers[destination.name]
    dispatcher = BatchEffectDispatcher(
        destination=destination,
        database=plain.database,
        clock=plain.clock,
        hooks=plain.hooks,
        make_uow=plain.make_uow,
        poll_interval=plain.poll_interval,
    )
    dispatcher.on_outcome = plain.on_outcome
    dispatcher.on_committed = plain.on_committed
    runtime.dispatchers[destination.name] = dispatcher
